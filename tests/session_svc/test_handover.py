"""Sessions survive their replica: two session_svc replicas on one database, each
behind a gateway; one is killed (SIGKILL, a process of its own) or drained, and
the other takes its sessions over while clients resume (session_svc.handover)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest

from bench.chaos import stored_logs
from dragoman import audio, config, rpc
from dragoman.db.crypto import Keyring
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from gateway import server as gateway_server
from mt_svc.engines.fake import FakeEngine as FakeMt
from session_svc import server as session_server
from session_svc.handover import sealed_data
from tests.conftest import IDENTITY_KEY, ROOT
from tests.gateway.conftest import unique_name, with_session_address
from tests.helpers import free_ports
from tests.rawclient import RawClient as Client
from tests.rawclient import join_request, speak
from tests.session_svc.conftest import utterance
from tests.session_svc.stack import model_services
from tts_svc.engines.fake import FakeEngine as FakeTts

HANDOVER_AFTER_MS = 1500
SYNTHESIS_S = 2.0
"""Each synthesis takes this long: an utterance is in flight when its replica dies."""


@dataclass
class Mesh:
    settings: config.Settings
    """With the model services' addresses and the handover timing."""
    survivor: str
    """The replica that stays, and the gateway in front of it."""
    gateway: str
    services: list[rpc.Service] = field(default_factory=list)

    async def gateway_to(self, replica: str) -> str:
        """A gateway whose new sessions go to `replica`."""
        gateway = await gateway_server.create(with_session_address(self.settings, replica))
        self.services.append(gateway)
        return f"127.0.0.1:{await gateway.start('127.0.0.1:0')}"

    def replica_settings(self, address: str) -> config.Settings:
        return dataclasses.replace(self.settings, session=dataclasses.replace(
            self.settings.session, advertise_address=address))


@pytest.fixture(scope="module")
async def mesh(settings: config.Settings) -> AsyncIterator[Mesh]:
    settings = dataclasses.replace(settings, session=dataclasses.replace(
        settings.session, handover_after_ms=HANDOVER_AFTER_MS))
    mt = FakeMt(pairs=[("en", "pt"), ("pt", "en")])
    async with model_services(settings, mt, FakeTts(delay_s=SYNTHESIS_S)) as addresses:
        settings = dataclasses.replace(settings, addresses=addresses)
        (survivor,) = (f"127.0.0.1:{p}" for p in free_ports(1))
        mesh = Mesh(settings, survivor, "")
        replica = await session_server.create(mesh.replica_settings(survivor))
        mesh.services.append(replica)
        await replica.start(survivor)
        mesh.gateway = await mesh.gateway_to(survivor)
        try:
            yield mesh
        finally:
            for service in reversed(mesh.services):
                await service.stop(0.5)


