"""Slowloris-style clients at the gateway: streams opened and never written, streams
whose events are never read, idle connections. Each is cut by a deadline or held by a
bound, memory does not grow with them, and the mesh keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
from collections.abc import AsyncIterator

import grpc
import pytest

from dragoman import config, mux
from dragoman.mux import link
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2, sessions_pb2_grpc
from tests.fuzz.cases import FLEURS, JOIN_TIMEOUT_S, MEASURED, serve_gateway, still_converses, stream_outcome
from tests.rawclient import RawClient, join_request, speak
from tests.session_svc.conftest import utterance

EVENT_BUFFER = 16
"""Events each participant's log keeps here (session.event_buffer)."""
SPEED = 6.0
"""Times real time the hosts of stalled listeners speak at."""
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
"""Channel options of a client that lets the server send it little."""
RSS_GROWTH_BOUND_MB = 200
"""What a few dozen stalled clients may add to the process holding the whole mesh;
unbounded buffering of a few hundred events of speech each would pass it."""


@pytest.fixture(scope="module")
async def gateway(fuzz_settings: config.Settings) -> AsyncIterator[str]:
    session = dataclasses.replace(fuzz_settings.session, event_buffer=EVENT_BUFFER, heartbeat_interval_s=0.5)
    async for address in serve_gateway(dataclasses.replace(fuzz_settings, session=session)):
        yield address


def rss_mb() -> float:
    """Peak resident memory of this process (the whole mesh runs in it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def signed_in(gateway: str, name: str, language: str = "en", small_window: bool = False) -> RawClient:
    """A new user; with `small_window`, one whose connection lets the server send it
    little (what a slowloris client would choose)."""
    channel = grpc.aio.insecure_channel(gateway, options=SMALL_WINDOW) if small_window else None
    client = RawClient(gateway, channel=channel)
    await client.register(name, f"{name}@example.org", "password-123", language)
    return client


async def never() -> AsyncIterator[pb.ConverseRequest]:
    await asyncio.Event().wait()
    yield pb.ConverseRequest()  # pragma: no cover - never reached


async def test_streams_never_written_are_cut_by_the_join_timeout(gateway: str) -> None:
    client = await signed_in(gateway, "silent")
    calls = [client.conversation.Converse(never(), metadata=client.metadata) for _ in range(30)]
    codes = await asyncio.gather(*(stream_outcome("Converse", c, timeout_s=10 * JOIN_TIMEOUT_S)
                                   for c in calls))
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in client.conversation.Converse(never(), metadata=client.metadata):
            pass
    assert "join" in info.value.details() and "join_timeout_s" in info.value.details()
    await client.channel.close()


async def _speak_to_a_stalled_listener(gateway: str, n: int) -> tuple[RawClient, str]:
    """Host `n` says the clip three times and leaves; their partner listens and never reads."""
    host = await signed_in(gateway, f"host-{n}")
    guest = await signed_in(gateway, f"guest-{n}", "pt", small_window=True)
    session = await host.create_session("en")
    await guest.join_session(session.code, "pt")
    guest.stalled = guest.conversation.Listen(  # type: ignore[attr-defined]
        pb.ListenRequest(join=join_request(session.session_id).join), metadata=guest.metadata)
    # at a few times real time: all at once, the stalled sessions' speech is more than
    # recognition keeps up with on 2 cores (RESOURCE_EXHAUSTED, rightly)
    said = speak(utterance(FLEURS) * 3, 16_000, realtime=True, speed=SPEED)
    leave = pb.ConverseRequest(leave=pb.LeaveConversation())

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield join_request(session.session_id)
        async for request in said:
            yield request
        yield leave

    async for _ in host.converse(requests()):
        pass  # the host's stream ends once every utterance is processed
    await host.channel.close()
    return guest, session.session_id


async def test_listeners_that_never_read_hold_bounded_memory(gateway: str) -> None:
    before = rss_mb()
    stalled = await asyncio.gather(*(_speak_to_a_stalled_listener(gateway, n) for n in range(8)))
    grown = rss_mb() - before
    MEASURED.append(f"{len(stalled)} listeners never read: peak RSS {before:.0f} -> {before + grown:.0f} MB")
    assert grown < RSS_GROWTH_BOUND_MB, f"{grown:.0f} MB"

    # each stalled participant's log kept only the last EVENT_BUFFER events: resuming from
    # the start gets those (then heartbeats), numbered on from where the log dropped the rest
    guest, session_id = stalled[0]
    fresh = guest.conversation.Listen(pb.ListenRequest(join=join_request(session_id).join),
                                      metadata=guest.metadata)
    kept = []
    async for response in fresh:
        if response.event.WhichOneof("kind") == "heartbeat":
            break
        kept.append(response.event.sequence)
    fresh.cancel()
    assert len(kept) <= EVENT_BUFFER and kept[0] > 1, kept
    assert kept == list(range(kept[0], kept[0] + len(kept)))
    # the replaced stalled stream was ended, not left buffering
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in guest.stalled:  # type: ignore[attr-defined]
            pass
    assert info.value.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED)
    for guest, _ in stalled:
        guest.stalled.cancel()  # type: ignore[attr-defined]
        await guest.channel.close()


async def test_a_listener_that_never_reads_speech_is_cut_by_bytes(
        gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Translated speech (a fake voice's 16 kHz PCM, about 100 KB an event) to a listener
    that never reads: the gateway's trunk call holds at most mux.MAX_PENDING_BYTES of it
    (64 KiB here, so that a few utterances reach it) however few events that is, then
    ends the call with RESOURCE_EXHAUSTED, as the count bound does."""
    monkeypatch.setattr(link, "MAX_PENDING_BYTES", 64 * 1024)
    guest, session_id = await _speak_to_a_stalled_listener(gateway, 100)

    async def connected() -> bool:
        reply = await guest.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), metadata=guest.metadata)
        return any(p.connected for p in reply.session.participants if p.user_id == guest.user_id)

    async def cut() -> None:
        while await connected():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(cut(), 60)
    held = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in guest.stalled:  # type: ignore[attr-defined]
            held.append(response.event.WhichOneof("kind"))
    MEASURED.append(f"a listener never read speech: cut by {info.value.code().name} after "
                    f"{len(held)} events held, {held.count('speech_audio')} of them speech")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell 65536 bytes of responses behind" in info.value.details()
    assert len(held) < mux.MAX_PENDING
    await still_converses(gateway)
    await guest.channel.close()


