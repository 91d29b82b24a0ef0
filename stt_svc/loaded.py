"""The loaded models, each with its decode lane, and the choice of model per language."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dragoman import metrics
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import LANGUAGES
from dragoman.packs import SttChoice
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


def count_costs(priority: Priority, results: Sequence[Transcription | Exception]) -> None:
    """Adds a batch's decodes, encoder seconds and decoder tokens to the cost counters
    (dragoman_stt_*_total{kind}): model-agnostic figures that predict GPU work."""
    kind = priority.name.lower()
    done = [r for r in results if isinstance(r, Transcription)]
    metrics.STT_DECODES.labels(kind).inc(len(done))
    metrics.STT_ENCODER_AUDIO.labels(kind).inc(sum(r.encoder_audio_s for r in done))
    metrics.STT_DECODER_TOKENS.labels(kind).inc(sum(r.decoder_tokens for r in done))


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
    """Picks, per language, the model `choice` names (dragoman.packs: the settings' or the
    strongest installed), else the most specialised model that serves it."""

    def __init__(
        self, engines: Sequence[SpeechRecognizer], max_pending: int, max_batch: int = MAX_BATCH,
        choice: SttChoice | None = None,
    ) -> None:
        if not engines:
            raise ValueError("no speech recognition model is loaded")
        self.loaded = [_loaded(e, max_pending, max_batch) for e in engines]
        self.languages = sorted({lang for m in self.loaded for lang in m.capabilities.languages})
        by_name = {m.capabilities.name: m for m in self.loaded}
        self._chosen: dict[str, LoadedModel] = {}
        self._reasons: dict[str, str] = {}
        self._default: LoadedModel | None = None
        if choice is not None:
            self._chosen = {
                lang: by_name[name] for lang, name in choice.models.items()
                if name in by_name and lang in by_name[name].capabilities.languages
            }
            self._reasons = dict(choice.reasons)
            self._default = by_name.get(choice.default)

    def chosen_languages(self, model: LoadedModel) -> list[str]:
        """The product languages `model` is the choice for (what ListModels reports)."""
        if not self._chosen:
            return sorted({lang for lang in LANGUAGES if self._fallback(lang) is model})
        return sorted(lang for lang, m in self._chosen.items() if m is model)

    def reason(self, model: LoadedModel) -> str:
        """Why `model` is loaded, e.g. "setting stt.model" or "auto: the strongest installed …"."""
        if self._reasons:
            return self._reasons.get(model.capabilities.name, "")
        return "the most specialised loaded model for its languages"

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
            default = self._default
            if default is not None and default in candidates and default.capabilities.detects_language:
                return default
            return next(m for m in candidates if m.capabilities.detects_language)
        chosen = self._chosen.get(language)
        if chosen is not None and chosen in candidates:
            return chosen
        model = self._fallback(language, candidates)
        if model is None:
            raise languages.unsupported(language, self.languages)
        return model

    def _fallback(self, language: str, candidates: Sequence[LoadedModel] | None = None) -> LoadedModel | None:
        serving = [m for m in (self.loaded if candidates is None else candidates)
                   if language in m.capabilities.languages]
        if self._default is not None and self._default in serving:
            return self._default
        return min(serving, key=lambda m: len(m.capabilities.languages), default=None)

    async def close(self) -> None:
        for model in self.loaded:
            await model.lane.close()


def _loaded(engine: SpeechRecognizer, max_pending: int, max_batch: int) -> LoadedModel:
    lane = DecodeLane(
        engine.capabilities.name, _runner(engine), max_pending=max_pending, max_batch=max_batch,
        partial_share=PARTIAL_SHARE, on_batch=count_costs,
    )
    return LoadedModel(engine, lane)
