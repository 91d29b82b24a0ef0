"""The loaded models, each with its decode lane, and the choice of model per language."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dragoman.errors import InvalidArgument
from stt_svc import languages
from stt_svc.engines.base import Capabilities, DecodeOptions, SpeechRecognizer, Transcription
from stt_svc.lanes import DecodeLane, Priority, Timed


@dataclass(frozen=True, slots=True)
class LoadedModel:
    engine: SpeechRecognizer
    lane: DecodeLane

    @property
    def capabilities(self) -> Capabilities:
        return self.engine.capabilities

    def decode(
        self, audio: np.ndarray, options: DecodeOptions, priority: Priority
    ) -> asyncio.Future[Timed[Transcription]]:
        """Queues one decode; cancel the future to withdraw it."""
        call = functools.partial(self.engine.transcribe, audio, options)
        return self.lane.submit(call, priority)


class Models:
    """Picks, per language, the most specialised model that serves it."""

    def __init__(self, engines: Sequence[SpeechRecognizer], max_pending: int) -> None:
        if not engines:
            raise ValueError("no speech recognition model is loaded")
        self.loaded = [
            LoadedModel(e, DecodeLane(e.capabilities.name, max_pending)) for e in engines
        ]
        self.languages = sorted({lang for m in self.loaded for lang in m.capabilities.languages})

    def resolve(self, language_code: str) -> str | None:
        """Base language of a client's tag; None for "" (automatic detection)."""
        if not language_code:
            if not any(m.capabilities.detects_language for m in self.loaded):
                raise InvalidArgument(
                    "automatic language detection needs a multilingual model, and none is "
                    f"installed; give language_code (one of: {', '.join(self.languages)})"
                )
            return None
        base = languages.base_language(language_code)
        if base not in self.languages:
            raise languages.unsupported(language_code, self.languages)
        return base

    def for_language(self, language: str | None) -> LoadedModel:
        """The model for `language` (None: one that identifies the language)."""
        if language is None:
            return next(m for m in self.loaded if m.capabilities.detects_language)
        serving = [m for m in self.loaded if language in m.capabilities.languages]
        if not serving:
            raise languages.unsupported(language, self.languages)
        return min(serving, key=lambda m: len(m.capabilities.languages))

    async def close(self) -> None:
        for model in self.loaded:
            await model.lane.close()
