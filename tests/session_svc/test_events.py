from __future__ import annotations

import asyncio
import gc

import pytest

from dragoman.v1 import conversation_pb2 as pb
from session_svc.events import RECENT, EventLog


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
