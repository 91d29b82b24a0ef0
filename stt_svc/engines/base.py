"""The speech recognition engine interface and its records.

An engine decodes utterances: 16 kHz mono float32 audio in, one
`Transcription` out per utterance. `transcribe_batch` decodes the utterances
of several streams in one model call (one encoder pass, one generate call);
each answer equals what `transcribe` gives for that utterance alone. Calls
block (the service runs them on one dedicated thread per model) and keep no
state between calls, so one engine serves every stream. Segmentation, partial
results and filtering live in the service, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

ANY_LANGUAGE = "*"
Task = Literal["transcribe", "translate"]
"""Whisper's tasks: text in the language spoken, or English text."""


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
    translates_to_english: bool = False
    """Whether it decodes with task "translate" (multilingual Whisper models)."""


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
    fallback_beam_size: int = 0
    """Beam width of a retry at temperature 0 when the first decode looks degenerate, before
    any higher temperature (deterministic, unlike sampling); 0 (or <= beam_size): none."""
    task: Task = "transcribe"
    """"translate": English text whatever the language (models that translate_to_english)."""
    window_step_s: float | None = None
    """Encoder windows in whole steps of this many seconds (engines that take shorter
    windows); None: the engine's own step."""


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
    encoder_audio_s: float = 0.0
    """Seconds of audio the encoder ran over: the window, padding included (a cost proxy:
    GPU work grows with it)."""
    decoder_tokens: int = 0
    """Tokens the decoder generated, every fallback attempt counted, forced prefix not."""


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One utterance to decode, as part of a batch."""

    audio: np.ndarray = field(repr=False)
    """16 kHz mono float32, at most `Capabilities.max_audio_s`."""
    options: DecodeOptions


@runtime_checkable
class SpeechRecognizer(Protocol):
    """A loaded speech recognition model."""

    @property
    def capabilities(self) -> Capabilities: ...

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        """Decodes `audio` (16 kHz mono float32, at most `max_audio_s`). Blocking."""
        ...

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        """Decodes several utterances in one model call, answers in order. Blocking.

        Raises if any request is invalid; the caller then retries them one by one.
        """
        ...

    async def close(self) -> None:
        """Releases connections (Triton); the engine is not used afterwards."""
        ...
