from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dragoman import config
from dragoman.v1 import conversation_pb2 as pb
from session_svc.events import RECENT, EventLog
from tests.rawclient import join_request
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import session_stack


async def _take(log: EventLog, after: int, n: int, stop: asyncio.Future[None]) -> list[pb.ConversationEvent]:
    out = []
    async for event in log.follow(after, stop, heartbeat_s=5):
        out.append(event)
        if len(out) == n:
            break
    return out


async def test_sequences_have_no_gaps_and_resume_skips_seen_events() -> None:
    log = EventLog("s1", capacity=100)
    for i in range(5):
        log.append(heartbeat=pb.ServerHeartbeat()) if i % 2 else log.append(
            error=pb.ConversationError(message=str(i)))
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    first = await _take(log, 0, 5, stop)
    assert [e.sequence for e in first] == [1, 2, 3, 4, 5]
    resumed = await _take(log, 3, 2, stop)
    assert [e.sequence for e in resumed] == [4, 5]


async def test_followers_wake_on_new_events_and_end_on_close() -> None:
    log = EventLog("s1", capacity=100)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_take(log, 0, 10, stop))
    await asyncio.sleep(0.01)
    log.append(partner_connected=pb.PartnerConnected(partner_user_id="u"))
    log.close()
    events = await asyncio.wait_for(task, 2)
    assert [e.WhichOneof("kind") for e in events] == ["partner_connected"]


async def test_a_failed_stop_is_raised_after_kept_events() -> None:
    log = EventLog("s1", capacity=100)
    log.append(partner_connected=pb.PartnerConnected(partner_user_id="u"))
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stop.set_exception(ValueError("boom"))
    seen = []
    try:
        async for event in log.follow(0, stop, heartbeat_s=5):
            seen.append(event.sequence)
    except ValueError as e:
        assert str(e) == "boom"
    else:
        raise AssertionError("stop exception not raised")
    assert seen == [1]


async def test_old_events_fall_out_of_a_bounded_buffer() -> None:
    log = EventLog("s1", capacity=3)
    for _ in range(5):
        log.append(heartbeat=pb.ServerHeartbeat())
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert [e.sequence for e in await _take(log, 0, 3, stop)] == [3, 4, 5]


def _audio(log: EventLog, size: int) -> int:
    """Appends a speech_audio event of `size` audio bytes; returns its serialized size."""
    return log.append(speech_audio=pb.SpeechAudio(data=b"\x01" * size)).ByteSize()


async def test_old_events_fall_out_of_a_buffer_bounded_by_bytes() -> None:
    log = EventLog("s1", capacity=100, max_bytes=10_000)
    sizes = [_audio(log, 3000) for _ in range(5)]
    assert log.kept_bytes == sum(sizes[-3:]) <= 10_000  # 3 of about 3 KB fit, 4 do not
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert [e.sequence for e in await _take(log, 0, 3, stop)] == [3, 4, 5]


@pytest.mark.parametrize("bound", ["count", "bytes"])
async def test_a_resume_from_an_evicted_sequence_gets_the_kept_events(bound: str) -> None:
    """Whichever bound evicted the events, the answer is the same: every kept event
    after the resume point, from the oldest kept one."""
    log = EventLog("s1", 4) if bound == "count" else EventLog("s1", 100, max_bytes=4 * 1100)
    for _ in range(10):
        _audio(log, 1000)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for after in (0, 3, 6):
        assert [e.sequence for e in await _take(log, after, 4, stop)] == [7, 8, 9, 10]
    assert [e.sequence for e in await _take(log, 8, 2, stop)] == [9, 10]


async def test_the_newest_event_is_kept_whatever_its_size() -> None:
    log = EventLog("s1", capacity=100, max_bytes=1000)
    _audio(log, 100)
    big = _audio(log, 5000)
    assert log.kept_bytes == big
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert [e.sequence for e in await _take(log, 0, 1, stop)] == [2]
    _audio(log, 100)  # the big one goes as soon as it is not the newest
    assert [e.sequence for e in await _take(log, 0, 1, stop)] == [3]


@pytest.mark.parametrize("after", [0, 1, 2, 5, 9])
async def test_a_byte_bound_keeping_fewer_than_recent_events_resumes_exactly(after: int) -> None:
    """Fewer events kept than RECENT: the messages kept beside them are trimmed too."""
    log = EventLog("s1", capacity=100, max_bytes=3 * 1100)
    for i in range(10):
        log.append(speech_audio=pb.SpeechAudio(data=bytes([i]) * 1000))
    kept = list(range(max(after + 1, 8), 11))
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got = await _take(log, after, len(kept), stop) if kept else []
    assert [e.sequence for e in got] == kept
    assert [e.speech_audio.data[0] for e in got] == [n - 1 for n in kept]


