"""Hostile input on session_svc's streams (issue 27): resume points from the
future, sequence numbers going backwards, streams never joined, audio faster
than real time, intruders removed by the creator, and long inputs echoed back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from dragoman import audio, config, ogg
from dragoman.errors import InvalidArgument, ResourceExhausted
from dragoman.ogg import OpusDuration
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from session_svc.conversation import AudioBudget, Connection
from session_svc.events import EventLog
from session_svc.sessions import Member, Session
from tests.rawclient import join_request
from tests.session_svc.conftest import Caller, kinds, utterance
from tests.session_svc.stack import Stack, session_stack
from tests.session_svc.test_conversation import pair


async def failure(call: object, events: list[pb.ConversationEvent] | None = None) -> grpc.aio.AioRpcError:
    """The error a stream ends with, after reading all it sends (into `events`)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in call:  # type: ignore[attr-defined]
            if events is not None:
                events.append(response.event)
    return info.value


async def test_a_resume_point_past_the_last_event_is_out_of_range(plumbing: Stack) -> None:
    a, b, sid = await pair(plumbing.session)
    err = await failure(b.converse(sid, resume_after=10**15))
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    # Bruno's stream has two events so far: session_paired, roster_changed (joined)
    assert err.details() == (
        "join.resume_after_sequence 1000000000000000 is past the last event of this stream, 2")
    call = b.converse(sid, resume_after=2)  # the last one it has is fine
    a_call = a.converse(sid)
    events = await b.collect(call, "partner_connected")
    assert [e.sequence for e in events] == [3]
    a_call.cancel()  # type: ignore[attr-defined]
    for c in (a, b):
        await c.close()


async def test_a_sequence_going_backwards_is_refused_not_dropped(
    plumbing: Stack, fleurs: Path
) -> None:
    """The probe: chunk 1000, then real speech numbered 1, 2, 3... used to end OK and silent."""
    a, b, sid = await pair(plumbing.session)
    call = a.converse(sid)
    for sequence in (1000, 1):
        await a.requests.put(pb.ConverseRequest(
            audio=pb.AudioChunk(data=b"\0\0" * 1600, sequence=sequence)))
    err = await failure(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "audio chunk sequence 1 is not above the last one accepted on this stream, 1000: "
        "number chunks 1, 2, 3, ... (0: unnumbered)")
    # the same speech numbered from 1 on a new stream is heard
    a_call, b_call = a.converse(sid), b.converse(sid)
    await a.say(utterance(fleurs))
    assert "transcription" in kinds(await b.collect(b_call, "processing_ended"))
    a_call.cancel()  # type: ignore[attr-defined]
    for c in (a, b):
        await c.close()


async def test_send_audio_acknowledges_a_retry_and_refuses_going_back(plumbing: Stack) -> None:
    a, b, sid = await pair(plumbing.session)
    listen = a.conversation.Listen(
        pb.ListenRequest(join=join_request(sid, 16000).join), metadata=a.metadata)
    await listen.read()

    async def send(sequence: int) -> pb.SendAudioResponse:
        return await a.conversation.SendAudio(pb.SendAudioRequest(
            session_id=sid, audio=pb.AudioChunk(data=b"\0\0" * 1600, sequence=sequence)),
            metadata=a.metadata)

    assert (await send(5)).sequence == 5
    assert (await send(5)).sequence == 5  # a retry of the last one
    assert (await send(7)).sequence == 7  # gaps are allowed
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await send(6)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence 6 is not above the last one accepted on this stream, 7" in info.value.details()
    listen.cancel()
    for c in (a, b):
        await c.close()


async def test_the_creator_sees_who_joined_and_can_remove_them(plumbing: Stack) -> None:
    a, mallory, sid = await pair(plumbing.session)
    a_call, m_call = a.converse(sid), mallory.converse(sid)
    a_events = await a.collect(a_call, "partner_connected")
    paired = next(e.session_paired for e in a_events if e.HasField("session_paired"))
    assert (paired.partner_user_id, paired.partner_display_name) == (
        mallory.user_id, mallory.user_id.title())
    await mallory.collect(m_call, "partner_connected")
    with pytest.raises(grpc.aio.AioRpcError) as info:  # only the creator removes
        await mallory.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
            session_id=sid, user_id=paired.partner_user_id), metadata=mallory.metadata)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
            session_id=sid, user_id="someone-else"), metadata=a.metadata)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    reply = await a.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
        session_id=sid, user_id=paired.partner_user_id), metadata=a.metadata)
    assert reply.session.status == sessions_pb2.SESSION_STATUS_ENDED
    m_rest: list[pb.ConversationEvent] = []
    err = await failure(m_call, m_rest)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == f"removed from session {sid} by its creator"
    assert m_rest[-1].session_ended.reason == "partner removed by the creator"
    a_rest = [r.event async for r in a_call]  # type: ignore[attr-defined]
    assert a_rest[-1].session_ended.reason == "partner removed by the creator"
    for c in (a, mallory):
        await c.close()


