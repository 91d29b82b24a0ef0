"""Fixtures of the tts_svc tests: one real service and one Whisper model per session."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import numpy as np
import pytest

from dragoman import config, rpc
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.conftest import started
from tts_svc import server
from tts_svc.cache import MemoryCache
from tts_svc.engines.fake import FakeEngine

if TYPE_CHECKING:
    from dragoman.tts.v1.tts_pb2_grpc import TextToSpeechServiceAsyncStub as Stub


def stub(channel: grpc.aio.Channel) -> Stub:
    """The async stub (mypy cannot pick the aio overload through an untyped channel)."""
    return cast("Stub", tts_pb2_grpc.TextToSpeechServiceStub(channel))


@pytest.fixture(scope="session")
def tts_settings(settings: config.Settings, models_dir: Path) -> config.Settings:
    """The default settings with the real engines (piper, kokoro; espeak-ng comes as the fallback)."""
    return dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, engines="piper,kokoro"))


@pytest.fixture(scope="session")
def tts_cache() -> MemoryCache:
    """The audio cache of the `tts` service, to read its counters."""
    return MemoryCache()


@pytest.fixture(scope="session")
async def tts(tts_settings: config.Settings, tts_cache: MemoryCache) -> AsyncIterator[Stub]:
    """A stub to one real tts_svc (Piper, Kokoro, espeak-ng, warmed up) for the whole session."""
    service = await server.create(tts_settings, cache=tts_cache)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield stub(channel)


@pytest.fixture(scope="session")
def whisper(models_dir: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(models_dir / "whisper-base"), device="cpu", compute_type="int8", cpu_threads=2)


@dataclasses.dataclass
class FakeService:
    """A tts_svc on the fake engine, and the engine to inspect what it was asked."""

    stub: Stub
    engine: FakeEngine


FAKE_DELAY_S = 0.05
FAIL_TEXT = "BOOM"


@pytest.fixture
async def fake(settings: config.Settings) -> AsyncIterator[FakeService]:
    """A tts_svc on a fake engine taking 50 ms per piece, one stream at a time;
    text containing "BOOM" makes the engine fail."""
    engine = FakeEngine(delay_s=FAKE_DELAY_S, fail_text=FAIL_TEXT)
    service = await server.create(settings, engine=engine, max_streams=1)
    engine.requests.clear()  # forget the warm-up
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield FakeService(stub(channel), engine)


async def collect(stub: Stub, **request: Any) -> list[tts_pb2.SynthesizeResponse]:
    return [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(**request))]


async def read_all(call: Any) -> list[tts_pb2.SynthesizeResponse]:
    """The remaining responses of a stream call (usable after `call.read()`)."""
    out = []
    while (response := await call.read()) is not grpc.aio.EOF:
        out.append(response)
    return out


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """Awaits a unary call or drains a stream; returns the error it must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_all(call) if hasattr(call, "read") else await call
    return info.value


def samples(responses: list[tts_pb2.SynthesizeResponse]) -> np.ndarray:
    """The float samples of all chunks, joined."""
    pcm = b"".join(r.audio for r in responses)
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def rms(pcm16: bytes) -> float:
    x = np.frombuffer(pcm16, "<i2").astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def decode_ogg(data: bytes) -> tuple[np.ndarray, int]:
    """All samples of an Ogg Opus file as FFmpeg decodes them, and their rate."""
    import av

    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        rate_hz = container.streams.audio[0].codec_context.sample_rate
    return np.concatenate(frames), rate_hz