@pytest.fixture(scope="module")
async def flooded(fuzz_settings: config.Settings) -> AsyncIterator[str]:
    """A gateway whose sessions send a heartbeat every millisecond to an idle stream."""
    flood = dataclasses.replace(fuzz_settings.session, heartbeat_interval_s=0.001)
    async for address in serve_gateway(dataclasses.replace(fuzz_settings, session=flood)):
        yield address


async def test_a_listener_that_never_reads_is_cut_off(flooded: str) -> None:
    """A heartbeat every millisecond to a listener that never reads: once the gateway's
    write waits on the client's flow-control window, the trunk holds at most
    mux.MAX_PENDING of its events, then ends its call with RESOURCE_EXHAUSTED (the
    session no longer counts the listener as connected); the client, reading at last,
    gets what was held, then that status."""
    listener = await signed_in(flooded, "flooded", small_window=True)
    session = await listener.create_session("en")
    before = rss_mb()
    stalled = listener.conversation.Listen(
        pb.ListenRequest(join=join_request(session.session_id).join), metadata=listener.metadata)

    async def connected() -> bool:
        reply = await listener.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=listener.metadata)
        return reply.session.participants[0].connected

    while not await connected():  # until the stream is open
        await asyncio.sleep(0.05)

    async def cut() -> None:
        while await connected():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(cut(), 120)
    grown = rss_mb() - before
    held = 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stalled:
            held += 1
    MEASURED.append(f"a listener never read, flooded: cut by {info.value.code().name} after {held} "
                    f"events held; peak RSS {before:.0f} -> {before + grown:.0f} MB")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"fell {mux.MAX_PENDING} responses behind" in info.value.details()
    assert grown < RSS_GROWTH_BOUND_MB
    await still_converses(flooded)
    await listener.channel.close()


async def test_idle_connections_do_not_stop_the_mesh(gateway: str) -> None:
    before = rss_mb()
    idle = [grpc.aio.insecure_channel(gateway) for _ in range(200)]
    for channel in idle:  # connected: one call each, then nothing
        await sessions_pb2_grpc.SessionServiceStub(channel).ListLanguages(sessions_pb2.ListLanguagesRequest())
    await still_converses(gateway)
    MEASURED.append(f"{len(idle)} idle connections: peak RSS {before:.0f} -> {rss_mb():.0f} MB")
    assert rss_mb() - before < RSS_GROWTH_BOUND_MB
    for channel in idle:
        await channel.close()


async def test_the_mesh_still_serves_a_conversation(gateway: str) -> None:
    await still_converses(gateway)
