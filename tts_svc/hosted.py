"""What tts_svc offers a Triton host: each TTS engine as a batch callable (dragoman.hosting)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dragoman import config, errors
from dragoman.hosting import HostedModel, Rows, error_row, json_bytes, rows_of, tts_spec, without_triton
from dragoman.triton_client import LoopThread, bytes_rows
from tts_svc import engines as registry
from tts_svc.engines.base import SynthesisRequest
from tts_svc.pipeline import WARM_UP_TEXT


def tts_model(engine: Any, loop: LoopThread) -> HostedModel:
    """A TtsEngine (running on `loop`): every row synthesised concurrently; chunks concatenated."""
    voices = {v.name for v in engine.capabilities.voices}

    async def speak(text: str, voice: str) -> tuple[dict[str, Any], bytes]:
        try:
            if voice not in voices:
                raise errors.NotFound(f"voice {voice!r} is not one of {engine.capabilities.name}'s")
            chunks = [c async for c in engine.synthesize(SynthesisRequest(text, voice))]
            rate_hz = chunks[0].sample_rate_hz if chunks else 0
            audio = b"".join(np.asarray(c.samples, dtype="<f4").tobytes() for c in chunks)
            return {"rate_hz": rate_hz, "lengths": [int(c.samples.size) for c in chunks]}, audio
        except Exception as e:  # noqa: BLE001 - one row's failure is that row's answer
            return error_row(e), b""

    async def speak_all(rows: list[tuple[str, str]]) -> list[tuple[dict[str, Any], bytes]]:
        return list(await asyncio.gather(*(speak(t, v) for t, v in rows)))

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        rows = [
            (t.decode(), v.decode())
            for r in requests
            for t, v in zip(rows_of(r, "TEXT"), rows_of(r, "VOICE"), strict=True)
        ]
        results = iter(loop.run(speak_all(rows)))
        out = []
        for r in requests:
            mine = [next(results) for _ in range(len(rows_of(r, "TEXT")))]
            out.append({"RESULT": bytes_rows(json_bytes(m) for m, _ in mine),
                        "AUDIO": bytes_rows(a for _, a in mine)})
        return out

    caps = engine.capabilities
    record = {
        **{f.name: getattr(caps, f.name) for f in dataclasses.fields(caps) if f.name != "voices"},
        "voices": [{**dataclasses.asdict(v), "gender": v.gender.name} for v in caps.voices],
    }
    return HostedModel(tts_spec(caps.name), record, infer)


def in_process(settings: config.Settings) -> config.Settings:
    """`settings` without the triton engine (the host runs the real ones)."""
    tts = dataclasses.replace(settings.tts, engines=without_triton(settings.tts.engines, "piper,kokoro"))
    return dataclasses.replace(settings, tts=tts)


def only(settings: config.Settings, engine: str) -> config.Settings:
    """`settings` that load only `engine` ("piper"), for one Python-backend instance."""
    return dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, engines=engine))


def load(settings: config.Settings) -> list[HostedModel]:
    """The configured engines, loaded, warmed up and wrapped, each on one loop thread. Blocking."""
    loop = LoopThread("triton-tts")
    return [tts_model(e, loop) for e in loop.run(_engines(settings))]


async def _engines(settings: config.Settings) -> list[Any]:
    """The configured engines, loaded and warmed up on the loop that will run them."""
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="triton-tts")
    engines = await registry.load(settings, executor)
    for engine in engines:
        voice = engine.capabilities.voices[0]
        text = WARM_UP_TEXT.get(voice.language_code.split("-")[0].lower(), "Hello.")
        async for _ in engine.synthesize(SynthesisRequest(text, voice.name)):
            pass
    return engines
