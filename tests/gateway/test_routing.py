"""Two session_svc replicas behind two gateways: partners meet whichever gateway
and replica they reach first (real services, fake model engines, one database)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from dragoman import audio, config, rpc
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from gateway import server as gateway_server
from gateway.routing import Router
from mt_svc import server as mt_server
from mt_svc.cache import NoCache
from mt_svc.engines.fake import FakeEngine as FakeMt
from session_svc import server as session_server
from stt_svc import server as stt_server
from stt_svc.engines.fake import FakeEngine as FakeStt
from tests.conftest import ASSERTIONS
from tests.gateway.conftest import unique_name, with_session_address
from tests.helpers import free_ports
from tests.rawclient import RawClient, join_request, speak
from tests.session_svc.conftest import utterance
from tts_svc import server as tts_server
from tts_svc.engines.fake import FakeEngine as FakeTts


@dataclass
class Cells:
    gateways: tuple[str, str]
    """Gateway 0 sends new sessions to replica 0, gateway 1 to replica 1."""
    replicas: tuple[str, str]


@pytest.fixture(scope="module")
async def cells(settings: config.Settings) -> AsyncIterator[Cells]:
    services: list[rpc.Service] = []
    try:
        ports = {}
        for name, service in (
            ("stt", await stt_server.create(settings, engine=FakeStt())),
            ("mt", await mt_server.create(settings, engines=[FakeMt(pairs=[("en", "pt"), ("pt", "en")])],
                                          cache=NoCache())),
            ("tts", await tts_server.create(settings, engine=FakeTts())),
        ):
            services.append(service)
            ports[name] = await service.start("127.0.0.1:0")
        addresses = dataclasses.replace(
            settings.addresses, **{n: f"127.0.0.1:{p}" for n, p in ports.items()})
        replicas = tuple(f"127.0.0.1:{p}" for p in free_ports(2))
        for replica in replicas:
            session = await session_server.create(dataclasses.replace(
                settings, addresses=addresses,
                session=dataclasses.replace(settings.session, advertise_address=replica)))
            services.append(session)
            await session.start(replica)
        gateways = []
        for replica in replicas:
            gateway = await gateway_server.create(
                with_session_address(dataclasses.replace(settings, addresses=addresses), replica))
            services.append(gateway)
            gateways.append(f"127.0.0.1:{await gateway.start('127.0.0.1:0')}")
        yield Cells((gateways[0], gateways[1]), (replicas[0], replicas[1]))
    finally:
        for service in reversed(services):
            await service.stop(0.5)


async def _client(gateway: str, language: str) -> RawClient:
    client = RawClient(gateway)
    name = unique_name()
    await client.register(name, f"{name}@example.org", "password-123", language)
    return client


async def _events(call: grpc.aio.StreamStreamCall, until: str) -> list[pb.ConversationEvent]:
    events = []
    async for response in call:
        events.append(response.event)
        if response.event.WhichOneof("kind") == until:
            return events
    raise AssertionError(f"stream ended before {until}: {[e.WhichOneof('kind') for e in events]}")


async def test_partners_on_different_gateways_meet_on_the_creators_replica(
    cells: Cells, fleurs: Path,
) -> None:
    alice, bruno = await _client(cells.gateways[0], "en"), await _client(cells.gateways[1], "pt")
    session = await alice.create_session("en")
    # gateway 1 would send the code to replica 1, which does not hold the session
    joined = await bruno.join_session(session.code, "pt")
    assert joined.session_id == session.session_id
    assert joined.status == sessions_pb2.SESSION_STATUS_ACTIVE

    a_requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
    b_requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()

    async def drain(q: asyncio.Queue[pb.ConverseRequest | None]) -> AsyncIterator[pb.ConverseRequest]:
        while (r := await q.get()) is not None:
            yield r

    a_call, b_call = alice.converse(drain(a_requests)), bruno.converse(drain(b_requests))
    a_requests.put_nowait(join_request(session.session_id))
    b_requests.put_nowait(join_request(session.session_id))
    async for request in speak(utterance(fleurs), audio.STT_RATE_HZ, realtime=False):
        a_requests.put_nowait(request)
    heard = await asyncio.wait_for(_events(b_call, "speech_audio"), 30)
    kinds = [e.WhichOneof("kind") for e in heard]
    assert "translation" in kinds and kinds[-1] == "speech_audio", kinds
    translation = next(e.translation for e in heard if e.WhichOneof("kind") == "translation")
    assert translation.source_language_code == "en" and translation.target_language_code == "pt"

    # unary calls about the session reach its replica from either gateway
    got = await bruno.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=bruno.metadata)
    assert [p.connected for p in got.session.participants] == [True, True]
    ended = await bruno.end_session(session.session_id)
    assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
    await asyncio.wait_for(_events(a_call, "session_ended"), 10)
    a_requests.put_nowait(None)
    b_requests.put_nowait(None)
    for c in (alice, bruno):
        await c.channel.close()


async def test_a_party_meets_on_the_hosts_replica_whichever_gateway_each_reaches(
    cells: Cells,
) -> None:
    host = await _client(cells.gateways[0], "en")
    guests = [await _client(cells.gateways[i % 2], "pt") for i in range(1, 4)]
    session = await host.create_session("en", max_participants=4)
    for guest in guests[:2]:
        joined = await guest.join_session(session.code, "pt")  # active: the code still works
        assert joined.session_id == session.session_id
    assert len(joined.participants) == 3
    # lock, leave and remove reach the host's replica from the other gateway too
    locked = (await host.sessions.LockSession(sessions_pb2.LockSessionRequest(
        session_id=session.session_id, locked=True), metadata=host.metadata)).session
    assert locked.locked
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await guests[2].join_session(session.code, "pt")  # through gateway 1
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await host.sessions.LockSession(sessions_pb2.LockSessionRequest(
        session_id=session.session_id, locked=False), metadata=host.metadata)
    await guests[2].join_session(session.code, "pt")
    left = (await guests[0].sessions.LeaveSession(sessions_pb2.LeaveSessionRequest(  # through gateway 1
        session_id=session.session_id), metadata=guests[0].metadata)).session
    assert left.participants[1].state == sessions_pb2.PARTICIPANT_STATE_LEFT
    removed = (await host.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
        session_id=session.session_id, user_id=guests[1].user_id), metadata=host.metadata)).session
    assert [p.state for p in removed.participants] == [
        sessions_pb2.PARTICIPANT_STATE_JOINED, sessions_pb2.PARTICIPANT_STATE_LEFT,
        sessions_pb2.PARTICIPANT_STATE_REMOVED, sessions_pb2.PARTICIPANT_STATE_JOINED]
    ended = await guests[2].end_session(session.session_id)  # two present: they may end it
    assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
    for c in (host, *guests):
        await c.channel.close()


async def test_without_a_directory_the_code_goes_to_the_gateways_own_replica(cells: Cells) -> None:
    """What the routing fixes: replica 1 alone does not know replica 0's code."""
    alice = await _client(cells.gateways[0], "en")
    session = await alice.create_session("en")
    async with grpc.aio.insecure_channel(cells.replicas[1]) as channel:
        direct = Router(channel, directory=None)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await (await direct.sessions(code=session.code)).JoinSession(
                sessions_pb2.JoinSessionRequest(code=session.code, language_code="pt"),
                metadata=ASSERTIONS.metadata("someone-else", "someone"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    await alice.end_session(session.session_id)
    await alice.channel.close()


class _Directory:
    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.asked: list[str] = []

    async def owner(self, *, session_id: str = "", code: str = "") -> str | None:
        self.asked.append(session_id or code)
        return self.owners.get(session_id or code)


async def test_owners_of_live_sessions_are_cached_and_codes_are_not() -> None:
    directory = _Directory({"s1": "10.0.0.1:50051", "s2": "10.0.0.2:50051", "123456": "10.0.0.2:50051"})
    async with grpc.aio.insecure_channel("127.0.0.1:1") as default:
        router = Router(default, directory, cache_size=1)
        try:
            first, again = await router.sessions(session_id="s1"), await router.sessions(session_id="s1")
            assert first is again and directory.asked == ["s1"]  # SendAudio per chunk: no query
            assert await router.conversations("s2") is not None and directory.asked == ["s1", "s2"]
            await router.sessions(session_id="s1")  # evicted by s2 (cache of one)
            assert directory.asked == ["s1", "s2", "s1"]
            await router.sessions(code="123456")
            await router.sessions(code="123456")
            assert directory.asked[-2:] == ["123456", "123456"]
            # unknown or ended: the default replica, asked again next time
            assert await router.sessions(session_id="gone") is await router.sessions()
            assert directory.asked.count("gone") == 1
            await router.sessions(session_id="gone")
            assert directory.asked.count("gone") == 2
            # no session named: the default, no query
            before = len(directory.asked)
            await router.sessions()
            assert len(directory.asked) == before
        finally:
            await router.close()


async def test_a_cached_owner_that_stopped_answering_is_asked_again() -> None:
    directory = _Directory({"s1": "127.0.0.1:1"})  # nothing listens there
    async with grpc.aio.insecure_channel("127.0.0.1:1") as default:
        router = Router(default, directory)
        try:
            owner = await router.sessions(session_id="s1")
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await owner.GetSession(sessions_pb2.GetSessionRequest(session_id="s1"), timeout=5)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert directory.asked == ["s1"]
            directory.owners.clear()  # meanwhile the others ended its sessions
            await router.sessions(session_id="s1")
            assert directory.asked == ["s1", "s1"]
        finally:
            await router.close()


async def test_every_trunk_to_a_replica_lingers_as_set() -> None:
    directory = _Directory({"s1": "10.0.0.1:50051"})
    async with grpc.aio.insecure_channel("127.0.0.1:1") as default:
        router = Router(default, directory, linger_s=0.0125)
        try:
            await router.sessions(session_id="s1")
            assert router.default.linger_s == router._channels["10.0.0.1:50051"].linger_s == 0.0125
        finally:
            await router.close()
