"""The speech synthesis engine interface and the records it takes and returns.

An engine turns one piece of text into audio with one of its voices. It
yields float32 mono chunks at the voice's own rate as they are produced;
splitting text into pieces, resampling, encoding and pacing belong to the
service, not the engine. Blocking model calls run on the executor the engine
was built with, never on the event loop.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Gender(enum.Enum):
    """Gender of a voice, where its publisher states it."""

    UNSPECIFIED = 0
    FEMALE = 1
    MALE = 2


@dataclass(frozen=True, slots=True)
class Voice:
    """An installed voice.

    Attributes:
        name: Unique name across engines, passed back in `SynthesisRequest.voice`.
        language_code: BCP-47 tag of what it speaks, e.g. "en-US", "es", "pt-BR".
        sample_rate_hz: Rate of the audio it produces.
        gender: Gender, where known.
        quality: "neural" or "formant".
        engine: Name of the engine that runs it.
    """

    name: str
    language_code: str
    sample_rate_hz: int
    gender: Gender = Gender.UNSPECIFIED
    quality: str = "neural"
    engine: str = ""


FIRST_PIECE_WORDS = 6


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine offers: its identity, its voices, how to split text for it.

    Attributes:
        name: Engine name, e.g. "kokoro".
        version: Version of the engine and its model (part of the audio cache key).
        voices: Every voice it offers.
        first_piece_words: About how many words the first piece of a text should
            have so that its first chunk comes quickly: fewer for slower engines.
        speeds: Whether it honours `SynthesisRequest.speed`.
    """

    name: str
    version: str
    voices: tuple[Voice, ...]
    first_piece_words: int = FIRST_PIECE_WORDS
    speeds: bool = False


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """One piece of text to speak with one voice (a name from `Capabilities.voices`), at
    `speed` times the voice's own rate (engines whose `Capabilities.speeds` is false ignore it)."""

    text: str
    voice: str
    speed: float = 1.0


@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at `sample_rate_hz`."""

    samples: np.ndarray
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate_hz


class TtsEngine(Protocol):
    """A speech synthesis engine."""

    @property
    def capabilities(self) -> Capabilities:
        """Name, version and voices; fixed once the engine is loaded."""
        ...

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        """Speaks `request.text`, yielding audio as soon as each part is ready.

        The voice must be one of the engine's; the text is non-empty.
        """
        ...

    async def close(self) -> None:
        """Releases the model; the engine is not used afterwards."""
        ...