async def test_long_inputs_are_quoted_cut(plumbing: Stack) -> None:
    a = Caller(plumbing.session, "quoter")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.create("x" * 1000)
    details = info.value.details()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("language_code 'xxxxxxx") and "x" * 100 not in details
    assert "x" * 78 + "…" in details and len(details) < 250
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.join("9" * 1000, "en")
    assert len(info.value.details()) < 120 and info.value.details().endswith("…")
    await a.close()


def test_an_audio_budget_counts_seconds_not_chunks() -> None:
    now = [0.0]
    budget = AudioBudget(2.0, 10.0, clock=lambda: now[0])
    for _ in range(2):
        budget.take(4.096)  # 64 KiB of 8 kHz LINEAR16
    with pytest.raises(ResourceExhausted) as info:
        budget.take(4.096)  # 12.3 s at once: beyond the 10 s burst
    assert info.value.retry_after_s == pytest.approx((12.288 - 10) / 2)
    now[0] += 100  # a pause refills it; real time goes on forever
    for _ in range(1000):
        budget.take(0.1)
        now[0] += 0.1


def test_opus_is_counted_by_its_packets_whatever_the_chunking(fleurs: Path) -> None:
    data = (fleurs / "fleurs-en-004.ogg").read_bytes()
    counted = OpusDuration()
    seconds = sum(counted.feed(data[i : i + 333]) for i in range(0, len(data), 333))
    decoded_s = len(audio.decode_file(fleurs / "fleurs-en-004.ogg")) / audio.STT_RATE_HZ
    assert seconds == pytest.approx(decoded_s, abs=0.1)  # the pre-skip is not removed
    assert ogg.packet_seconds(bytes([0b11111_0_11, 0x30])) == pytest.approx(0.96)  # 48 x 20 ms


@pytest.fixture(scope="module")
async def strict(settings: config.Settings) -> AsyncIterator[Stack]:
    """session_svc with the production audio limit and a short join deadline."""
    session = dataclasses.replace(
        settings.session, join_timeout_s=0.5, max_audio_speed=2.0, audio_burst_s=10.0)
    async with session_stack(dataclasses.replace(settings, session=session)) as stack:
        yield stack


async def test_a_stream_never_joined_ends_at_the_join_deadline(strict: Stack) -> None:
    a = Caller(strict.session, "silent")

    async def nothing() -> AsyncIterator[pb.ConverseRequest]:
        await asyncio.sleep(3600)
        yield pb.ConverseRequest()

    start = time.monotonic()
    err = await failure(a.conversation.Converse(nothing(), metadata=a.metadata))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.details() == "no `join` within 0.5 s of opening the stream (session.join_timeout_s)"
    assert time.monotonic() - start < 5
    await a.close()


async def test_audio_faster_than_twice_real_time_is_refused(strict: Stack) -> None:
    """The probe: 20 chunks of 64 KiB at 8 kHz carry 82 s of audio and went in within 1 s."""
    a, b, sid = await pair(strict.session)

    async def flood() -> AsyncIterator[pb.ConverseRequest]:
        yield join_request(sid, 8000)
        for sequence in range(1, 4):  # the probe sent 20; the third is refused
            yield pb.ConverseRequest(audio=pb.AudioChunk(data=b"\0\0" * 32768, sequence=sequence))
        await asyncio.sleep(3600)  # writing on into a closed call hides its status (grpc)

    err = await failure(a.conversation.Converse(flood(), metadata=a.metadata))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("audio arrives faster than 2x real time")
    retry_after = float(dict(err.trailing_metadata())["retry-after"])
    assert 0 < retry_after < 2.1  # the third chunk (12.3 s of audio) overflowed the burst
    for c in (a, b):
        await c.close()


