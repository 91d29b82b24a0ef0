"""Groups a speaker's final transcripts into sentences before they are translated.

stt_svc ends an utterance at every short pause, so one spoken sentence often
arrives as several finals, each translated without the rest of its sentence
(with the embedded engines that costs little and holding costs seconds:
bench/results/mesh_chrf.md, so session.sentence_wait_ms is 0 by default). When
a wait is set, a final that does not end a sentence (Whisper punctuates its
finals) is held while the speaker goes on and joined with the finals after
it, up to the one that ends the sentence; it goes alone if the speaker stays
silent `wait_s` after it, and a group held `max_hold_s` since its first final
goes as it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

SENTENCE_END = frozenset(".!?。．！？؟۔।॥።፧")
"""Sentence-final punctuation, by script."""
CLOSERS = "\"'”’»)]」』）"
"""Quotes and brackets that may follow the sentence-final mark."""
ELLIPSES = ("...", "…")
"""Whisper ends a fragment cut mid-sentence with these, not a sentence."""
UNSPACED = frozenset({"zh", "ja", "th", "lo", "km", "my", "yue"})
"""Languages written without spaces between words: fragments join with nothing between."""


class Final(Protocol):
    """What a grouping needs of an utterance (session_svc.pipeline.Utterance)."""

    text: str
    final: float | None


def ends_sentence(text: str) -> bool:
    """True when the transcript ends with sentence-final punctuation (not an ellipsis)."""
    text = text.rstrip().rstrip(CLOSERS).rstrip()
    return bool(text) and text[-1] in SENTENCE_END and not text.endswith(ELLIPSES)


def join(texts: list[str], language_code: str) -> str:
    """Transcripts of consecutive utterances as one text, without the ellipses Whisper
    puts where it cut a sentence (they only confuse MT inside a sentence)."""
    sep = "" if language_code.split("-")[0].lower() in UNSPACED else " "
    parts = [t.strip() for t in texts if t.strip()]
    for i in range(len(parts)):
        if i > 0:
            parts[i] = _strip_ellipses(parts[i], leading=True)
        if i < len(parts) - 1:
            parts[i] = _strip_ellipses(parts[i], leading=False)
    return sep.join(p for p in parts if p)


def _strip_ellipses(text: str, leading: bool) -> str:
    while True:
        stripped = text.strip()
        for mark in ELLIPSES:
            if leading and stripped.startswith(mark):
                stripped = stripped[len(mark):]
            elif not leading and stripped.endswith(mark):
                stripped = stripped[:-len(mark)]
        if stripped.strip() == text.strip():
            return stripped.strip()
        text = stripped


U = TypeVar("U", bound=Final)


class Sentences(Generic[U]):
    """Reads finals from `finals` (None ends them) and hands them on in sentence groups.

    `speaking()` says whether the speaker has an utterance in progress (speech started,
    no final yet): a held fragment then waits for that final rather than for silence.
    """

    def __init__(self, finals: asyncio.Queue[U | None], wait_s: float, max_hold_s: float,
                 speaking: Callable[[], bool]) -> None:
        self._finals = finals
        self.wait_s = wait_s
        self.max_hold_s = max_hold_s
        self._speaking = speaking
        self._ended = False

    async def next(self) -> list[U] | None:
        """The next group of finals, in spoken order; None once the finals ended."""
        if self._ended:
            return None
        first = await self._finals.get()
        if first is None:
            self._ended = True
            return None
        group = [first]
        while self._held(group):
            item = await self._next_final(group)
            if item is None:
                break
            group.append(item)
        return group

    def _held(self, group: list[U]) -> bool:
        if self.wait_s <= 0 or self._ended:
            return False
        texts = [u.text for u in group if u.text.strip()]
        return bool(texts) and not ends_sentence(texts[-1])

    async def _next_final(self, group: list[U]) -> U | None:
        """The final after `group`, or None when the group should go as it is."""
        started = group[0].final or time.monotonic()
        last = group[-1].final or time.monotonic()
        while True:
            now = time.monotonic()
            hold_until = started + self.max_hold_s
            until = hold_until if self._speaking() else min(last + self.wait_s, hold_until)
            if until <= now:
                return None
            try:
                item = await asyncio.wait_for(self._finals.get(), until - now)
            except TimeoutError:
                continue  # the speaker may have started again meanwhile: look again
            if item is None:
                self._ended = True
            return item
