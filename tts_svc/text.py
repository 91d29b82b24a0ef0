"""Splitting text into the pieces that are synthesised and sent one by one.

Time to first audio is what a listener notices, so the first piece is kept
short: text is split into sentences, and a first sentence longer than
`first_words` words is cut at a clause boundary (a comma, semicolon, colon
or dash, else before a conjunction) so that a few words can be spoken
while the rest is synthesised. A first sentence longer than
`max_first_words` with no such boundary is cut anyway, before an article
or preposition near `first_words` (else right after `first_words` words),
with no added pause. Later sentences are left whole up to
MAX_PIECE_WORDS words (cutting them would hurt prosody without helping
latency); longer ones are cut the same way, and a piece is never longer
than MAX_PIECE_CHARS: an engine's memory grows with the longest piece it
is given. Slower engines ask for a smaller `first_words` (see
`Capabilities.first_piece_words`).

A period after an abbreviation ("Dr.", "z. B.", see `normalize`), an
initial, or a German day of the month ("am 3. Mai") does not end a
sentence. A decimal point or thousands separator is never taken for a
boundary, because a boundary needs whitespace after the mark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tts_svc import normalize

FIRST_WORDS = 6
"""A first sentence longer than this is cut, ideally after at most this many words."""
SENTENCE_PAUSE_MS = 250
CLAUSE_PAUSE_MS = 120
FORCED_PAUSE_MS = 0
"""After a cut that is not at a clause boundary: only the edges' own silence."""
MAX_PIECE_WORDS = 40
"""Longest piece in words. ONNX Runtime keeps the memory of the largest
inference it ran: one 5000-character sentence took tts_svc to 10.5 GB
(bench/results/tts_memory.md)."""
MAX_PIECE_CHARS = 300
"""Longest piece in characters (words with no spaces between them are cut too)."""
_LONG_CUT_WORDS = (3 * MAX_PIECE_WORDS) // 5
"""`_cut`'s aim for a long sentence: max_first_words of it is MAX_PIECE_WORDS."""


def max_first_words(first_words: int) -> int:
    """A clause boundary up to this many words in may still cut a first sentence."""
    return first_words + (2 * first_words) // 3


_SENTENCE_END = re.compile(r"[.!?…।]+[\"'»”’)\]]*(?=\s|$)")
_CLAUSE_END = re.compile(r"[,;:][\"'»”’)\]]*$")
_DASHES = {"-", "–", "—"}
_SPEAKABLE = re.compile(r"\w")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# Words that end in "." without ending a sentence in any language (lower case, no dot),
# besides each language's `normalize.no_break_words`.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr sra srta dra ud uds vs approx ca cf mme mlle hr nr".split()
)


def _word_sets(words: dict[str, str]) -> dict[str, frozenset[str]]:
    return {language: frozenset(line.split()) for language, line in words.items()}


# Words a clause may start with, by primary language; a cut goes before them.
_CONJUNCTIONS = _word_sets(
    {
        "en": "and but or so because although though while when whereas which who where if unless until",
        "es": "y e pero o u porque aunque cuando mientras que donde si pues sino",
        "pt": "e mas ou porque embora quando enquanto que onde se pois",
        "fr": "et mais ou parce car quand lorsque que qui où si donc",
        "it": "e ma o perché quando mentre che dove se",
        "de": "und aber oder weil wenn dass als ob denn sondern während",
        "hi": "और लेकिन पर या क्योंकि जब कि अगर तो",
    }
)
# Words a phrase may start with (articles, prepositions): a forced cut goes before them.
_PHRASE_STARTS = _word_sets(
    {
        "en": "the a an to for of in on at with from by about into this that my your our their his her",
        "es": "el la los las un una unos unas de del al a en con por para sin sobre mi tu su este esta",
        "pt": "o a os as um uma de do da dos das no na em com por para sem ao meu minha seu sua este esta",
        "fr": "le la les un une des du de au aux à en avec pour par sans sur dans mon ma mes ce cette",
        "it": "il lo la i gli le un una di del della a al in con per su da nel nella mio mia questo questa",
        "de": "der die das den dem des ein eine einen einem mit für von zu in auf an bei nach aus über",
    }
)


@dataclass(frozen=True, slots=True)
class Piece:
    """Text synthesised as one unit, and the silence that follows it (0 for the last)."""

    text: str
    pause_after_ms: int


def speakable(text: str) -> bool:
    """Whether the text has any letter or digit to pronounce."""
    return _SPEAKABLE.search(text) is not None


