"""Text handling around engines: whitespace framing, sentences, and splitting long text.

Engines see only the stripped core of a segment; the segment's own leading
and trailing whitespace is put back around the translation, so
"  Hello.\\n" comes back as "  Olá.\\n". The service translates (and caches)
sentence by sentence (`sentences`), and engines whose models take a bounded
input (Bergamot: about 128 subword tokens) split a long sentence further
with `chunks`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Framed:
    """A segment split into leading whitespace, core text and trailing whitespace."""

    lead: str
    core: str
    trail: str

    @classmethod
    def of(cls, segment: str) -> Framed:
        core = segment.strip()
        if not core:
            return cls(segment, "", "")
        lead = segment[: len(segment) - len(segment.lstrip())]
        return cls(lead, core, segment[len(lead) + len(core):])

    def wrap(self, translation: str) -> str:
        """The translation of `core`, framed like the original segment."""
        return f"{self.lead}{translation.strip()}{self.trail}"


# A sentence may end at . ! ? … (with closing quotes or brackets) before
# whitespace, at 。！？ (whitespace or not), or at a line break.
_BOUNDARY = re.compile(
    r"([.!?…]+[\"'”’»)\]]*)(\s+)|([。！？]+[”’」』）)]*)(\s*)|(\s*\n\s*)"
)
_LAST_WORD = re.compile(r"(\S+)$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr sra srta jr st mt vs etc cf approx no nr tel fig vol pp ch art av dept "
    "min max co inc ltd jan feb mar apr jun jul aug sep sept oct nov dec sgt capt gen col lt mme "
    "mlle hr hrs ca bzw usw ggf nº".split()
)


def sentences(text: str) -> list[tuple[str, str]]:
    """Splits `text` into (sentence, separator) pairs; `"".join(s + p for s, p in result) == text`.

    A full stop ends a sentence unless it follows an abbreviation ("Mr.",
    "etc.", "e.g.", "a.m."), an initial ("J.") or comes before a lowercase
    word; a decimal point or a thousands separator ("3.5", "1.000") is never
    a boundary, since no space follows it. Punctuation stays with its
    sentence and the whitespace between sentences is kept as the separator.
    """
    out: list[tuple[str, str]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group(1) and not _full_stop(text, m):
            continue
        end = m.end(1) if m.group(1) else m.end(3) if m.group(3) else m.start()
        if not text[start:end].strip():
            continue  # nothing but whitespace before it: part of the next sentence
        out.append((text[start:end], text[end:m.end()]))
        start = m.end()
    if start < len(text) or not out:
        out.append((text[start:], ""))
    return out


def _full_stop(text: str, m: re.Match[str]) -> bool:
    """Whether the punctuation of a `_BOUNDARY` match (group 1) ends a sentence."""
    if m.group(1).rstrip("\"'”’»)]") != ".":
        return True  # ! ? … and runs like "?!" or "..."
    following = text[m.end():m.end() + 1]
    if following.islower():
        return False
    word = _LAST_WORD.search(text, 0, m.start(1))
    token = word.group(1).lstrip("\"'“‘«([¿¡").lower() if word else ""
    return not (token in _ABBREVIATIONS or "." in token or (len(token) == 1 and token.isalpha()))


def normalise(text: str) -> str:
    """NFC with every run of whitespace made one space: the form that is translated and cached."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


# Boundaries to split at, coarsest first: sentence ends, clause punctuation, any space.
_LEVELS = (
    re.compile(r"(?<=[.!?…。！？])(\s+)|(\n\s*)"),
    re.compile(r"(?<=[,;:、，；：])(\s+)"),
    re.compile(r"(\s+)"),
)


def chunks(text: str, limit: int, measure: Callable[[str], int] = len) -> list[tuple[str, str]]:
    """Splits `text` into pieces of at most `limit` (as `measure` counts) at natural breaks.

    Returns (piece, separator) pairs; `"".join(p + s for p, s in result) == text`.
    Text within the limit is one piece. Longer text is cut at sentence ends,
    then clause punctuation, then spaces, packing neighbours greedily; a single
    word longer than the limit is cut into fixed-size slices.
    """
    return _split(text, limit, measure, 0)


def _split(text: str, limit: int, measure: Callable[[str], int], level: int) -> list[tuple[str, str]]:
    if measure(text) <= limit:
        return [(text, "")]
    if level == len(_LEVELS):
        size = max(1, limit // 2)
        while size > 1 and measure(text[:size]) > limit:
            size //= 2
        return [(text[i:i + size], "") for i in range(0, len(text), size)]
    parts = [p for p in _LEVELS[level].split(text) if p is not None]
    units = list(zip(parts[0::2], [*parts[1::2], ""], strict=True))
    out: list[tuple[str, str]] = []
    current, current_sep = "", ""
    for piece, sep in units:
        candidate = f"{current}{current_sep}{piece}" if current else piece
        if measure(candidate) <= limit:
            current, current_sep = candidate, sep
            continue
        if current:
            out.append((current, current_sep))
        if measure(piece) <= limit:
            current, current_sep = piece, sep
        else:
            sub = _split(piece, limit, measure, level + 1)
            out.extend(sub[:-1])
            out.append((sub[-1][0], sub[-1][1] + sep))
            current, current_sep = "", ""
    if current:
        out.append((current, current_sep))
    return out
