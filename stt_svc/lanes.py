"""Decode lanes: one model, one worker thread, batches across streams, finals first.

Each loaded model gets a lane: a dedicated single-thread executor fed from a
bounded priority queue that every stream shares. Whenever the thread is
free, the worker takes what is queued, up to `max_batch` jobs of the most
urgent kind, and runs them as ONE model call: decodes that several streams
queued while the previous call ran go through the model together. A batch
never waits for more work to arrive, and finals never share a batch with
partials: a final result never waits behind queued partial decodes (of this
stream or any other), and a batch of finals is never slowed by partials.

Partial decodes get at most `partial_share` of the model's time: after a
batch of partials that took T seconds, the lane starts no partial for
T * (1 - share) / share seconds (finals it starts at once). So an end of
speech finds the model free at least that share of the time, at worst
waits for one batch of partials, and the partials that streams queue
meanwhile go through together when the rest is over.

The queue is bounded: a submit beyond `max_pending` waiting jobs raises
RESOURCE_EXHAUSTED at once instead of building a backlog. A job whose caller
moved on (its future cancelled) is skipped without running. A call already
running is never interrupted: results nobody wants are dropped (but still
counted by `on_batch`: they cost the model the same).

If a batch call fails, its jobs are run again one by one, so that one bad
request fails alone and the others still get their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

from dragoman import metrics
from dragoman.errors import ResourceExhausted

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")


class Priority(IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    """A job's result and the seconds its model call took on the worker thread."""

    value: T
    seconds: float
    batch_size: int = 1
    """Jobs that shared the model call."""


@dataclass(order=True, slots=True)
class _Job(Generic[R]):
    priority: int
    seq: int
    request: R = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


class DecodeLane(Generic[R, T]):
    """Runs `run_batch` for one model on its own thread, one batch at a time, by priority.

    `run_batch` takes a list of requests and returns one result per request, in order.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[R]], Sequence[T]],
        *,
        max_pending: int,
        max_batch: int = 1,
        partial_share: float = 1.0,
        on_batch: Callable[[Priority, Sequence[T | Exception]], None] | None = None,
    ) -> None:
        self.name = name
        self.max_pending = max_pending
        self.max_batch = max(1, max_batch)
        self._run_batch = run_batch
        self._on_batch = on_batch
        """Told every batch that ran and its results, wanted or not (the cost counters)."""
        self._partial_rest = (1.0 - partial_share) / partial_share
        self._partials_from = 0.0
        """Loop time before which no partial batch starts."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stt-{name}")
        self._jobs: list[_Job[R]] = []
        self._ready = asyncio.Event()
        self._seq = itertools.count()
        self._worker: asyncio.Task[None] | None = None
        metrics.STT_QUEUE_DEPTH.labels(name).set_function(lambda: self.depth)
        self.running: Priority | None = None
        """Priority of the batch on the thread now, if any (for tests and metrics)."""
        self.calls = 0
        """Model calls made so far (each runs one batch)."""

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the batch running)."""
        return sum(not job.future.done() for job in self._jobs)

    def waiting_besides(self, mine: Collection[asyncio.Future[Any]]) -> int:
        """Jobs waiting (not running) other than the futures in `mine`."""
        return sum(not job.future.done() and job.future not in mine for job in self._jobs)

    def submit(self, request: R, priority: Priority) -> asyncio.Future[Timed[T]]:
        """Queues `request`; cancel the returned future to withdraw it."""
        if len(self._jobs) >= self.max_pending:
            self._jobs = [job for job in self._jobs if not job.future.done()]
            heapq.heapify(self._jobs)
            if len(self._jobs) >= self.max_pending:
                raise ResourceExhausted(
                    f"speech recognition is overloaded ({len(self._jobs)} decodes waiting "
                    f"for {self.name}); retry shortly"
                )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Timed[T]] = loop.create_future()
        heapq.heappush(self._jobs, _Job(int(priority), next(self._seq), request, future))
        self._ready.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=f"lane-{self.name}")
        return future

    def _take(self, now: float) -> list[_Job[R]]:
        """The most urgent waiting jobs of one priority, oldest first, up to `max_batch`
        (no partials while the lane rests from them)."""
        while self._jobs and self._jobs[0].future.done():  # withdrawn while waiting
            heapq.heappop(self._jobs)
        if self._jobs and self._jobs[0].priority == Priority.PARTIAL and now < self._partials_from:
            return []
        batch: list[_Job[R]] = []
        while self._jobs and len(batch) < self.max_batch:
            if batch and self._jobs[0].priority != batch[0].priority:
                break
            job = heapq.heappop(self._jobs)
            if not job.future.done():  # else withdrawn while waiting
                batch.append(job)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take(loop.time())
            if not batch:
                self._ready.clear()
                resting = self._partials_from - loop.time() if self._jobs else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(resting):
                        await self._ready.wait()
                continue
            self.running = Priority(batch[0].priority)
            self.calls += 1
            try:
                results, seconds = await loop.run_in_executor(
                    self._executor, self._run, [job.request for job in batch]
                )
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            finally:
                self.running = None
            if self._on_batch is not None:
                self._on_batch(Priority(batch[0].priority), results)
            if batch[0].priority == Priority.PARTIAL:
                self._partials_from = loop.time() + seconds * self._partial_rest
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(Timed(result, seconds, len(batch)))

    def _run(self, requests: list[R]) -> tuple[list[T | Exception], float]:
        """On the worker thread: the batch, or each request alone if the batch fails."""
        start = time.perf_counter()
        try:
            results: list[T | Exception] = list(self._run_batch(requests))
        except Exception as e:  # noqa: BLE001 - handed to the callers
            if len(requests) == 1:
                return [e], time.perf_counter() - start
            log.warning("batch of %d failed (%s); decoding one by one", len(requests), e)
            results = []
            for request in requests:
                try:
                    results.append(self._run_batch([request])[0])
                except Exception as one:  # noqa: BLE001
                    results.append(one)
        return results, time.perf_counter() - start

    async def close(self) -> None:
        """Cancels waiting jobs and stops the worker (a running call finishes alone)."""
        for job in self._jobs:
            job.future.cancel()
        self._jobs.clear()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait([self._worker])
        self._executor.shutdown(wait=False, cancel_futures=True)