def _ends_sentence(line: str, match: re.Match[str], no_break: frozenset[str], language: str) -> bool:
    marks = match.group().rstrip("\"'»”’)]")
    following = line[match.end() :].lstrip()
    if not following:
        return True
    if set(marks) <= {".", "…"} and following[0].islower():
        return False  # "approx. five", "wait… what"
    if marks == ".":
        word = line[: match.start()].rsplit(None, 1)[-1] if line[: match.start()].strip() else ""
        if "." in word or word.lower() in no_break or (len(word) == 1 and word.isalpha()):
            return False  # "e.g.", "U.S.", "Dr.", initials
        if language == "de" and word.isdigit() and following.split(" ", 1)[0] in normalize.DE_MONTHS:
            return False  # "am 3. Mai"
    return True


def sentences(text: str, language: str = "") -> list[str]:
    """The sentences of `text`, whitespace collapsed; lines never run together.

    `language` (a primary subtag) adds its abbreviations to the words whose
    period does not end a sentence. A fragment with nothing to pronounce
    (e.g. a lone "...") joins the sentence before it.
    """
    no_break = _ABBREVIATIONS | normalize.no_break_words(language)
    out: list[str] = []
    for line in _CONTROL.sub(" ", text).splitlines():
        line = " ".join(line.split())
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if _ends_sentence(line, match, no_break, language):
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


def _bare(word: str) -> str:
    return word.lower().strip("\"'«“¿¡(")


def _cut(words: list[str], language: str, first_words: int) -> tuple[int, bool]:
    """How many words go into the first piece (len(words): no cut), and whether
    the cut is forced (not at a clause boundary)."""
    n, longest = len(words), max_first_words(first_words)
    if n <= first_words:
        return n, False
    conjunctions = _CONJUNCTIONS.get(language, frozenset())
    # A cut at k splits words[:k] | words[k:]; the second part keeps at least two words.
    clause = [k for k in range(1, n - 1) if _CLAUSE_END.search(words[k - 1]) or words[k] in _DASHES]
    before_conjunction = [k for k in range(2, n - 1) if _bare(words[k]) in conjunctions]
    for candidates, limit, pick in (
        (clause, first_words, max),
        (before_conjunction, first_words, max),
        (clause, longest, min),
        (before_conjunction, longest, min),
    ):
        fitting = [k for k in candidates if k <= limit]
        if fitting:
            return pick(fitting), False
    if n <= longest or n - first_words < 2:
        return n, False
    starts = _PHRASE_STARTS.get(language, frozenset())
    phrase = [k for k in range(2, min(longest, n - 2) + 1) if _bare(words[k]) in starts]
    return min(phrase, key=lambda k: (abs(k - first_words), k), default=first_words), True


def split(text: str, language: str = "", *, first_words: int = FIRST_WORDS) -> list[Piece]:
    """Pieces to synthesise in order; the first is short (see the module doc).

    `language` is a primary subtag ("en", "es", ...) choosing the
    abbreviations, conjunctions and articles the splitter knows. Empty when
    nothing is speakable.
    """
    found = sentences(text, language)
    if not found:
        return []
    words = found[0].split(" ")
    k, forced = _cut(words, language, first_words)
    head = [" ".join(words[:k]), " ".join(words[k:])] if k < len(words) else [found[0]]
    first_pause = (FORCED_PAUSE_MS if forced else CLAUSE_PAUSE_MS) if len(head) > 1 else SENTENCE_PAUSE_MS
    pieces = [Piece(head[0], first_pause)]
    pieces += [Piece(t, SENTENCE_PAUSE_MS) for t in [*head[1:], *found[1:]]]
    pieces = [bounded for piece in pieces for bounded in _bounded(piece, language)]
    pieces[-1] = Piece(pieces[-1].text, 0)
    return pieces


def _bounded(piece: Piece, language: str) -> list[Piece]:
    """`piece`, cut into pieces of at most MAX_PIECE_WORDS words and MAX_PIECE_CHARS characters."""
    words, out = piece.text.split(" "), []
    while len(words) > MAX_PIECE_WORDS:
        k, forced = _cut(words, language, _LONG_CUT_WORDS)
        out.append(Piece(" ".join(words[:k]), FORCED_PAUSE_MS if forced else CLAUSE_PAUSE_MS))
        words = words[k:]
    out.append(Piece(" ".join(words), piece.pause_after_ms))
    cut: list[Piece] = []
    for p in out:
        while len(p.text) > MAX_PIECE_CHARS:
            at = p.text.rfind(" ", 0, MAX_PIECE_CHARS + 1)
            at = at if at > 0 else MAX_PIECE_CHARS
            cut.append(Piece(p.text[:at], FORCED_PAUSE_MS))
            p = Piece(p.text[at:].lstrip(" "), p.pause_after_ms)
        cut.append(p)
    return cut