def test_the_count_bound_keeps_the_byte_count_right() -> None:
    log = EventLog("s1", capacity=3, max_bytes=10**6)
    sizes = [_audio(log, n) for n in (100, 200, 300, 400, 500)]
    assert log.kept_bytes == sum(sizes[-3:])


@pytest.mark.parametrize("after", [0, 1, 50, 100 - RECENT - 1, 100 - RECENT, 100 - RECENT + 1, 99, 100])
async def test_a_resume_from_anywhere_gets_every_later_event_once(after: int) -> None:
    """Whether the events were kept serialized or as messages (the last RECENT)."""
    log = EventLog("s1", capacity=100)
    for i in range(150):  # the first 50 fall out
        log.append(transcription=pb.Transcription(text=f"t{i}"))
    kept = list(range(max(after + 1, 51), 151))
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got = await _take(log, after, len(kept), stop) if kept else []
    assert [e.sequence for e in got] == kept
    assert [e.transcription.text for e in got] == [f"t{n - 1}" for n in kept]
    assert log._after(150) == []


def test_the_kept_events_are_out_of_the_cyclic_collectors_reach() -> None:
    log = EventLog("s1", capacity=1000)
    before = len(gc.get_objects())
    for i in range(1000):
        log.append(transcription=pb.Transcription(text=f"t{i}"))
    assert len(gc.get_objects()) - before < 2 * RECENT  # messages would be 1000 or more


async def test_idle_followers_get_heartbeats_repeating_the_last_sequence() -> None:
    log = EventLog("s1", capacity=10)
    log.append(heartbeat=pb.ServerHeartbeat())
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    out = []
    async for event in log.follow(1, stop, heartbeat_s=0.05):
        out.append(event)
        break
    assert out[0].WhichOneof("kind") == "heartbeat" and out[0].sequence == 1


async def test_a_wait_ended_by_timeout_stop_or_cancel_leaves_nothing_behind() -> None:
    log = EventLog("s1", capacity=10)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    beats = 0
    async for event in log.follow(0, stop, heartbeat_s=0.01):
        assert event.WhichOneof("kind") == "heartbeat"
        beats += 1
        if beats == 5:
            break
    assert log._waiters == []  # each timed-out wait took its waiter back

    follower = asyncio.create_task(_take(log, 0, 1, stop))
    await asyncio.sleep(0.01)
    assert len(log._waiters) == 1
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    assert log._waiters == []

    follower = asyncio.create_task(_take(log, 0, 1, stop))
    await asyncio.sleep(0.01)
    stop.set_result(None)
    assert await asyncio.wait_for(follower, 1) == []  # woken by stop at once, not by a heartbeat
    assert log._waiters == []
    log.append(heartbeat=pb.ServerHeartbeat())  # stop's callbacks are gone: waking no one is fine


async def test_a_resume_past_the_byte_bound_through_session_svc(
    settings: config.Settings, fleurs: Path
) -> None:
    """With a byte bound that keeps only the newest event, a listener who dropped and
    resumes gets that event (its sequence shows the jump), and a sequence past it is
    still OUT_OF_RANGE, as with the count bound."""
    tight = dataclasses.replace(settings, session=dataclasses.replace(
        settings.session, event_buffer_bytes=1))
    async with session_stack(tight) as stack:
        a, b = Caller(stack.session, "alice-bytes"), Caller(stack.session, "bruno-bytes")
        session = await a.create("en")
        await b.join(session.code, "pt")
        sid = session.session_id
        a_call = a.converse(sid)

        async def first_event(after: int) -> pb.ConversationEvent:
            async for response in b.conversation.Converse(b_stream(after), metadata=b.metadata):
                if response.event.WhichOneof("kind") != "heartbeat":
                    return response.event
            raise AssertionError("the stream ended")

        def b_stream(after: int) -> AsyncIterator[pb.ConverseRequest]:
            b.requests = asyncio.Queue()
            b.requests.put_nowait(join_request(sid, 16000, resume_after=after))
            return b._stream()

        last_seen = (await asyncio.wait_for(first_event(0), 30)).sequence  # then it drops
        await a.say(utterance(fleurs))
        await a.collect(a_call, "processing_ended")
        newest = await asyncio.wait_for(first_event(last_seen), 30)
        assert newest.sequence > last_seen + 1  # the ones between were evicted
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(first_event(newest.sequence + 1), 30)
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert f"past the last event of this stream, {newest.sequence}" in info.value.details()
        for c in (a, b):
            await c.close()
