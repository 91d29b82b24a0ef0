"""A model service killed (SIGKILL) and started again on its address, under a
live conversation: session_svc reports the utterance it lost with a stable
code, is NOT_SERVING while the service is down and SERVING after, and the
next utterance goes through. The model services are bench.fakes processes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.chaos import MODELS, ModelServices
from bench.common import Children, free_address, service_env
from bench.fakes import Delays
from dragoman import config, rpc
from dragoman.v1 import conversation_pb2 as pb
from session_svc import server as session_server
from tests.session_svc.conftest import Caller, kinds

DELAYS = Delays(endpoint_ms=300, recognition_ms=50, translation_ms=10, synthesis_ms=10, audio_s=0.5)
DEADLINE_S = 15.0
"""session_svc's downstream deadline here: longer than a fake takes to start again."""
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
RATE_HZ = 16_000


@dataclasses.dataclass
class Mesh:
    models: ModelServices
    session: str


@pytest.fixture(scope="module")
async def mesh(settings: config.Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[Mesh]:
    addresses = {role: free_address() for role in MODELS}
    children = Children(tmp_path_factory.mktemp("faults"), service_env(addresses))
    models = ModelServices(children, addresses, DELAYS)
    service = None
    try:
        await models.start()
        service = await session_server.create(dataclasses.replace(
            settings, addresses=dataclasses.replace(settings.addresses, **addresses),
            session=dataclasses.replace(settings.session, downstream_timeout_s=DEADLINE_S)))
        port = await service.start("127.0.0.1:0")
        mesh = Mesh(models, f"127.0.0.1:{port}")
        await health(mesh, SERVING)
        yield mesh
    finally:
        if service is not None:
            await service.stop(0.5)
        await children.stop(1.0)


async def health(mesh: Mesh, wanted: int, service: str = "") -> None:
    """Returns once session_svc's health (of `service`) is `wanted` (fails after a minute)."""
    async with grpc.aio.insecure_channel(mesh.session) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)

        async def until() -> None:
            while (await stub.Check(request)).status != wanted:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(until(), 60)


def speech(seconds: float) -> bytes:
    """What the fake recogniser hears as speech: chunks that are not all zeros."""
    return np.full(int(seconds * RATE_HZ), 1000, np.int16).tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE_HZ))


_n = 0


async def pair(mesh: Mesh) -> tuple[Caller, Caller, object, object]:
    global _n
    _n += 1
    a, b = Caller(mesh.session, f"fa{_n}"), Caller(mesh.session, f"fb{_n}")
    session = await a.create("en")
    await b.join(session.code, "es")
    return a, b, a.converse(session.session_id), b.converse(session.session_id)


def of_kind(events: list[pb.ConversationEvent], kind: str) -> list:  # type: ignore[type-arg]
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


async def heard(b: Caller, b_call: object, count: int) -> list[str]:
    """The partner's utterances heard (translated audio) once `count` of them ended."""
    events = await b.collect(b_call, "processing_ended", count=count, timeout=60)
    return sorted({a.utterance_id for a in of_kind(events, "speech_audio")})


async def test_an_utterance_cut_off_by_a_recogniser_restart_is_recognised_again(
        mesh: Mesh) -> None:
    a, b, a_call, b_call = await pair(mesh)
    await a.say(speech(1.0) + silence(0.8))
    assert len(await heard(b, b_call, 1)) == 1
    # speaking when stt_svc dies, and on while it is down
    await a.say(speech(1.0), first_sequence=100)
    started = of_kind(await a.collect(a_call, "processing_started", count=2), "processing_started")
    in_flight = started[-1].utterance_id
    await mesh.models.kill("stt")
    await health(mesh, NOT_SERVING)
    await a.say(speech(0.5) + silence(0.8), first_sequence=200)
    await mesh.models.restart("stt")
    # a new recognition stream got the audio since the last utterance done with
    assert in_flight in await heard(b, b_call, 1)
    await health(mesh, SERVING)
    await a.say(speech(1.0) + silence(0.8), first_sequence=300)
    assert len(await heard(b, b_call, 1)) == 3
    # each recognised once, in order, and the speaker was told of no error
    finals = [t.utterance_id for t in of_kind(b.events, "transcription") if t.is_final]
    assert finals == sorted(set(finals), key=finals.index) and len(finals) == 3
    assert in_flight == finals[1]
    await a.collect(a_call, "processing_ended",
                    count=3 - len(of_kind(a.events, "processing_ended")))
    assert "error" not in kinds(a.events)
    for c in (a, b):
        await c.close()


