"""Fixtures and a small client for the stt_svc tests.

Real models load once per session (`whisper_engines`); services built on
them are cheap, so tests that need other limits start their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from dragoman import audio, config, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import engines, server
from stt_svc.engines.base import SpeechRecognizer
from tests.conftest import started

RATE_HZ = 16_000
Request = stt_pb2.StreamingRecognizeRequest
Response = stt_pb2.StreamingRecognizeResponse


def with_stt(settings: config.Settings, **changes: Any) -> config.Settings:
    """`settings` with some `stt` fields changed."""
    return dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, **changes))


def clip(fleurs: Path, name: str, rate_hz: int = RATE_HZ) -> np.ndarray:
    return audio.decode_file(fleurs / f"{name}.ogg", rate_hz)


def silence(seconds: float, rate_hz: int = RATE_HZ) -> np.ndarray:
    return np.zeros(int(seconds * rate_hz), np.float32)


def clip_then_silence(fleurs: Path, name: str) -> np.ndarray:
    """A clip and 2 s of silence after it: its last utterance ends at the endpoint."""
    return np.concatenate([clip(fleurs, name), silence(2.0)])


def white_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(0.0, 0.1, int(seconds * RATE_HZ)), -1, 1).astype(np.float32)


def pink_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (rain, fans, traffic hum), peak 0.1."""
    n = int(seconds * RATE_HZ)
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.maximum(np.sqrt(np.arange(len(spectrum))), 1.0)
    x = np.fft.irfft(spectrum, n)
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Plucked notes with harmonics and fifths, four a second, peak 0.2."""
    t = np.arange(RATE_HZ // 4) / RATE_HZ
    notes = []
    for f0 in rng.choice([220, 247, 262, 294, 330, 349, 392, 440], int(seconds * 4)):
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
        tone += sum(np.sin(2 * np.pi * 1.5 * f0 * k * t) / k for k in (1, 2))
        notes.append(tone * np.exp(-3 * t))
    x = np.concatenate(notes)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def stream_config(
    language_code: str = "en",
    rate_hz: int = RATE_HZ,
    *,
    interim: bool = False,
    endpoint_ms: int = 0,
    hotwords: Sequence[str] = (),
) -> stt_pb2.StreamingRecognitionConfig:
    cfg = stt_pb2.StreamingRecognitionConfig(
        language_code=language_code,
        encoding=stt_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=rate_hz,
        interim_results=interim,
        hotwords=list(hotwords),
    )
    if endpoint_ms:
        cfg.endpoint_silence.CopyFrom(duration_pb2.Duration(nanos=endpoint_ms * 1_000_000))
    return cfg


def requests(
    cfg: stt_pb2.StreamingRecognitionConfig | None,
    samples: np.ndarray,
    rate_hz: int = RATE_HZ,
    chunk_ms: int = 100,
) -> list[Request]:
    """Config, then the audio as PCM16 chunks of `chunk_ms`."""
    first = [Request(config=cfg)] if cfg is not None else []
    pcm = audio.float_to_pcm16(samples)
    return first + [Request(audio=c) for c in audio.chunks(pcm, rate_hz, chunk_ms)]


async def _paced(items: Iterable[Request], pause_s: float) -> AsyncIterator[Request]:
    for item in items:
        yield item
        if pause_s:
            await asyncio.sleep(pause_s)


async def recognize(
    stub: stt_pb2_grpc.SpeechToTextServiceStub, items: Iterable[Request], pause_s: float = 0.0
) -> list[Response]:
    """Sends `items` (as fast as possible unless paced), returns every response."""
    return [r async for r in stub.StreamingRecognize(_paced(items, pause_s))]


def finals(responses: list[Response]) -> list[stt_pb2.RecognitionResult]:
    return [r.result for r in responses if r.HasField("result") and r.result.is_final]


def partials(responses: list[Response]) -> list[stt_pb2.RecognitionResult]:
    return [r.result for r in responses if r.HasField("result") and not r.result.is_final]


def events(responses: list[Response]) -> list[tuple[int, int]]:
    """(type, utterance_index) of each speech event."""
    return [
        (r.speech_event.type, r.speech_event.utterance_index)
        for r in responses
        if r.HasField("speech_event")
    ]


def final_text(responses: list[Response]) -> str:
    return " ".join(f.transcript for f in finals(responses) if f.transcript)


async def expect_error(
    stub: stt_pb2_grpc.SpeechToTextServiceStub, items: Iterable[Request]
) -> grpc.aio.AioRpcError:
    """Sends `items`, then holds the stream open until the server ends it with an error.

    Holding (instead of half-closing or writing on) avoids a grpc.aio client race
    (grpc/grpc#36066): a write that fails because the server already answered is
    reported as INTERNAL instead of the server's status.
    """
    never = asyncio.Event()

    async def send() -> AsyncIterator[Request]:
        for item in items:
            yield item
        await never.wait()

    call = stub.StreamingRecognize(send())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    return info.value


@pytest.fixture(scope="session")
async def whisper_engines(
    settings: config.Settings, models_dir: Path
) -> list[SpeechRecognizer]:
    """whisper-base and whisper-tiny.en, loaded and warmed up once (English goes to base
    by default; tests of tiny.en name it)."""
    return await asyncio.to_thread(engines.load, with_stt(
        settings, engine="whisper", english_model="whisper-tiny.en"))


@pytest.fixture(scope="session")
async def stt_address(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer]
) -> AsyncIterator[str]:
    service = await server.create(settings, engine=whisper_engines)
    async for address in started(service):
        yield address


@pytest.fixture(scope="session")
async def stt(stt_address: str) -> AsyncIterator[stt_pb2_grpc.SpeechToTextServiceStub]:
    async with rpc.channel(stt_address) as channel:
        yield stt_pb2_grpc.SpeechToTextServiceStub(channel)
