"""Each service gives the same results with its engines on Triton as with them in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dragoman import audio, config, errors, rpc
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.triton_client import TritonClient
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from mt_svc import engines as mt_engines
from mt_svc import server as mt_server
from mt_svc.engines import triton as mt_triton
from stt_svc import engines as stt_engines
from stt_svc import server as stt_server
from stt_svc.engines import triton as stt_triton
from stt_svc.engines.base import DecodeOptions, DecodeRequest
from tests.conftest import started
from tts_svc import engines as tts_engines
from tts_svc import server as tts_server
from tts_svc.engines import triton as tts_triton
from tts_svc.engines.base import SynthesisRequest

pytestmark = [pytest.mark.models, pytest.mark.slow]

CLIPS = ("fleurs-en-000", "fleurs-en-001")
SENTENCES = 12


# --------------------------------------------------------------------------- STT


async def _transcripts(service: rpc.Service, samples: np.ndarray) -> list[tuple[str, str]]:
    pcm = audio.float_to_pcm16(samples)

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
            language_code="en", encoding=stt_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=audio.STT_RATE_HZ))
        for chunk in audio.chunks(pcm, audio.STT_RATE_HZ, 100):
            yield stt_pb2.StreamingRecognizeRequest(audio=chunk)

    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            return [
                (r.result.transcript, " ".join(w.word for w in r.result.words))
                async for r in stub.StreamingRecognize(requests())
                if r.HasField("result") and r.result.is_final
            ]
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def stt_pair(
    local_settings: config.Settings, triton: Any, client: TritonClient
) -> AsyncIterator[tuple[list, list]]:
    local = await asyncio.to_thread(stt_engines.load, local_settings)
    remote = await asyncio.to_thread(stt_triton.load, client)
    yield local, remote
    await remote[0].close()  # the loop thread they share


async def test_stt_service_same_finals(
    local_settings: config.Settings, stt_pair: tuple[list, list], fleurs: Path
) -> None:
    local, remote = stt_pair
    assert [e.capabilities for e in remote] == [e.capabilities for e in local]
    for name in CLIPS:
        samples = np.concatenate([audio.decode_file(fleurs / f"{name}.ogg", 16_000),
                                  np.zeros(16_000, np.float32)])
        in_process = await _transcripts(await stt_server.create(local_settings, engine=local), samples)
        on_triton = await _transcripts(await stt_server.create(local_settings, engine=remote), samples)
        assert in_process and any(text for text, _ in in_process)
        assert on_triton == in_process


async def test_stt_engine_same_transcription_and_errors(stt_pair: tuple[list, list], fleurs: Path) -> None:
    (local,), (remote,) = stt_pair
    samples = audio.decode_file(fleurs / f"{CLIPS[0]}.ogg", 16_000)
    options = DecodeOptions(language="en", prefix="However,", word_timestamps=True, hotwords=("Triton",))
    assert await asyncio.to_thread(remote.transcribe, samples, options) == local.transcribe(samples, options)
    with pytest.raises(errors.InvalidArgument, match="only transcribes English"):
        await asyncio.to_thread(remote.transcribe, samples, DecodeOptions(language="pt"))


# --------------------------------------------------------------------------- MT


def _tatoeba(tatoeba: Path) -> list[str]:
    lines = (tatoeba / "eng-por.eng").read_text().splitlines()
    return [line for line in lines if line.strip()][:SENTENCES]


async def _translate(service: rpc.Service, segments: Sequence[str]) -> list[tuple[str, str, bool]]:
    async for address in started(service):
        async with rpc.channel(address) as channel:
            reply = await mt_pb2_grpc.TranslationServiceStub(channel).Translate(mt_pb2.TranslateRequest(
                source_language_code="en", target_language_code="pt", segments=list(segments)))
            return [(t.text, t.engine, t.pivoted) for t in reply.translations]
    raise AssertionError("unreachable")


async def test_mt_service_same_translations(
    local_settings: config.Settings, client: TritonClient, tatoeba: Path
) -> None:
    local = await asyncio.to_thread(mt_engines.load, ["bergamot"], local_settings.models_dir)
    remote = await mt_triton.load(client)
    try:
        assert [e.capabilities.pairs for e in remote] == [e.capabilities.pairs for e in local]
        segments = _tatoeba(tatoeba)
        in_process = await _translate(await mt_server.create(local_settings, engines=local), segments)
        on_triton = await _translate(await mt_server.create(local_settings, engines=remote), segments)
        assert {engine for _, engine, _ in in_process} == {"bergamot"}
        assert on_triton == in_process
    finally:
        for engine in local:
            await engine.close()


# --------------------------------------------------------------------------- TTS


async def _speech(service: rpc.Service, text: str, voice: str) -> list[tuple[bytes, int, str]]:
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
            request = tts_pb2.SynthesizeRequest(text=text, language_code="en-US", voice=voice)
            return [(c.audio, c.sample_rate_hertz, c.text) async for c in stub.Synthesize(request)]
    raise AssertionError("unreachable")


class Kept:
    """An engine a test service may not close (the services close theirs when they stop)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.capabilities = engine.capabilities

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[Any]:
        return self.engine.synthesize(request)

    async def close(self) -> None:
        return None