@contextlib.contextmanager
def replica_process(mesh: Mesh, address: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """session_svc in a process of its own at `address`, on the mesh's database."""
    s, db = mesh.settings, mesh.settings.database
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
           "DRAGOMAN_ADDRESSES_SESSION": address, "DRAGOMAN_ADDRESSES_STT": s.addresses.stt,
           "DRAGOMAN_ADDRESSES_MT": s.addresses.mt, "DRAGOMAN_ADDRESSES_TTS": s.addresses.tts,
           "DRAGOMAN_DATABASE_URL": db.url, "DRAGOMAN_DATABASE_SCHEMA": db.schema,
           "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": db.encryption_keys,
           "DRAGOMAN_AUTH_IDENTITY_KEY": IDENTITY_KEY,
           "DRAGOMAN_SESSION_ADVERTISE_ADDRESS": address,
           "DRAGOMAN_SESSION_HANDOVER_AFTER_MS": str(HANDOVER_AFTER_MS),
           "DRAGOMAN_SESSION_MAX_AUDIO_SPEED": "0"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "session_svc.server"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            yield process
        finally:
            process.kill()
            process.wait()


async def serving(address: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the replica process exited"
            with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
                await asyncio.wait_for(channel.channel_ready(), 1)
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{address} not serving after {timeout_s} s")


class Stream:
    """One participant's Converse stream, resumed after the last event received; it
    records any event that repeats or skips a sequence."""

    def __init__(self, client: Client, session_id: str) -> None:
        self.client, self.session_id = client, session_id
        self.events: list[pb.ConversationEvent] = []
        self.last = 0
        self.misnumbered: list[tuple[int, int]] = []
        self.status: grpc.StatusCode | None = None
        self.requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def open(self) -> None:
        self.requests = asyncio.Queue()
        self.requests.put_nowait(join_request(self.session_id, resume_after=self.last))
        self.status = None

        async def requests() -> AsyncIterator[pb.ConverseRequest]:
            queue = self.requests
            while (r := await queue.get()) is not None:
                yield r

        self.task = asyncio.create_task(self._read(self.client.converse(requests())))

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            async for response in call:
                event = response.event
                if event.WhichOneof("kind") != "heartbeat":
                    if event.sequence != self.last + 1:
                        self.misnumbered.append((self.last, event.sequence))
                    self.last = max(self.last, event.sequence)
                self.events.append(event)
            self.status = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            self.status = err.code()

    async def resume(self, timeout_s: float = 30) -> int:
        """Opens the stream again until it holds (UNAVAILABLE: the session is moving);
        returns how many tries it took."""
        deadline = time.monotonic() + timeout_s
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            self.open()
            await asyncio.sleep(0.5)
            assert self.task is not None
            if not self.task.done():
                return tries
            assert self.status == grpc.StatusCode.UNAVAILABLE, self.status
        raise AssertionError(f"no stream after {timeout_s} s: {self.status}")

    async def say(self, pcm: bytes) -> None:
        async for request in speak(pcm, audio.STT_RATE_HZ, realtime=False):
            self.requests.put_nowait(request)

    async def until(self, found: Callable[[pb.ConversationEvent], bool],
                    timeout_s: float = 30) -> pb.ConversationEvent:
        deadline, seen = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if found(event):
                    return event
            seen = len(self.events)
            await asyncio.sleep(0.02)
        raise AssertionError(f"not seen in {timeout_s} s: {[(e.sequence, kind(e)) for e in self.events]}"
                             f" {[e.error for e in self.events if kind(e) == 'error']}")

    async def close(self) -> None:
        self.requests.put_nowait(None)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def kind(event: pb.ConversationEvent) -> str:
    return event.WhichOneof("kind") or ""


def own_start(event: pb.ConversationEvent) -> bool:
    return kind(event) == "processing_started" and event.processing_started.speaker == pb.SPEAKER_SELF


def heard(event: pb.ConversationEvent) -> bool:
    return kind(event) == "speech_audio" and event.speech_audio.is_last


async def _client(gateway: str, language: str) -> Client:
    client = Client(gateway)
    name = unique_name()
    await client.register(name, f"{name}@example.org", "password-123", language)
    return client


async def _talking(creator_gateway: str, gateway: str, fleurs: Path) -> tuple[Stream, Stream, str]:
    """The host speaking to the guest, both on `gateway`, in a session created through
    `creator_gateway` (so held by the replica behind it); and the host's utterance id."""
    host, guest = await _client(gateway, "en"), await _client(gateway, "pt")
    async with Client(creator_gateway) as creator:  # the host, through the other gateway
        creator.tokens = host.tokens
        session = await creator.create_session("en")
    await guest.join_session(session.code, "pt")
    speaker, listener = Stream(host, session.session_id), Stream(guest, session.session_id)
    speaker.open()
    listener.open()
    await speaker.say(utterance(fleurs))
    return speaker, listener, (await speaker.until(own_start)).processing_started.utterance_id


async def test_a_killed_replicas_sessions_go_on_on_the_other(
    mesh: Mesh, fleurs: Path, tmp_path: Path,
) -> None:
    (doomed,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    with replica_process(mesh, doomed, tmp_path / "replica.log") as process:
        await serving(doomed, process)
        # both stream through the survivor's gateway, which routes them to the owner
        speaker, listener, first = await _talking(
            await mesh.gateway_to(doomed), mesh.gateway, fleurs)
        host, guest, session_id = speaker.client, listener.client, speaker.session_id
        await listener.until(lambda e: kind(e) == "translation")
        process.send_signal(signal.SIGKILL)  # while its speech is being synthesised
        process.wait()
        killed = time.monotonic()

    await asyncio.wait_for(asyncio.gather(speaker.task, listener.task), 10)  # type: ignore[arg-type]
    assert speaker.status == listener.status == grpc.StatusCode.UNAVAILABLE
    before = speaker.last
    await speaker.resume()
    await listener.resume()
    recovered_s = time.monotonic() - killed
    assert recovered_s < HANDOVER_AFTER_MS / 1000 + 10, recovered_s
    # the utterance in flight is reported lost, by name, after the last event received
    lost = await speaker.until(lambda e: kind(e) == "error" and e.error.utterance_id == first)
    assert lost.error.code == pb.ERROR_CODE_REPLICA_LOST and lost.sequence > before
    # the conversation goes on on the survivor
    await speaker.say(utterance(fleurs))
    second = await speaker.until(lambda e: own_start(e) and e.processing_started.utterance_id != first)
    assert (await listener.until(heard, 60)).speech_audio.utterance_id == \
        second.processing_started.utterance_id
    assert speaker.misnumbered == listener.misnumbered == []
    got = await guest.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=session_id), metadata=guest.metadata)
    assert got.session.status == sessions_pb2.SESSION_STATUS_ACTIVE
    assert [p.connected for p in got.session.participants] == [True, True]
    ended = await host.end_session(session_id)
    assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
    await listener.until(lambda e: kind(e) == "session_ended")
    for stream in (speaker, listener):
        await stream.close()
        await stream.client.channel.close()


async def test_a_replica_killed_as_an_utterance_ends_has_written_its_log(
    mesh: Mesh, fleurs: Path, tmp_path: Path,
) -> None:
    """The speaker's ProcessingEnded reaches the client only once stored, and then the
    adopter does not report the utterance lost: its translation log must be stored
    by then, though the journal lingers before writing (session_svc.store)."""
    (doomed,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    with replica_process(mesh, doomed, tmp_path / "replica.log") as process:
        await serving(doomed, process)
        speaker, listener, first = await _talking(
            await mesh.gateway_to(doomed), mesh.gateway, fleurs)
        await speaker.until(lambda e: kind(e) == "processing_ended" and (
            e.processing_ended.speaker, e.processing_ended.utterance_id) == (pb.SPEAKER_SELF, first))
        process.send_signal(signal.SIGKILL)  # within the journal's linger
        process.wait()
    db = mesh.settings.database
    assert (speaker.session_id, first) in await stored_logs(db.url, db.schema)
    await asyncio.wait_for(asyncio.gather(speaker.task, listener.task), 10)  # type: ignore[arg-type]
    await speaker.resume()
    await listener.resume()
    await speaker.client.end_session(speaker.session_id)
    for stream in (speaker, listener):
        await stream.close()
        await stream.client.channel.close()


async def test_a_drained_replica_hands_its_sessions_over(mesh: Mesh, fleurs: Path) -> None:
    (leaving,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    replica = await session_server.create(mesh.replica_settings(leaving))
    await replica.start(leaving)
    stopping: asyncio.Task[None] | None = None
    try:
        speaker, listener, first = await _talking(
            await mesh.gateway_to(leaving), mesh.gateway, fleurs)
        host, session_id = speaker.client, speaker.session_id
        stopping = asyncio.create_task(replica.stop(10))  # SIGTERM: finish, then hand over
        # the utterance in progress is finished before the hand-over, and heard
        assert (await listener.until(heard)).speech_audio.utterance_id == first
        await asyncio.wait_for(asyncio.gather(speaker.task, listener.task), 15)  # type: ignore[arg-type]
        assert speaker.status == listener.status == grpc.StatusCode.UNAVAILABLE
        began = time.monotonic()
        await speaker.resume()
        await listener.resume()
        assert time.monotonic() - began < 3  # no lease to wait out: the lease was given up
        await speaker.say(utterance(fleurs))
        second = await speaker.until(
            lambda e: own_start(e) and e.processing_started.utterance_id != first)
        assert (await listener.until(
            lambda e: heard(e) and e.speech_audio.utterance_id != first, 60)
        ).speech_audio.utterance_id == second.processing_started.utterance_id
        assert speaker.misnumbered == listener.misnumbered == []
        assert not [e for s in (speaker, listener) for e in s.events if kind(e) == "error"]
        await stopping
        got = await host.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), metadata=host.metadata)
        assert got.session.status == sessions_pb2.SESSION_STATUS_ACTIVE  # handed over, not ended
        await host.end_session(session_id)
        for stream in (speaker, listener):
            await stream.close()
            await stream.client.channel.close()
    finally:
        if stopping is None:
            await replica.stop(0.5)


async def test_a_private_sessions_stored_tail_holds_no_text(mesh: Mesh, fleurs: Path) -> None:
    host, guest = await _client(mesh.gateway, "en"), await _client(mesh.gateway, "pt")
    reply = await host.sessions.CreateSession(sessions_pb2.CreateSessionRequest(
        language_code="en", privacy_mode=sessions_pb2.PRIVACY_MODE_PRIVATE), metadata=host.metadata)
    session = reply.session
    await guest.join_session(session.code, "pt")
    speaker, listener = Stream(host, session.session_id), Stream(guest, session.session_id)
    speaker.open()
    listener.open()
    await speaker.say(utterance(fleurs))
    said = await listener.until(lambda e: kind(e) == "translation" and e.translation.is_final)
    assert said.translation.text  # the live stream has it
    await listener.until(heard)
    keyring = Keyring.parse(mesh.settings.database.encryption_keys)
    database = mesh.settings.database
    with psycopg.connect(database.url, options=f"-c search_path={database.schema}") as conn:
        rows = conn.execute(
            "SELECT user_id, sequence, key_id, event FROM session_events WHERE session_id = %s",
            (session.session_id,)).fetchall()
    stored = [pb.ConversationEvent.FromString(keyring.unseal(
        key_id, bytes(event), sealed_data(session.session_id, user_id, sequence)))
        for user_id, sequence, key_id, event in rows]
    kinds = {kind(e) for e in stored}
    assert {"transcription", "translation", "speech_audio"} <= kinds, kinds
    for event in stored:
        inner = getattr(event, kind(event))
        for name in ("text", "source_text", "data"):
            if name in inner.DESCRIPTOR.fields_by_name:
                assert not getattr(inner, name), (kind(event), name)
    await host.end_session(session.session_id)
    await listener.until(lambda e: kind(e) == "session_ended")
    with psycopg.connect(database.url, options=f"-c search_path={database.schema}") as conn:
        for _ in range(50):  # the writer deletes an ended session's tail
            left = conn.execute("SELECT count(*) FROM session_events WHERE session_id = %s",
                                (session.session_id,)).fetchone()
            if left == (0,):
                break
            await asyncio.sleep(0.05)
    assert left == (0,)
    for stream in (speaker, listener):
        await stream.close()
        await stream.client.channel.close()
