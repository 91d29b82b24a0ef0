"""LocalAgreement-n for partial results of one utterance.

Each partial decode gives a hypothesis of the whole utterance so far. The
words on which the last `hypotheses` hypotheses agree (compared without case
or punctuation), less the last `holdback` of them, become stable; the stable
prefix only grows. The service passes it to the next decode as a forced
decoder prefix, and `merge` makes sure every later transcript starts with
exactly the stable prefix already sent. `stable_samples` says how much of the
utterance's audio the stable words were heard in (the oldest hypothesis's),
so that a cut keeps them in this utterance.

A word two hypotheses agree on may still be one that both misheard for want of
the speech after it: Whisper reads a word at the very end of its audio worst.
With `right_context` (samples) and the words' end times, a word becomes stable
only once the older of the agreeing hypotheses heard that much audio after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from stt_svc.guards import normalised_words


def _key(word: str) -> str:
    return "".join(normalised_words(word)) or word


class LocalAgreement:
    """Stable prefix and stability of successive hypotheses."""

    def __init__(self, hypotheses: int = 2, holdback: int = 0, right_context: int = 0) -> None:
        if hypotheses < 2 or holdback < 0 or right_context < 0:
            raise ValueError("agreement needs two hypotheses or more, and a holdback and a "
                             "right context >= 0")
        self._holdback = holdback
        self._right_context = right_context
        self._previous: deque[tuple[list[str], int]] = deque(maxlen=hypotheses - 1)
        self._stable: list[str] = []
        self.stable_samples = 0
        """Audio (samples from the utterance's start) that holds every stable word."""

    @property
    def stable_prefix(self) -> str:
        return " ".join(self._stable)

    def merge(self, text: str) -> str:
        """`text` with its first words replaced by the stable prefix already sent."""
        words = text.split()
        return " ".join(self._stable + words[len(self._stable) :])

    def update(
        self, text: str, samples: int, word_ends: Sequence[int] | None = None,
    ) -> tuple[str, str, float]:
        """Adds a hypothesis of the utterance's first `samples` samples; returns (transcript,
        stable_prefix, stability). `word_ends`: where each word of `text` ends (samples from
        the utterance's start), for the right context; None (or not one per word) leaves it
        out."""
        words = self.merge(text).split()
        if len(self._previous) == self._previous.maxlen:
            agreed = len(words)
            for before, _ in self._previous:
                n = 0
                for a, b in zip(before, words, strict=False):
                    if _key(a) != _key(b):
                        break
                    n += 1
                agreed = min(agreed, n)
            agreed -= self._holdback
            if self._right_context and word_ends is not None and len(word_ends) == len(words):
                heard_until = self._previous[0][1] - self._right_context
                agreed = min(agreed, next(
                    (i for i, end in enumerate(word_ends) if end > heard_until), len(words)))
            if agreed > len(self._stable):
                self._stable = words[:agreed]
                self.stable_samples = self._previous[0][1]
        self._previous.append((words, samples))
        stability = 0.1 + 0.8 * len(self._stable) / len(words) if words else 0.0
        return " ".join(words), self.stable_prefix, round(stability, 3)
