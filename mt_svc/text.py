"""Text handling around engines: whitespace framing and splitting long text.

Engines see only the stripped core of a segment; the segment's own leading
and trailing whitespace is put back around the translation, so
"  Hello.\\n" comes back as "  Olá.\\n". Engines whose models take a bounded
input (Bergamot: about 128 subword tokens) split long text with `chunks`.
"""

from __future__ import annotations

import re
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
