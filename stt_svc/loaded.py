"""The loaded models, each with its decode lane, and the choice of model per language."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dragoman.errors import FailedPrecondition, InvalidArgument
from stt_svc import languages
from stt_svc.engines.base import (
    Capabilities,
    DecodeOptions,
    DecodeRequest,
    SpeechRecognizer,
    Task,
    Transcription,
)
from stt_svc.lanes import DecodeLane, Priority, Timed

PARTIAL_SHARE = 0.5
"""Most of a model's time that partial decodes may take (see lanes)."""
MAX_BATCH = 4
"""Most decodes of one model in one call. On CPU the encoder's cost grows with the
batch, so a larger batch mostly delays the first answer in it; the decoder's steps
and the per-call overhead are what batching saves there."""


def _runner(engine: SpeechRecognizer) -> Callable[[list[DecodeRequest]], list[Transcription]]:
    def run(requests: list[DecodeRequest]) -> list[Transcription]:
        if len(requests) == 1:
            return [engine.transcribe(requests[0].audio, requests[0].options)]
        return list(engine.transcribe_batch(requests))

    return run


@dataclass(frozen=True, slots=True)
class LoadedModel:
    engine: SpeechRecognizer
    lane: DecodeLane[DecodeRequest, Transcription]

    @property
    def capabilities(self) -> Capabilities:
        return self.engine.capabilities

    def decode(
        self, audio: np.ndarray, options: DecodeOptions, priority: Priority
    ) -> asyncio.Future[Timed[Transcription]]:
        """Queues one decode; cancel the future to withdraw it."""
        return self.lane.submit(DecodeRequest(audio, options), priority)


class Models:
    """Picks, per language, the most specialised model that serves it."""

    def __init__(
        self, engines: Sequence[SpeechRecognizer], max_pending: int, max_batch: int = MAX_BATCH
    ) -> None:
        if not engines:
            raise ValueError("no speech recognition model is loaded")
        self.loaded = [_loaded(e, max_pending, max_batch) for e in engines]
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

    def check_task(self, task: Task) -> None:
        """FAILED_PRECONDITION when no loaded model can do `task`."""
        if task == "translate" and not any(m.capabilities.translates_to_english for m in self.loaded):
            names = ", ".join(m.capabilities.name for m in self.loaded)
            raise FailedPrecondition(
                f"translating speech to English needs a multilingual Whisper model, and none is "
                f"loaded (loaded: {names}); install one (`dragoman models install whisper-base`) "
                "and set stt.model to it"
            )

    def for_language(self, language: str | None, task: Task = "transcribe") -> LoadedModel:
        """The model for `language` (None: one that identifies the language) and `task`
        (English-only models do not translate: "translate" picks a multilingual one)."""
        candidates = [
            m for m in self.loaded if task == "transcribe" or m.capabilities.translates_to_english
        ]
        if language is None:
            return next(m for m in candidates if m.capabilities.detects_language)
        serving = [m for m in candidates if language in m.capabilities.languages]
        if not serving:
            raise languages.unsupported(language, self.languages)
        return min(serving, key=lambda m: len(m.capabilities.languages))

    async def close(self) -> None:
        for model in self.loaded:
            await model.lane.close()


def _loaded(engine: SpeechRecognizer, max_pending: int, max_batch: int) -> LoadedModel:
    lane = DecodeLane(
        engine.capabilities.name, _runner(engine), max_pending=max_pending, max_batch=max_batch,
        partial_share=PARTIAL_SHARE,
    )
    return LoadedModel(engine, lane)