def ogg_page(packets: list[bytes]) -> bytes:
    """One Ogg page of `packets` (no CRC: nothing here checks it)."""
    lacing: list[int] = []
    for packet in packets:
        lacing += [255] * (len(packet) // 255) + [len(packet) % 255]
    header = b"OggS" + bytes(2) + bytes(8) + b"\1\0\0\0" + bytes(8) + bytes([len(lacing)])
    return header + bytes(lacing) + b"".join(packets)


async def test_opus_audio_faster_than_twice_real_time_is_refused(strict: Stack) -> None:
    """Opus bytes carry any duration: its packets are counted, not its bytes."""
    a, b, sid = await pair(strict.session)
    head = b"OpusHead\1\1" + bytes(2) + (48000).to_bytes(4, "little") + bytes(3)
    long_packet = bytes([0b11111_0_11, 48])  # CELT 20 ms, code 3: 48 frames, 0.96 s in 2 bytes
    chunk = ogg_page([head, b"OpusTags" + bytes(8)]) + ogg_page([long_packet] * 20)

    async def flood() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(join=pb.JoinConversation(
            session_id=sid, encoding=pb.AUDIO_ENCODING_OGG_OPUS))
        yield pb.ConverseRequest(audio=pb.AudioChunk(data=chunk, sequence=1))  # 19.2 s in 120 bytes
        await asyncio.sleep(3600)

    err = await failure(a.conversation.Converse(flood(), metadata=a.metadata))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("audio arrives faster than 2x real time")
    for c in (a, b):
        await c.close()


# -- properties ------------------------------------------------------------------

@examples(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=4.1), max_size=200),
       st.floats(min_value=1.0, max_value=4.0))
def test_audio_sent_in_real_time_is_never_refused(chunks_s: list[float], speed: float) -> None:
    """Audio no faster than real time passes, whatever the chunk sizes."""
    now = [0.0]
    budget = AudioBudget(speed, 10.0, clock=lambda: now[0])
    for seconds in chunks_s:
        budget.take(seconds)
        now[0] += seconds


@examples(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0.0, max_value=4.1),
                          st.floats(min_value=0.0, max_value=1.0)), max_size=200))
def test_audio_taken_never_exceeds_the_burst_plus_the_speed(chunks: list[tuple[float, float]]) -> None:
    now = [0.0]
    budget = AudioBudget(2.0, 10.0, clock=lambda: now[0])
    taken = 0.0
    for seconds, pause_s in chunks:
        with contextlib.suppress(ResourceExhausted):
            budget.take(seconds)
            taken += seconds
        now[0] += pause_s
        assert taken <= 10.0 + 2.0 * now[0] + 1e-6


class _Sequences:
    """A Connection of a session that is not live anywhere: only its chunk rule runs."""

    def __init__(self) -> None:
        session = Session("s", "123456", 0.0)
        member = Member("u", "U", "en", "en", "", EventLog("s", 8))
        session.members.append(member)
        join = pb.JoinConversation(
            session_id="s", encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)
        self.conn = Connection(session, member, join, None, config.SessionSettings())  # type: ignore[arg-type]


@examples(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20), max_size=40), st.booleans())
async def test_a_chunk_is_taken_only_above_the_last_sequence(sequences: list[int], retry: bool) -> None:
    conn = _Sequences().conn
    last = 0
    for sequence in sequences:
        chunk = pb.AudioChunk(sequence=sequence)  # no data: no pipeline starts
        if sequence == 0 or sequence > last:
            conn.audio(chunk, retry=retry)
            last = sequence or last
        elif retry and sequence == last:
            conn.audio(chunk, retry=retry)  # a retry: acknowledged, nothing changes
        else:
            going_back = f"is not above the last one accepted on this stream, {last}:"
            with pytest.raises(InvalidArgument, match=going_back):
                conn.audio(chunk, retry=retry)


@examples(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=50), st.data())
async def test_resuming_after_any_event_sent_misses_nothing(n: int, data: st.DataObject) -> None:
    log = EventLog("s", 64)
    for _ in range(n):
        log.append(heartbeat=pb.ServerHeartbeat())
    after = data.draw(st.integers(min_value=0, max_value=n))
    log.close()
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = [e.sequence async for e in log.follow(after, stop, 60)]
    assert seen == list(range(after + 1, n + 1))