async def test_an_utterance_cut_off_by_a_recogniser_down_too_long_is_reported(
        mesh: Mesh) -> None:
    a, b, a_call, b_call = await pair(mesh)
    await a.say(speech(1.0), first_sequence=100)
    started = of_kind(await a.collect(a_call, "processing_started"), "processing_started")
    await mesh.models.kill("stt")
    events = await a.collect(a_call, "error", timeout=60)  # after downstream.RECOGNITION_WAIT_S
    error = of_kind(events, "error")[-1]
    assert error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    assert error.utterance_id == started[0].utterance_id
    assert error.message == "speech recognition is unavailable"
    await mesh.models.restart("stt")
    await health(mesh, SERVING)
    # the speaker's next audio gets a new recognition stream
    await a.say(speech(1.0) + silence(0.8), first_sequence=200)
    heard_now = await heard(b, b_call, 2)
    assert len(heard_now) == 1 and started[0].utterance_id not in heard_now
    ended = [e.utterance_id for e in of_kind(b.events, "processing_ended")]
    assert started[0].utterance_id in ended  # the listener is told it ended, without audio
    for c in (a, b):
        await c.close()


async def spoken_while_down(mesh: Mesh, role: str) -> tuple[Caller, Caller, object, object]:
    """A new pair, whose first speaks once `role` was killed and session_svc says so."""
    a, b, a_call, b_call = await pair(mesh)
    await mesh.models.kill(role)
    await health(mesh, NOT_SERVING)
    await a.say(speech(1.0) + silence(0.8))
    return a, b, a_call, b_call


async def test_a_translation_service_down_past_the_deadline_is_reported(mesh: Mesh) -> None:
    a, b, a_call, b_call = await spoken_while_down(mesh, "mt")
    events = await a.collect(a_call, "processing_ended", timeout=60)
    errors = of_kind(events, "error")
    assert [e.code for e in errors] == [pb.ERROR_CODE_SERVICE_UNAVAILABLE]
    assert errors[0].message == "translation is unavailable"
    assert errors[0].utterance_id == of_kind(events, "processing_started")[0].utterance_id
    await mesh.models.restart("mt")
    await health(mesh, SERVING)
    await a.say(speech(1.0) + silence(0.8), first_sequence=100)
    assert len(await heard(b, b_call, 2)) == 1
    assert "translation" in kinds(b.events)
    for c in (a, b):
        await c.close()


async def test_a_synthesis_waits_for_its_service_to_come_back(mesh: Mesh) -> None:
    """tts_svc restarting within the deadline: nobody notices but for the delay."""
    a, b, a_call, b_call = await spoken_while_down(mesh, "tts")
    await a.collect(a_call, "translation", timeout=60)  # translated: waiting for speech
    await mesh.models.restart("tts")
    assert len(await heard(b, b_call, 1)) == 1
    await a.collect(a_call, "processing_ended", timeout=60)
    assert "error" not in kinds(a.events)
    await health(mesh, SERVING)
    for c in (a, b):
        await c.close()


async def test_health_waits_for_every_model_service(settings: config.Settings, tmp_path: Path
                                                    ) -> None:
    """A session_svc started before its model services serves only once they do; its
    liveness (what k8s restarts it by) says SERVING meanwhile."""
    addresses = {role: free_address() for role in MODELS}
    children = Children(tmp_path, service_env(addresses))
    service = await session_server.create(dataclasses.replace(
        settings, addresses=dataclasses.replace(settings.addresses, **addresses)))
    try:
        mesh = Mesh(ModelServices(children, addresses, DELAYS),
                    f"127.0.0.1:{await service.start('127.0.0.1:0')}")
        await health(mesh, NOT_SERVING)
        await health(mesh, SERVING, rpc.LIVENESS)
        await mesh.models.start()
        await health(mesh, SERVING)
    finally:
        await service.stop(0.5)
        await children.stop(1.0)
