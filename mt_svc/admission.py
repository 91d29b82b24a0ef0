"""Admission control: a bounded number of batches run, a bounded number wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from dragoman.errors import ResourceExhausted


class Admission:
    """At most `max_active` batches run at once and `max_queued` wait for a turn.

    A batch that finds the queue full is refused at once with
    RESOURCE_EXHAUSTED rather than piling up behind the others.
    """

    def __init__(self, max_active: int, max_queued: int, retry_after_s: float = 0.5) -> None:
        if max_active < 1 or max_queued < 0:
            raise ValueError("max_active must be >= 1 and max_queued >= 0")
        self.max_active = max_active
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_active)
        self.active = 0
        self.queued = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one running slot for the body; waits in the queue for it if needed."""
        if self._slots.locked() and self.queued >= self.max_queued:
            raise ResourceExhausted(
                f"translation queue is full ({self.active} batches running, {self.queued} "
                f"waiting); retry in {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()
