"""Splitting text into the pieces that are synthesised and sent one by one.

Time to first audio is what a listener notices, so the first piece is kept
short: text is split into sentences, and a first sentence longer than
`first_words` words is cut at a clause boundary (a comma, semicolon, colon
or dash, else before a conjunction) so that a few words can be spoken
while the rest is synthesised. Later sentences are left whole: cutting
them would hurt prosody without helping latency.

Numbers need no rewriting here: both engines phonemise with espeak-ng,
which reads digits out in the text's language ("25" -> "veinticinco").
A decimal point or thousands separator is never taken for a boundary,
because a boundary needs whitespace after the mark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIRST_WORDS = 6
"""A first sentence longer than this is cut, ideally after at most this many words."""
MAX_FIRST_WORDS = 10
"""No cut leaves more than this many words in the first piece."""
SENTENCE_PAUSE_MS = 250
CLAUSE_PAUSE_MS = 120

_SENTENCE_END = re.compile(r"[.!?…।]+[\"'»”’)\]]*(?=\s|$)")
_CLAUSE_END = re.compile(r"[,;:][\"'»”’)\]]*$")
_DASHES = {"-", "–", "—"}
_SPEAKABLE = re.compile(r"\w")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# Words that end in "." without ending a sentence (lower case, no dot).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr sra srta dra ud uds vs approx ca cf mme mlle hr nr".split()
)
# Words a clause may start with, by primary language; a cut goes before them.
_CONJUNCTIONS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "and but or so because although though while when whereas which who where if unless until",
        "es": "y e pero o u porque aunque cuando mientras que donde si pues sino",
        "pt": "e mas ou porque embora quando enquanto que onde se pois",
        "fr": "et mais ou parce car quand lorsque que qui où si donc",
        "it": "e ma o perché quando mentre che dove se",
        "de": "und aber oder weil wenn dass als ob denn sondern während",
        "hi": "और लेकिन पर या क्योंकि जब कि अगर तो",
    }.items()
}


@dataclass(frozen=True, slots=True)
class Piece:
    """Text synthesised as one unit, and the silence that follows it (0 for the last)."""

    text: str
    pause_after_ms: int


def speakable(text: str) -> bool:
    """Whether the text has any letter or digit to pronounce."""
    return _SPEAKABLE.search(text) is not None


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    marks = match.group().rstrip("\"'»”’)]")
    following = line[match.end() :].lstrip()
    if not following:
        return True
    if set(marks) <= {".", "…"} and following[0].islower():
        return False  # "approx. five", "wait… what"
    if marks == ".":
        word = line[: match.start()].rsplit(None, 1)[-1] if line[: match.start()].strip() else ""
        if "." in word or word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False  # "e.g.", "U.S.", "Dr.", initials
    return True


def sentences(text: str) -> list[str]:
    """The sentences of `text`, whitespace collapsed; lines never run together.

    A fragment with nothing to pronounce (e.g. a lone "...") joins the
    sentence before it.
    """
    out: list[str] = []
    for line in _CONTROL.sub(" ", text).splitlines():
        line = " ".join(line.split())
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if _ends_sentence(line, match):
                out.append(line[start : match.end()].strip())
                start = match.end()
        out.append(line[start:].strip())
    merged: list[str] = []
    for sentence in filter(None, out):
        if merged and not speakable(sentence):
            merged[-1] = f"{merged[-1]} {sentence}"
        elif speakable(sentence):
            merged.append(sentence)
    return merged


def _cut(words: list[str], language: str, first_words: int, max_first_words: int) -> int:
    """How many words go into the first piece (len(words): no cut)."""
    n = len(words)
    if n <= first_words:
        return n
    conjunctions = _CONJUNCTIONS.get(language, frozenset())
    # A cut at k splits words[:k] | words[k:]; the second part keeps at least two words.
    clause = [k for k in range(1, n - 1) if _CLAUSE_END.search(words[k - 1]) or words[k] in _DASHES]
    before_conjunction = [k for k in range(2, n - 1) if words[k].lower().strip("\"'«“¿¡(") in conjunctions]
    for candidates, limit, pick in (
        (clause, first_words, max),
        (before_conjunction, first_words, max),
        (clause, max_first_words, min),
        (before_conjunction, max_first_words, min),
    ):
        fitting = [k for k in candidates if k <= limit]
        if fitting:
            return pick(fitting)
    return n


def split(
    text: str,
    language: str = "",
    *,
    first_words: int = FIRST_WORDS,
    max_first_words: int = MAX_FIRST_WORDS,
) -> list[Piece]:
    """Pieces to synthesise in order; the first is short (see the module doc).

    `language` is a primary subtag ("en", "es", ...) choosing the conjunctions
    a first sentence may be cut before. Empty when nothing is speakable.
    """
    found = sentences(text)
    if not found:
        return []
    words = found[0].split(" ")
    k = _cut(words, language, first_words, max_first_words)
    head = [" ".join(words[:k]), " ".join(words[k:])] if k < len(words) else [found[0]]
    pieces = [Piece(head[0], CLAUSE_PAUSE_MS if len(head) > 1 else SENTENCE_PAUSE_MS)]
    pieces += [Piece(t, SENTENCE_PAUSE_MS) for t in [*head[1:], *found[1:]]]
    pieces[-1] = Piece(pieces[-1].text, 0)
    return pieces
