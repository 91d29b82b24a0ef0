"""Per-participant event logs: numbered, kept for resumption, followed live."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from dragoman.v1 import conversation_pb2 as pb

RECENT = 16
"""Latest events of a log also kept as messages (see `EventLog`)."""


def now_timestamp() -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


class EventLog:
    """The event stream of one participant.

    Every event gets the next sequence number (from 1, no gaps) and is kept in
    a buffer bounded by count (`capacity`) and by serialized bytes
    (`max_bytes`, 0: none), so a client that reconnects with the last sequence
    it saw gets the rest without gaps or duplicates. Whichever bound is hit,
    the oldest events go, and a resume from before the oldest kept one gets the
    kept ones (the jump in `sequence` shows what was lost). The newest event is
    always kept, so followers keeping up miss nothing. Followers wait on a
    change signal; heartbeats are generated per follower and not kept.

    The buffer holds events serialized: bytes are not tracked by Python's
    cyclic collector, message objects are, and a loaded session_svc keeps
    hundreds of thousands of events (2 x `capacity` per session), which made
    each older-generation pass long (bench/results/gc_thresholds.md). The last
    RECENT events are also kept as messages, so that a follower keeping up
    (the usual case) is handed the message itself, not a parsed copy.
    """

    def __init__(self, session_id: str, capacity: int, max_bytes: int = 0,
                 on_append: Callable[[EventLog], None] | None = None) -> None:
        self.session_id = session_id
        self.on_append = on_append
        """Told of each new event when the tail is persisted (session_svc.handover): then
        followers get an event only once `mark_durable` says it is stored, so a client
        never holds an event that a replica taking the session over would not have."""
        self._durable = 0
        self._unsaved = 1  # the first sequence not yet handed to `on_append`'s writer
        self._events: deque[bytes] = deque(maxlen=capacity)
        self._max_bytes = max_bytes
        self._bytes = 0  # in self._events
        self._recent: deque[pb.ConversationEvent] = deque(maxlen=min(RECENT, capacity))
        self._sequence = 0
        self._waiters: list[asyncio.Future[bool]] = []  # True: woken, False: timed out
        self._closed = False

    @property
    def last_sequence(self) -> int:
        return self._sequence

    @property
    def visible(self) -> int:
        """The last sequence followers may be sent (see `on_append`)."""
        return self._sequence if self.on_append is None else self._durable

    def unsaved(self) -> list[tuple[int, bytes]]:
        """The kept events not yet taken for writing, as (sequence, serialized); taking
        them marks them taken (the writer calls `mark_durable` once they are stored)."""
        kept = len(self._events)
        first = self._sequence - kept + 1
        start = max(0, self._unsaved - first)
        out = [(first + i, data) for i, data in enumerate(
            itertools.islice(self._events, start, None), start)]
        self._unsaved = self._sequence + 1
        return out

    @property
    def first_sequence(self) -> int:
        """The oldest sequence kept (last_sequence + 1 when none is)."""
        return self._sequence - len(self._events) + 1

    def mark_durable(self, sequence: int) -> None:
        """Events up to `sequence` are stored: followers may have them."""
        if sequence > self._durable:
            self._durable = sequence
            self._wake()

    def restore(self, events: Sequence[tuple[int, bytes]]) -> None:
        """Takes a persisted tail (sequence, serialized), oldest first, as this empty
        log's events: the next event is numbered after the last of them."""
        for sequence, data in events:
            if len(self._events) == self._events.maxlen:
                self._bytes -= len(self._events[0])
            self._events.append(data)
            self._bytes += len(data)
            self._sequence = sequence
        self._recent.extend(pb.ConversationEvent.FromString(d)
                            for d in itertools.islice(self._events, max(
                                0, len(self._events) - (self._recent.maxlen or 0)), None))
        self._durable = self._sequence
        self._unsaved = self._sequence + 1

    def append(self, **kind: Any) -> pb.ConversationEvent:
        """Appends an event; `kind` is one oneof field, e.g. transcription=..."""
        self._sequence += 1
        event = pb.ConversationEvent(session_id=self.session_id, sequence=self._sequence, **kind)
        event.time.FromNanoseconds(time.time_ns())  # in place: no Timestamp copied in
        data = event.SerializeToString()
        if len(self._events) == self._events.maxlen:
            self._bytes -= len(self._events[0])  # about to fall out
        self._events.append(data)
        self._bytes += len(data)
        self._recent.append(event)
        if self._max_bytes:
            while self._bytes > self._max_bytes and len(self._events) > 1:
                self._bytes -= len(self._events.popleft())
            while len(self._recent) > len(self._events):
                self._recent.popleft()
        if self.on_append is not None:
            self.on_append(self)
        else:
            self._wake()
        return event

    @property
    def kept_bytes(self) -> int:
        """Serialized bytes of the events kept now."""
        return self._bytes

    def kept(self) -> list[pb.ConversationEvent]:
        """The events kept now, oldest first."""
        return self._after(0)

    def close(self) -> None:
        """No more events: followers end after the kept ones."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def _after(self, sequence: int, upto: int | None = None) -> list[pb.ConversationEvent]:
        last = self._sequence if upto is None else min(upto, self._sequence)
        if sequence >= last:
            return []
        kept = len(self._events)
        first = self._sequence - kept + 1
        start = max(0, sequence + 1 - first)
        stop = kept - (self._sequence - last)
        held = kept - len(self._recent)  # index of the first event still held as a message
        parse = pb.ConversationEvent.FromString
        return [parse(data) for data in itertools.islice(
            self._events, start, max(start, min(held, stop)))] + list(
            itertools.islice(self._recent, max(0, start - held), max(0, stop - held)))

    async def follow(
        self, after: int, stop: asyncio.Future[None], heartbeat_s: float
    ) -> AsyncIterator[pb.ConversationEvent]:
        """Kept events after `after`, then live ones, until closed or `stop` is done.

        When `stop` finishes with an exception, it is raised here after the
        events already kept have been yielded.
        """
        cursor = after
        loop = asyncio.get_running_loop()  # once: each lookup is a getpid() system call
        while True:
            pending = self._after(cursor, self.visible)
            for event in pending:
                cursor = event.sequence
                yield event
            if pending:
                continue
            if stop.done():
                stop.result()
                return
            if self._closed and cursor >= self._sequence:
                return
            if not await self._wait(loop, stop, heartbeat_s):
                yield pb.ConversationEvent(
                    session_id=self.session_id, sequence=cursor, time=now_timestamp(),
                    heartbeat=pb.ServerHeartbeat(),
                )

    async def _wait(
        self, loop: asyncio.AbstractEventLoop, stop: asyncio.Future[None], timeout_s: float
    ) -> bool:
        """Waits for a new event, `stop`, or the timeout (then False).

        One future and one timer per wait: this runs for every event a
        follower is sent, and `asyncio.wait_for` costs several times more.
        """
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(True)

        def expire() -> None:
            if not waiter.done():
                waiter.set_result(False)

        timer = loop.call_later(timeout_s, expire)
        stop.add_done_callback(wake)
        try:
            return await waiter
        finally:
            timer.cancel()
            stop.remove_done_callback(wake)
            if waiter in self._waiters:  # not woken by an event: still listed
                self._waiters.remove(waiter)
