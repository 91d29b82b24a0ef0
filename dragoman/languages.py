"""The product's languages and BCP-47 handling shared by every service."""

from __future__ import annotations

import re

from dragoman.errors import InvalidArgument

# The 15 languages dragoman promises in every direction.
LANGUAGES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "zh": "Chinese", "ja": "Japanese",
    "ko": "Korean", "hi": "Hindi", "tr": "Turkish", "nl": "Dutch", "pl": "Polish",
}

_BCP47 = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def base_language(code: str, field: str = "language_code") -> str:
    """'pt-BR' -> 'pt'. Raises INVALID_ARGUMENT for malformed or unsupported codes."""
    if not code:
        raise InvalidArgument(f"{field} is required (one of: {', '.join(LANGUAGES)})")
    if not _BCP47.match(code):
        raise InvalidArgument(f"{field} {code!r} is not a BCP-47 language tag")
    base = code.replace("_", "-").split("-")[0].lower()
    if base not in LANGUAGES:
        raise InvalidArgument(
            f"{field} {code!r} is not supported; supported languages: {', '.join(LANGUAGES)}"
        )
    return base
