"""A deterministic engine for plumbing tests (never for quality tests).

It "hears" one word of a fixed script per `ms_per_word` of audio whose RMS is
above a floor, honours the forced prefix like Whisper does, times words
evenly, and can sleep to stand in for decode cost (once per model call, a
batch costing as much as one decode). Every decode is recorded in `calls`,
and the size of every model call in `batches`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stt_svc.engines.base import (
    Capabilities,
    DecodeOptions,
    DecodeRequest,
    Transcription,
    WordTiming,
)

RATE_HZ = 16_000
SCRIPT = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One recorded decode."""

    options: DecodeOptions
    audio_samples: int
    started_s: float
    finished_s: float
    batch: int
    """Index in `FakeEngine.batches` of the model call that decoded it."""


@dataclass
class FakeEngine:
    """Words from `SCRIPT`, one per `ms_per_word` of audio above `floor_rms`."""

    name: str = "fake"
    languages: tuple[str, ...] = ("en", "es", "pt", "de", "fr")
    detected_language: str = "en"
    detected_probability: float = 0.95
    ms_per_word: int = 300
    floor_rms: float = 1e-5
    delay_s: float = 0.0
    max_words: int = 0
    """Words one decode gives at most (0: no limit), as a Whisper generate that ends early."""
    prefixed_max_words: int = 0
    """Words a decode forced to start with a prefix gives at most (0: no limit), as a Whisper
    generate derailed by a misheard stable prefix."""
    prefixed_no_speech_prob: float = 0.0
    """no_speech_prob of a decode forced to start with a prefix (0: as any other's), as
    Whisper's on quiet speech."""
    calls: list[FakeCall] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    """Number of utterances of each model call, in order."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=self.name, engine="fake", languages=self.languages,
            detects_language=len(self.languages) > 1,
        )

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        return self.transcribe_batch([DecodeRequest(audio, options)])[0]

    async def close(self) -> None:
        """Nothing to release."""

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        started = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        results = [self._decode(r.audio, r.options) for r in requests]
        finished = time.perf_counter()
        with self._lock:
            batch = len(self.batches)
            self.batches.append(len(requests))
            self.calls += [
                FakeCall(r.options, len(r.audio), started, finished, batch) for r in requests
            ]
        return results

    def _decode(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        heard = float(np.sqrt(np.mean(np.square(audio)))) > self.floor_rms if len(audio) else False
        count = len(audio) * 1000 // (RATE_HZ * self.ms_per_word) if heard else 0
        if self.max_words:
            count = min(count, self.max_words)
        prefix = options.prefix.split()
        if prefix and self.prefixed_max_words:
            count = min(count, self.prefixed_max_words)
        words = prefix + [SCRIPT[i % len(SCRIPT)] for i in range(len(prefix), max(count, 0))]
        step_s = self.ms_per_word / 1000
        timings = tuple(
            WordTiming(w, i * step_s, (i + 1) * step_s, 0.9) for i, w in enumerate(words)
        ) if options.word_timestamps else ()
        detected = options.language is None
        return Transcription(
            text=" ".join(words),
            language=self.detected_language if detected else str(options.language),
            language_probability=self.detected_probability if detected else 1.0,
            avg_logprob=-0.2 if words else -1.5,
            no_speech_prob=(self.prefixed_no_speech_prob if prefix and self.prefixed_no_speech_prob
                            else 0.05) if words else 0.9,
            compression_ratio=1.2,
            words=timings,
            encoder_audio_s=len(audio) / RATE_HZ,
            decoder_tokens=max(0, len(words) - len(prefix)),
        )
