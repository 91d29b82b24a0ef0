"""The speech recognition engine interface and its records.

An engine decodes one utterance at a time: 16 kHz mono float32 audio in, one
`Transcription` out. It blocks (the service runs it in a dedicated executor)
and keeps no state between calls, so one engine can serve every stream.
Segmentation, partial results and filtering live in the service, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

ANY_LANGUAGE = "*"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a loaded model offers."""

    name: str
    """Model name, e.g. "whisper-base"."""
    engine: str
    """Engine that runs it, e.g. "faster-whisper"."""
    languages: tuple[str, ...]
    """Base language codes it transcribes ("en", "pt", ...)."""
    detects_language: bool
    """Whether it can identify the language itself (multilingual models)."""
    max_audio_s: float = 30.0
    """Longest audio one call decodes in a single window."""


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How to decode one utterance."""

    language: str | None = None
    """Base language code; None asks the engine to identify it."""
    prefix: str = ""
    """Text the transcript must start with (the stable prefix already sent)."""
    hotwords: tuple[str, ...] = ()
    """Words and phrases to favour."""
    word_timestamps: bool = False
    """Align words to the audio (finals); partials skip it for speed."""
    beam_size: int = 1
    """Beam width; 1 is greedy."""
    temperatures: tuple[float, ...] = (0.0,)
    """Temperatures tried in turn while the output looks degenerate."""


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One word, timed from the start of the decoded audio."""

    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class Transcription:
    """The decoder's answer for one utterance, with the signals guards need."""

    text: str
    """Transcript, starting with the requested prefix."""
    language: str
    """Base language code used (given or identified)."""
    language_probability: float
    """Probability of `language`; 1.0 when it was given."""
    avg_logprob: float = 0.0
    """Mean log probability of the generated tokens."""
    no_speech_prob: float = 0.0
    """Probability the model assigns to "no speech in this audio"."""
    compression_ratio: float = 1.0
    """gzip compression ratio of the text; high means repetitive."""
    words: tuple[WordTiming, ...] = field(default=())
    """Word timings when asked for; empty otherwise."""


@runtime_checkable
class SpeechRecognizer(Protocol):
    """A loaded speech recognition model."""

    @property
    def capabilities(self) -> Capabilities: ...

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        """Decodes `audio` (16 kHz mono float32, at most `max_audio_s`). Blocking."""
        ...
