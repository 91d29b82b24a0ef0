"""A deterministic tone generator standing in for a TTS engine in plumbing tests.

Each piece of text becomes a sine tone, 50 ms per character (at least
200 ms), whose pitch depends on the voice. Nothing is loaded; the output
is the same on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import numpy as np

from tts_svc.engines.base import AudioChunk, Capabilities, Gender, SynthesisRequest, Voice

NAME = "fake"
LANGUAGES = ("en-US", "es", "pt-BR", "fr", "de", "it", "hi")
MS_PER_CHAR = 50
MIN_MS = 200


class FakeEngine:
    """One voice `fake-<language>` per language, e.g. "fake-en", "fake-pt".

    Args:
        languages: BCP-47 tags to offer a voice for.
        sample_rate_hz: Rate of every voice.
        delay_s: Wait before each chunk, to stand in for model time.
        fail_text: Text whose synthesis raises RuntimeError (to test error paths).
    """

    def __init__(
        self,
        languages: Iterable[str] = LANGUAGES,
        sample_rate_hz: int = 16_000,
        delay_s: float = 0.0,
        fail_text: str | None = None,
    ) -> None:
        voices = tuple(
            Voice(
                name=f"fake-{code.split('-')[0].lower()}",
                language_code=code,
                sample_rate_hz=sample_rate_hz,
                gender=Gender.UNSPECIFIED,
                quality="formant",
                engine=NAME,
            )
            for code in languages
        )
        self._capabilities = Capabilities(name=NAME, version="1", voices=voices, speeds=True)
        self._pitch_hz = {v.name: 200.0 + 40.0 * i for i, v in enumerate(voices)}
        self._rate_hz = sample_rate_hz
        self._delay_s = delay_s
        self._fail_text = fail_text
        self.requests: list[SynthesisRequest] = []

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        self.requests.append(request)
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if self._fail_text is not None and self._fail_text in request.text:
            raise RuntimeError("fake engine failure")
        duration_ms = round(max(MIN_MS, MS_PER_CHAR * len(request.text)) / request.speed)
        t = np.arange(self._rate_hz * duration_ms // 1000, dtype=np.float32) / self._rate_hz
        tone = 0.3 * np.sin(2 * np.pi * self._pitch_hz[request.voice] * t)
        yield AudioChunk(tone.astype(np.float32), self._rate_hz)

    async def close(self) -> None:
        return None