@pytest.fixture(scope="session")
async def tts_pair(local_settings: config.Settings, client: TritonClient) -> AsyncIterator[tuple[list, list]]:
    executor = ThreadPoolExecutor(2)
    local = [Kept(e) for e in await tts_engines.load(local_settings, executor)]
    remote = [Kept(e) for e in await tts_triton.load(client)]
    yield local, remote
    executor.shutdown(wait=False)


@pytest.mark.parametrize("voice", ["af_heart", "en_US-joe-medium"])
async def test_tts_service_same_audio(
    local_settings: config.Settings, tts_pair: tuple[list, list], voice: str
) -> None:
    """Kokoro is deterministic: the same bytes. Piper (VITS) samples noise on every call, in
    process too, so its chunks match in text, rate and (within 20 %) length."""
    local, remote = tts_pair
    assert [e.capabilities.voices for e in remote] == [e.capabilities.voices for e in local]
    text = "The train to Lisbon leaves at nine. Please be on time!"
    in_process = await _speech(await tts_server.create(local_settings, engine=local), text, voice)
    on_triton = await _speech(await tts_server.create(local_settings, engine=remote), text, voice)
    assert len(in_process) >= 2 and sum(len(a) for a, _, _ in in_process) > 10_000
    assert [(r, t) for _, r, t in on_triton] == [(r, t) for _, r, t in in_process]
    for (mine, _, _), (theirs, _, _) in zip(on_triton, in_process, strict=True):
        if voice == "af_heart":
            assert mine == theirs
        else:
            assert abs(len(mine) - len(theirs)) <= 0.2 * len(theirs)


async def test_tts_unknown_voice_is_not_found(tts_pair: tuple[list, list]) -> None:
    _, remote = tts_pair
    with pytest.raises(errors.NotFound, match="no-such-voice"):
        async for _ in remote[0].engine.synthesize(SynthesisRequest("Hello.", "no-such-voice")):
            pass


async def test_stt_batch_same_as_alone(stt_pair: tuple[list, list], fleurs: Path) -> None:
    """Windows sent together (Triton batches them, the host decodes them in one call) get the
    answers each gets alone in process."""
    (local,), (remote,) = stt_pair
    options = DecodeOptions(language="en")
    requests = [DecodeRequest(audio.decode_file(fleurs / f"fleurs-en-00{i}.ogg", 16_000)[:80_000], options)
                for i in range(3)]
    together = await asyncio.to_thread(remote.transcribe_batch, requests)
    assert together == [local.transcribe(r.audio, r.options) for r in requests]
    assert all(t.text for t in together)
