"""Glossary and do-not-translate terms (and numbers), honoured by masking them with placeholders.

Before translation every occurrence of a term is replaced by a placeholder
`XQ<n>Z`: the engines copy such a token through unchanged (measured with
Bergamot EN<->PT and Apertium EN<->ES: they treat it as a proper noun), so
after translation the placeholder is replaced by the glossary's target term,
or by the source text itself for a do-not-translate term. Placeholders are
found again leniently (any case, spaces inside), and a sentence whose
translation lost or duplicated one is flagged (`restore` returns None), so the
pipeline can translate it in pieces around the terms instead.

`mask_numbers` hides the numbers of a sentence the same way (XQ1000Z, ...),
for the pipeline's second try when an engine dropped or changed a number.

Matching: longest term first; whole words where the term begins or ends
with a letter or digit of a spaced script (a CJK term matches anywhere);
whitespace inside a term matches any whitespace; an all-lowercase term
matches any capitalisation ("check-in" matches "Check-in", and then its
replacement is capitalised too), a term with a capital letter matches only
as written ("Apple" is not "apple").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

PLACEHOLDER = "XQ{}Z"
_FOUND = re.compile(r"X\s?Q\s?(\d{1,4})\s?Z", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"(XQ\d{1,4}Z)")


@dataclass(frozen=True, slots=True)
class Term:
    """A source term and its fixed translation (None: keep the source text as it is)."""

    source: str
    target: str | None = None


def _spaced_word_char(ch: str) -> bool:
    """A letter or digit of a script that separates words with spaces."""
    return ch.isalnum() and not (
        "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
        or "\uf900" <= ch <= "\ufaff"
    )


def _pattern(term: str) -> str:
    body = r"\s+".join(re.escape(word) for word in term.split())
    if term == term.lower():
        body = f"(?i:{body})"
    lead = r"(?<!\w)" if _spaced_word_char(term[0]) else ""
    trail = r"(?!\w)" if _spaced_word_char(term[-1]) else ""
    return f"{lead}{body}{trail}"


@dataclass(frozen=True, slots=True)
class Masked:
    """A text with spans replaced by placeholders: `slots[i]` replaces `XQ<first + i>Z`.
    Other placeholders in the text (of an earlier masking) are left as they are."""

    text: str
    slots: tuple[str, ...]
    first: int = 0

    def restore(self, translation: str) -> str | None:
        """`translation` with this masking's placeholders replaced, or None when the
        placeholders of the masked text did not come through exactly once each."""
        if Counter(placeholders(translation)) != Counter(placeholders(self.text)):
            return None

        def slot(m: re.Match[str]) -> str:
            n = int(m.group(1)) - self.first
            return self.slots[n] if 0 <= n < len(self.slots) else m.group(0)

        return _FOUND.sub(slot, translation)


NUMBER_SLOTS = 1000
"""Numbers masked by `mask_numbers` are XQ1000Z, XQ1001Z, ... (terms count from 0)."""
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_DIGITS = re.compile(r"\d+")


def numbers(text: str) -> Counter[int]:
    """The digit runs of `text` as values ("1.250,50" -> 1, 250, 50; "٢١٤" -> 214), outside
    placeholders."""
    return Counter(int(d) for d in _DIGITS.findall(_FOUND.sub(" ", text)))


def mask_numbers(text: str) -> Masked:
    """`text` with each number ("214", "7:45", "1.250,50") replaced by a placeholder."""
    found: list[str] = []

    def replace(m: re.Match[str]) -> str:
        found.append(m.group(0))
        return PLACEHOLDER.format(NUMBER_SLOTS + len(found) - 1)

    parts = _PLACEHOLDER.split(text)  # existing placeholders keep their digits
    masked = "".join(p if i % 2 else _NUMBER.sub(replace, p) for i, p in enumerate(parts))
    return Masked(masked, tuple(found), NUMBER_SLOTS)


def placeholders(text: str) -> list[int]:
    """The placeholder numbers in `text`, in order."""
    return [int(n) for n in _FOUND.findall(text)]


def split_at_placeholders(text: str) -> list[str]:
    """`text` as alternating plain pieces and placeholders (placeholders at odd indexes)."""
    return _PLACEHOLDER.split(text)


class Masker:
    """Replaces the terms of one request by placeholders."""

    def __init__(self, terms: Sequence[Term]) -> None:
        ordered = sorted(terms, key=lambda t: len(t.source), reverse=True)
        self._terms = ordered
        self._regex = re.compile("|".join(f"({_pattern(t.source)})" for t in ordered)) if ordered else None

    def mask(self, text: str) -> Masked:
        if self._regex is None:
            return Masked(text, ())
        slots: list[str] = []

        def replace(m: re.Match[str]) -> str:
            assert m.lastindex is not None
            term, found = self._terms[m.lastindex - 1], m.group(0)
            value = found if term.target is None else term.target
            if term.target is not None and found[:1].isupper() and term.source == term.source.lower():
                value = value[:1].upper() + value[1:]
            slots.append(value)
            return PLACEHOLDER.format(len(slots) - 1)

        return Masked(self._regex.sub(replace, text), tuple(slots))
