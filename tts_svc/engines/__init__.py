"""TTS engines, and building the ones the settings name.

espeak-ng is the fallback that makes every product language speak: it is
loaded last even when `tts.engines` does not name it (unless only the fake
engine is named, for plumbing tests).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from dragoman import config
from dragoman.devices import Device
from dragoman.errors import FailedPrecondition, InvalidArgument
from tts_svc.engines.base import TtsEngine

KNOWN = ("piper", "kokoro", "espeak", "coqui", "triton", "fake")
FALLBACK = "espeak"


def names(settings: config.TtsSettings) -> list[str]:
    """Engine names from `tts.engines`, in order of preference, with the fallback last."""
    chosen = [n.strip().lower() for n in settings.engines.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in KNOWN]
    if unknown or not chosen:
        raise InvalidArgument(
            f"setting tts.engines: unknown or no engine in {settings.engines!r}; known: {', '.join(KNOWN)}"
        )
    chosen = list(dict.fromkeys(chosen))
    if FALLBACK not in chosen and chosen != ["fake"]:
        chosen.append(FALLBACK)
    return chosen


def _load_one(name: str, models_dir: Path, threads: int, executor: Executor, device: Device) -> TtsEngine:
    """Builds one engine (blocking)."""
    if name == "piper":
        from tts_svc.engines.piper import PiperEngine

        return PiperEngine.load(models_dir, threads, executor, device)
    if name == "kokoro":
        from tts_svc.engines.kokoro import KokoroEngine

        return KokoroEngine.load(models_dir, threads, executor, device)
    if name == "espeak":
        from tts_svc.engines.espeak import EspeakEngine

        return EspeakEngine.load(executor)
    if name == "coqui":
        from tts_svc.engines.coqui import CoquiEngine

        if device.gpu:
            raise FailedPrecondition("the coqui engine runs on the CPU here: set tts.device = cpu "
                                     "or leave coqui out of tts.engines")
        return CoquiEngine.load(models_dir, threads, executor)
    from tts_svc.engines.fake import FakeEngine

    return FakeEngine()


async def load(settings: config.Settings, executor: Executor) -> list[TtsEngine]:
    """Loads the engines `settings.tts.engines` names, off the event loop."""
    models_dir, threads = Path(settings.models_dir), settings.tts.cpu_threads
    device = Device.parse(settings.tts.device, "tts.device")
    loop = asyncio.get_running_loop()
    engines: list[TtsEngine] = []
    for name in names(settings.tts):
        if name == "triton":  # the voices hosted by a Triton server (`dragoman triton`)
            from dragoman.triton_client import TritonClient
            from tts_svc.engines import triton

            engines.extend(await triton.load(TritonClient(settings.triton, settings.tls),
                                             settings.triton.ready_timeout_s))
        else:
            engines.append(
                await loop.run_in_executor(executor, _load_one, name, models_dir, threads, executor, device))
    return engines
