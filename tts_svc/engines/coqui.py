"""Coqui TTS (VITS, XTTS; PyTorch): an optional engine for more neural voices.

Not part of the default install: `coqui-tts` needs torch and torchaudio, and
PyPI has torchaudio only for CUDA builds of torch, so it is the `coqui`
extra (`pip install 'dragoman[coqui]'`). Each model is a directory
`<models_dir>/coqui-<model>-<language>/` (e.g. `coqui-vits-de/`) holding the
model's `config.json` and its `.pth` checkpoint; a multilingual model
(XTTS) lists its languages in the config and gets one voice per language.
The voice is named after the directory, plus `-<language>` for
multilingual ones. Without the package or without a model the engine does
not load and says what to install.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dragoman.errors import FailedPrecondition
from tts_svc.engines.base import AudioChunk, Capabilities, SynthesisRequest, Voice

log = logging.getLogger(__name__)

NAME = "coqui"
PACKAGE = "coqui-tts"
INSTALL_HINT = "install the coqui extra: pip install 'dragoman[coqui]'"
FIRST_PIECE_WORDS = 4
"""PyTorch VITS on CPU is about as slow as Kokoro: keep the first piece short."""


@dataclass(frozen=True, slots=True)
class ModelDir:
    """A Coqui model directory: its checkpoint, config, and the languages it speaks."""

    path: Path
    checkpoint: Path
    config: Path
    languages: tuple[str, ...]
    multilingual: bool


def find_models(models_dir: Path) -> list[ModelDir]:
    """Every `coqui-*` directory of `models_dir` with a config.json and a .pth checkpoint."""
    found = []
    for path in sorted(models_dir.glob("coqui-*")):
        config, checkpoints = path / "config.json", sorted(path.glob("*.pth"))
        if not (path.is_dir() and config.is_file() and checkpoints):
            continue
        model = next(
            (c for c in checkpoints if c.stem in ("model", "model_file", "best_model")), checkpoints[0]
        )
        languages = json.loads(config.read_text(encoding="utf-8")).get("languages") or []
        if languages:
            found.append(ModelDir(path, model, config, tuple(languages), multilingual=True))
        else:
            found.append(ModelDir(path, model, config, (path.name.rsplit("-", 1)[-1],), multilingual=False))
    return found


def _import_api() -> Any:
    """`TTS.api.TTS`, or FAILED_PRECONDITION saying how to install it."""
    try:
        from TTS.api import TTS
    except ImportError as e:  # the package, or torch/torchaudio under it
        raise FailedPrecondition(f"Coqui TTS is not installed ({e}): {INSTALL_HINT}") from None
    return TTS


def check_installed(models_dir: Path) -> list[ModelDir]:
    """The model directories, when the package and at least one model are there.

    Otherwise FAILED_PRECONDITION naming every missing piece and how to get it.
    """
    models = find_models(models_dir)
    problems = []
    try:
        _import_api()
    except FailedPrecondition as e:
        problems.append(e.message)
    if not models:
        problems.append(
            f"no Coqui TTS model in {models_dir}: put a model's config.json and .pth checkpoint in "
            f"{models_dir}/coqui-<model>-<language>/ (e.g. coqui-vits-de/)"
        )
    if problems:
        raise FailedPrecondition("; ".join(problems))
    return models


@dataclass(frozen=True, slots=True)
class _Loaded:
    voice: Voice
    model: Any  # TTS.api.TTS
    language: str | None  # passed to a multilingual model
    speaker: str | None


class CoquiEngine:
    """Every Coqui model found under a models directory."""

    def __init__(self, voices: list[_Loaded], executor: Executor) -> None:
        self._voices = {v.voice.name: v for v in voices}
        self._executor = executor
        self._capabilities = Capabilities(
            name=NAME,
            version=importlib.metadata.version(PACKAGE),
            voices=tuple(v.voice for v in voices),
            first_piece_words=FIRST_PIECE_WORDS,
        )

    @classmethod
    def load(cls, models_dir: Path, cpu_threads: int, executor: Executor) -> CoquiEngine:
        """Loads every model (blocking: seconds per model)."""
        models = check_installed(models_dir)
        import torch

        torch.set_num_threads(cpu_threads)
        api = _import_api()
        voices = [v for m in models for v in _load_model(api, m)]
        log.info("coqui loaded", extra={"voices": [v.voice.name for v in voices]})
        return cls(voices, executor)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        loaded = self._voices[request.voice]
        speak = functools.partial(
            loaded.model.tts, text=request.text, language=loaded.language, speaker=loaded.speaker
        )
        samples = await asyncio.get_running_loop().run_in_executor(self._executor, speak)
        yield AudioChunk(np.asarray(samples, dtype=np.float32), loaded.voice.sample_rate_hz)

    async def close(self) -> None:
        self._voices.clear()


def _load_model(api: Any, model: ModelDir) -> list[_Loaded]:
    tts = api(model_path=str(model.checkpoint), config_path=str(model.config), progress_bar=False)
    rate_hz = int(tts.synthesizer.output_sample_rate)
    speakers = list(getattr(tts, "speakers", None) or [])
    speaker = speakers[0] if speakers else None
    out = []
    for language in model.languages:
        name = f"{model.path.name}-{language}" if model.multilingual else model.path.name
        voice = Voice(
            name=name, language_code=language, sample_rate_hz=rate_hz, quality="neural", engine=NAME
        )
        out.append(_Loaded(voice, tts, language if model.multilingual else None, speaker))
    return out
