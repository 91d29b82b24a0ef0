"""Decode lanes: one model, one worker thread, finals before partials.

Each loaded model gets a lane: a dedicated single-thread executor fed from a
bounded priority queue. A final result never waits behind queued partial
decodes (of this stream or any other); a partial whose caller has moved on
(its future cancelled) is skipped without running. A decode already running
is never interrupted: its result is simply dropped if nobody wants it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

from dragoman.errors import ResourceExhausted

T = TypeVar("T")


class Priority(IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    """A job's result and the seconds its call took on the worker thread."""

    value: T
    seconds: float


@dataclass(order=True, slots=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


class DecodeLane:
    """Runs blocking calls for one model, one at a time, by priority."""

    def __init__(self, name: str, max_pending: int) -> None:
        self.name = name
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stt-{name}")
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._worker: asyncio.Task[None] | None = None
        self.running: Priority | None = None
        """Priority of the call on the thread now, if any (for tests and metrics)."""

    @property
    def depth(self) -> int:
        """Calls waiting (not counting the one running)."""
        return self._queue.qsize()

    def submit(self, fn: Callable[[], T], priority: Priority) -> asyncio.Future[Timed[T]]:
        """Queues `fn`; cancel the returned future to withdraw it."""
        if self._queue.qsize() >= self.max_pending:
            raise ResourceExhausted(
                f"speech recognition is overloaded ({self._queue.qsize()} decodes waiting "
                f"for {self.name}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Timed[T]] = loop.create_future()
        self._queue.put_nowait(_Job(int(priority), next(self._seq), fn, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=f"lane-{self.name}")
        return future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            if job.future.done():  # withdrawn while waiting
                continue
            self.running = Priority(job.priority)
            try:
                value = await loop.run_in_executor(self._executor, _timed, job.fn)
            except Exception as e:  # noqa: BLE001 - handed to the caller
                if not job.future.done():
                    job.future.set_exception(e)
            else:
                if not job.future.done():
                    job.future.set_result(value)
            finally:
                self.running = None

    async def close(self) -> None:
        """Cancels waiting calls and stops the worker (a running call finishes alone)."""
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait([self._worker])
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timed(fn: Callable[[], T]) -> Timed[T]:
    start = time.perf_counter()
    value = fn()
    return Timed(value, time.perf_counter() - start)
