"""LocalAgreement-2 for partial results of one utterance.

Each partial decode gives a hypothesis of the whole utterance so far. The
words on which the last two hypotheses agree (compared without case or
punctuation) become stable; the stable prefix only grows. The service passes
it to the next decode as a forced decoder prefix, and `merge` makes sure
every later transcript starts with exactly the stable prefix already sent.
`stable_samples` says how much of the utterance's audio the stable words were
heard in (the older hypothesis's), so that a cut keeps them in this utterance.
"""

from __future__ import annotations

from stt_svc.guards import normalised_words


def _key(word: str) -> str:
    return "".join(normalised_words(word)) or word


class LocalAgreement:
    """Stable prefix and stability of successive hypotheses."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._previous_samples = 0
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

    def update(self, text: str, samples: int) -> tuple[str, str, float]:
        """Adds a hypothesis of the utterance's first `samples` samples; returns (transcript,
        stable_prefix, stability)."""
        words = self.merge(text).split()
        agreed = 0
        for before, now in zip(self._previous, words, strict=False):
            if _key(before) != _key(now):
                break
            agreed += 1
        if agreed > len(self._stable):
            self._stable = words[:agreed]
            self.stable_samples = self._previous_samples
        self._previous, self._previous_samples = words, samples
        stability = 0.1 + 0.8 * len(self._stable) / len(words) if words else 0.0
        return " ".join(words), self.stable_prefix, round(stability, 3)
