"""Which stable words of a partial transcript make the next spoken piece (simultaneous mode).

A piece ends at the last clause mark among the stable words not yet committed,
once there are at least `min_words` up to it; with no such mark, `max_words`
of them go as a piece (a speaker who never pauses). The stable prefix only
grows (stt_svc.agreement), so words once committed stay committed. Scripts
written without spaces (sentences.UNSPACED) count characters as words, so that
a clause in them is not one huge word.
"""

from __future__ import annotations

from session_svc.sentences import CLOSERS, SENTENCE_END, UNSPACED

CLAUSE_MARKS = frozenset(",;:、，；：") | SENTENCE_END
"""Marks that end a clause, by script (sentence ends included)."""


def unspaced(language_code: str) -> bool:
    return language_code.split("-")[0].lower() in UNSPACED


def split(text: str, language_code: str) -> list[str]:
    """The words of `text` as pieces count them."""
    if unspaced(language_code):
        return [c for c in text if not c.isspace()]
    return text.split()


def join(words: list[str], language_code: str) -> str:
    return ("" if unspaced(language_code) else " ").join(words)


def ends_clause(word: str) -> bool:
    """A word ending with a clause mark, or with a closing quote or bracket after one."""
    word = word.rstrip(CLOSERS)
    return bool(word) and word[-1] in CLAUSE_MARKS


def next_piece(words: list[str], committed: int, min_words: int, max_words: int) -> int:
    """Where the next piece of `words` ends (exclusive), the first `committed` being spoken
    already; `committed` itself when no piece is ready yet."""
    for end in range(len(words), committed + min_words - 1, -1):
        if ends_clause(words[end - 1]):
            while end < len(words) and not words[end].strip(CLOSERS):
                end += 1  # a closer split off its mark (unspaced scripts) goes with it
            return end
    if len(words) - committed >= max_words:
        return committed + max_words
    return committed
