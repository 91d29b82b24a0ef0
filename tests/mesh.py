"""The whole mesh in the test process: five real gRPC servers on loopback (e2e, browser, triton)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from dragoman import audio, config
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import vocabulary_pb2 as vpb
from tests.rawclient import RawClient, join_request, speak


@dataclasses.dataclass
class MeshAddresses:
    settings: config.Settings
    gateway: str
    stt: str
    mt: str
    tts: str


@contextlib.asynccontextmanager
async def serve_mesh(settings: config.Settings) -> AsyncIterator[MeshAddresses]:
    """The five services of `settings` on loopback ports, stopped on exit."""
    from gateway import server as gateway_server
    from mt_svc import server as mt_server
    from session_svc import server as session_server
    from stt_svc import server as stt_server
    from tts_svc import server as tts_server

    services = []
    ports: dict[str, int] = {}
    try:
        for name, module in (("stt", stt_server), ("mt", mt_server), ("tts", tts_server)):
            service = await module.create(settings)
            services.append(service)
            ports[name] = await service.start("127.0.0.1:0")
        addresses = dataclasses.replace(
            settings.addresses, **{n: f"127.0.0.1:{p}" for n, p in ports.items()})
        session = await session_server.create(dataclasses.replace(settings, addresses=addresses))
        services.append(session)
        ports["session"] = await session.start("127.0.0.1:0")
        addresses = dataclasses.replace(addresses, session=f"127.0.0.1:{ports['session']}")
        full = dataclasses.replace(settings, addresses=addresses)
        gateway = await gateway_server.create(full)
        services.append(gateway)
        ports["gateway"] = await gateway.start("127.0.0.1:0")
        yield MeshAddresses(full, f"127.0.0.1:{ports['gateway']}", addresses.stt, addresses.mt, addresses.tts)
    finally:
        for service in reversed(services):
            await service.stop(1.0)


@pytest.fixture(scope="session")
async def mesh(settings: config.Settings, models_dir: object) -> AsyncIterator[MeshAddresses]:
    async with serve_mesh(settings) as addresses:
        yield addresses


_users = 0
PASSWORD = "password-123"
"""Every test user's."""


async def new_client(address: str, language: str = "en") -> RawClient:
    """A registered, logged-in client with a fresh user."""
    return (await new_user(address, language))[0]


async def new_user(address: str, language: str = "en") -> tuple[RawClient, str]:
    """A registered, logged-in client with a fresh user, and the user's name (password PASSWORD)."""
    global _users
    _users += 1
    client = RawClient(address)
    name = f"user{_users}"
    await client.register(name, f"{name}@example.org", PASSWORD, language)
    return client, name


@dataclasses.dataclass
class OneWay:
    """What each side of a conversation saw while only the first person spoke."""

    session_id: str
    speaker: RawClient
    speaker_events: list[pb.ConversationEvent]
    listener_events: list[pb.ConversationEvent]
    listener: RawClient
    listener_username: str

    def heard(self, kind: str) -> list:  # type: ignore[type-arg]
        """The listener's events of one kind (transcription, translation, speech_audio, ...)."""
        return [getattr(e, kind) for e in self.listener_events if e.WhichOneof("kind") == kind]


async def _queue_stream(queue: asyncio.Queue[pb.ConverseRequest | None]) -> AsyncIterator[pb.ConverseRequest]:
    while (item := await queue.get()) is not None:
        yield item


async def one_way(
    mesh: MeshAddresses, clip: Path, speaker_language: str, listener_language: str,
    output_rate_hz: int = 24_000, allow_one_way: bool = False, speed: float = 0.0,
    vocabulary: vpb.Vocabulary | None = None,
) -> OneWay:
    """Two new users pair (the listener joining with `allow_one_way`), the first with
    `vocabulary` when given; the first says `clip`
    (then 1.5 s of silence; at `speed` times real time, 0: all at once) and leaves; returns
    once the listener has every utterance's `processing_ended`."""
    speaker = await new_client(mesh.gateway, speaker_language)
    if vocabulary is not None:
        await speaker.vocabularies.CreateVocabulary(
            vpb.CreateVocabularyRequest(vocabulary=vocabulary), metadata=speaker.metadata)
    listener, listener_username = await new_user(mesh.gateway, listener_language)
    session = await speaker.create_session(speaker_language)
    await listener.join_session(session.code, listener_language, allow_one_way=allow_one_way)

    queues: dict[str, asyncio.Queue[pb.ConverseRequest | None]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
    for q in queues.values():
        await q.put(join_request(session.session_id, audio.STT_RATE_HZ, output_rate_hz=output_rate_hz))
    speaker_call = speaker.converse(_queue_stream(queues["a"]))
    listener_call = listener.converse(_queue_stream(queues["b"]))

    samples = audio.decode_file(clip, audio.STT_RATE_HZ)
    pcm = audio.float_to_pcm16(np.concatenate([samples, np.zeros(24_000, np.float32)]))
    async for request in speak(pcm, audio.STT_RATE_HZ, realtime=speed > 0, speed=speed or 1.0):
        await queues["a"].put(request)
    await queues["a"].put(pb.ConverseRequest(leave=pb.LeaveConversation()))
    await queues["a"].put(None)
    # The speaker left: the server finishes their utterances, then closes their stream.
    speaker_events = [r.event async for r in speaker_call]
    spoken = sum(e.WhichOneof("kind") == "processing_started" for e in speaker_events)

    listener_events: list[pb.ConversationEvent] = []

    async def collect() -> None:
        done = 0
        async for response in listener_call:
            listener_events.append(response.event)
            done += response.event.WhichOneof("kind") == "processing_ended"
            if done == spoken:
                return

    await asyncio.wait_for(collect(), timeout=180)
    await queues["b"].put(None)
    return OneWay(session.session_id, speaker, speaker_events, listener_events, listener,
                  listener_username)
