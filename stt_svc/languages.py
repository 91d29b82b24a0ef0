"""Language codes: BCP-47 tags from clients, Whisper base codes inside."""

from __future__ import annotations

from dragoman.errors import InvalidArgument, shown
from dragoman.languages import primary_subtag

# Deprecated or macro-language subtags -> the code Whisper uses.
_ALIASES = {"iw": "he", "ji": "yi", "in": "id", "jv": "jw", "nb": "no", "fil": "tl", "mo": "ro"}


def base_language(tag: str) -> str:
    """"pt-BR" -> "pt", "es-419" -> "es", "iw" -> "he"; malformed tags are INVALID_ARGUMENT."""
    primary = primary_subtag(tag)
    if primary is None:
        raise InvalidArgument(
            f'language_code {shown(tag)} is not a BCP-47 language tag (e.g. "en", "pt-BR", "es-419")'
        )
    return _ALIASES.get(primary, primary)


def unsupported(tag: str, supported: list[str]) -> InvalidArgument:
    return InvalidArgument(
        f"language_code {shown(tag)} is not supported; supported: {', '.join(supported)} "
        '(or "" for automatic detection)'
    )
