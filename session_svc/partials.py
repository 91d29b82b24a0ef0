"""Translated partials: the stable prefix of a speaker's partial transcripts, translated
for one language as it grows, with bounded cost.

A prefix is translated only when it has more words than the last one taken for
its utterance; at most one translation starts per `interval_s`; while one runs
or waits, only the newest prefix is kept (one pending at most). Once an
utterance's final is taken (`close`), nothing more of it is translated or
emitted, so a late partial never follows the final translation, and one in
flight is cancelled: the final's own translation goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dragoman.errors import DragomanError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Partial:
    """The stable prefix of one partial transcript."""

    utterance_index: int
    text: str
    words: int
    stability: float


class Partials(Generic[T]):
    """Coalesces one language's partial translations of one speaker:
    `translate(text)` makes one, `emit(partial, result)` sends it."""

    def __init__(
        self, translate: Callable[[str], Awaitable[T]], emit: Callable[[Partial, T], None],
        interval_s: float, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._translate, self._emit = translate, emit
        self.interval_s = interval_s
        self._clock, self._sleep = clock, sleep
        self._pending: Partial | None = None
        self._taken: dict[int, int] = {}
        """Words of the last prefix taken (pending or translated), per utterance."""
        self._closed_below = 0
        """Utterances before this index have their final: nothing more of them goes out."""
        self._last_start = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._call: tuple[Partial, asyncio.Future[T]] | None = None
        """The translation in flight and what it translates."""

    def offer(self, partial: Partial) -> None:
        """Takes `partial` if it grew; it replaces any prefix still waiting."""
        if partial.utterance_index < self._closed_below or partial.words <= self._taken.get(
                partial.utterance_index, 0):
            return
        self._taken[partial.utterance_index] = partial.words
        self._pending = partial
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="partial-translations")

    def close(self, utterance_index: int) -> None:
        """The utterance's final came: drops what waits of it and what is being translated."""
        self._closed_below = max(self._closed_below, utterance_index + 1)
        for index in [i for i in self._taken if i < self._closed_below]:
            del self._taken[index]
        if self._pending is not None and self._pending.utterance_index < self._closed_below:
            self._pending = None
        if self._call is not None and self._call[0].utterance_index < self._closed_below:
            self._call[1].cancel()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            while self._pending is not None:
                wait = self._last_start + self.interval_s - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue  # the pending one may have been replaced or dropped meanwhile
                partial, self._pending = self._pending, None
                self._last_start = self._clock()
                call = asyncio.ensure_future(self._translate(partial.text))
                self._call = (partial, call)
                try:
                    result = await call
                except DragomanError as e:  # the final's translation reports failures
                    log.info("partial translation failed: %s", e.message)
                    continue
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if call.cancelled() and current is not None and not current.cancelling():
                        continue  # superseded by its final (`close`)
                    call.cancel()
                    raise
                finally:
                    self._call = None
                if partial.utterance_index >= self._closed_below:
                    self._emit(partial, result)
        finally:
            self._task = None
