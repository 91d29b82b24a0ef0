"""TTS engines, and building the ones the settings name."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from dragoman import config
from dragoman.errors import InvalidArgument
from tts_svc.engines.base import TtsEngine

KNOWN = ("piper", "kokoro", "fake")


def names(settings: config.TtsSettings) -> list[str]:
    """Engine names from `tts.engines`, in order of preference."""
    chosen = [n.strip().lower() for n in settings.engines.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in KNOWN]
    if unknown or not chosen:
        raise InvalidArgument(
            f"setting tts.engines: unknown or no engine in {settings.engines!r}; known: {', '.join(KNOWN)}"
        )
    return chosen


async def load(settings: config.Settings, executor: Executor) -> list[TtsEngine]:
    """Loads the engines `settings.tts.engines` names, off the event loop."""
    models_dir, threads = Path(settings.models_dir), settings.tts.cpu_threads
    loop = asyncio.get_running_loop()
    engines: list[TtsEngine] = []
    for name in names(settings.tts):
        if name == "piper":
            from tts_svc.engines.piper import PiperEngine

            engines.append(
                await loop.run_in_executor(executor, PiperEngine.load, models_dir, threads, executor)
            )
        elif name == "kokoro":
            from tts_svc.engines.kokoro import KokoroEngine

            engines.append(
                await loop.run_in_executor(executor, KokoroEngine.load, models_dir, threads, executor)
            )
        else:
            from tts_svc.engines.fake import FakeEngine

            engines.append(FakeEngine())
    return engines
