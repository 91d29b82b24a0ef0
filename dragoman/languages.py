"""The product's languages and the normalisation of BCP-47 tags to them.

Every service works on the primary language subtag only: "pt-BR", "pt_br"
and "PT" are all "pt"; "es-419" is "es"; "zh-Hant-TW" is "zh". Anything that
is not a well-formed tag of one of the fifteen product languages is
INVALID_ARGUMENT, with the supported languages listed.
"""

from __future__ import annotations

import re

from dragoman.errors import InvalidArgument, shown

# The 15 languages dragoman promises in every direction.
LANGUAGES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "zh": "Chinese", "ja": "Japanese",
    "ko": "Korean", "hi": "Hindi", "tr": "Turkish", "nl": "Dutch", "pl": "Polish",
}

ENGLISH = "en"
SUPPORTED: tuple[str, ...] = tuple(LANGUAGES)
"""Product languages, in the order they are listed to users."""

# language subtag, then any number of 1-8 character alphanumeric subtags ("_" tolerated).
_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*")


def primary_subtag(code: str) -> str | None:
    """The lower-case primary language subtag of a BCP-47 tag ("pt-BR" -> "pt", " EN_us" -> "en"),
    or None when `code` is not a well-formed tag (each caller words its own error)."""
    match = _TAG.fullmatch(code.strip().lower())
    return match.group(1) if match else None


def normalise(code: str, field: str = "language_code") -> str:
    """The product language of a BCP-47 tag (case-insensitive), e.g. "pt-BR" -> "pt".

    `field` names the request field in the error message.
    """
    supported = ", ".join(SUPPORTED)
    if not code.strip():
        raise InvalidArgument(f"{field} is required; supported languages: {supported}")
    language = primary_subtag(code)
    if language is None:
        raise InvalidArgument(
            f"{field} {shown(code)} is not a valid BCP-47 language tag; supported languages: {supported}"
        )
    if language not in SUPPORTED:
        raise InvalidArgument(
            f"{field} {shown(code)}: language {language!r} is not supported; "
            f"supported languages: {supported}"
        )
    return language


def all_pairs() -> list[tuple[str, str]]:
    """Every ordered pair of two different product languages (15 x 14 = 210)."""
    return [(s, t) for s in SUPPORTED for t in SUPPORTED if s != t]
