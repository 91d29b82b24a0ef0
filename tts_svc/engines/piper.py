"""Piper (VITS, ONNX) voices: fast neural synthesis, one model file per voice.

Every `<models_dir>/piper-*/<voice>.onnx` with its `<voice>.onnx.json` is a
voice named after the file (e.g. "en_US-joe-medium"): the packaged piper-joe,
and the voices `dragoman models pull` installs (skipped when damaged). Piper phonemises with
its bundled espeak-ng, which also reads numbers out in the voice's language.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dragoman.catalog import pulled
from dragoman.errors import FailedPrecondition
from tts_svc.engines.base import AudioChunk, Capabilities, Gender, SynthesisRequest, Voice
from tts_svc.engines.onnx_session import session

if TYPE_CHECKING:
    from piper import PiperVoice

    from dragoman.devices import Device

log = logging.getLogger(__name__)

NAME = "piper"
# Piper voice configs do not state a gender; these are the speakers we ship.
_GENDER_BY_DATASET = {"joe": Gender.MALE}


@dataclass(frozen=True, slots=True)
class _Loaded:
    voice: Voice
    model: PiperVoice


def _language_code(config: dict[str, Any], path: Path) -> str:
    code = str(config.get("language", {}).get("code") or path.name.split("-", 1)[0])
    return code.replace("_", "-")


def _load_voice(path: Path, cpu_threads: int, device: Device) -> _Loaded:
    from piper import PiperVoice
    from piper.config import PiperConfig

    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    model = PiperVoice(session=session(path, cpu_threads, device), config=PiperConfig.from_dict(config))
    voice = Voice(
        name=path.name.removesuffix(".onnx"),
        language_code=_language_code(config, path),
        sample_rate_hz=model.config.sample_rate,
        gender=_GENDER_BY_DATASET.get(str(config.get("dataset", "")), Gender.UNSPECIFIED),
        quality="neural",
        engine=NAME,
    )
    return _Loaded(voice, model)


def _intact(folder: Path) -> bool:
    """Whether the voice in `folder` may be loaded: one pulled from the hub only when its
    install is intact (manifest and sizes, as mt_svc checks its pulled models)."""
    entry = pulled.HUB.get(folder.name)
    if entry is None:
        return True
    status = pulled.status(folder.parent, folder.name, {folder.name: entry})
    if not status.usable:
        log.warning("voice %s not usable: %s", folder.name, status.detail)
    return status.usable


class PiperEngine:
    """All Piper voices found under a models directory."""

    def __init__(self, voices: list[_Loaded], executor: Executor) -> None:
        self._voices = {v.voice.name: v for v in voices}
        self._executor = executor
        self._capabilities = Capabilities(
            name=NAME,
            version=f"piper-tts {importlib.metadata.version('piper-tts')}",
            voices=tuple(v.voice for v in voices),
            speeds=True,
        )

    @classmethod
    def load(cls, models_dir: Path, cpu_threads: int, executor: Executor, device: Device) -> PiperEngine:
        """Loads every voice in `models_dir/piper-*/` (blocking: about 0.3 s per voice)."""
        paths = sorted(p for p in models_dir.glob("piper-*/*.onnx")
                       if Path(f"{p}.json").exists() and _intact(p.parent))
        if not paths:
            raise FailedPrecondition(
                f"no Piper voice in {models_dir}/piper-*/ (expected <voice>.onnx and "
                "<voice>.onnx.json): run `dragoman models install`"
            )
        voices = [_load_voice(p, cpu_threads, device) for p in paths]
        log.info("piper loaded", extra={"voices": [v.voice.name for v in voices]})
        return cls(voices, executor)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        from piper.config import SynthesisConfig

        model = self._voices[request.voice].model
        loop = asyncio.get_running_loop()
        # length_scale stretches the phoneme durations: the voice's own divided by the speed.
        config = None if request.speed == 1.0 else SynthesisConfig(
            length_scale=model.config.length_scale / request.speed)
        # Piper yields one chunk per sentence it finds; each step runs off the loop.
        parts = iter(model.synthesize(request.text, config))
        while (part := await loop.run_in_executor(self._executor, next, parts, None)) is not None:
            yield AudioChunk(part.audio_float_array, part.sample_rate)

    async def close(self) -> None:
        self._voices.clear()
