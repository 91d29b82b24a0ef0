"""How late a service's event loop runs: the signal it sheds new work on.

A process whose event loop is saturated serves everything late, the
sessions it already holds included. Before that happens it should refuse
new work (RESOURCE_EXHAUSTED with a retry-after), so that the client tries
again, on another replica if there is one, and the autoscaler adds one.

`LoopLag` wakes every `interval_s` and notes how late each wake-up came.
`lag_s()` is the least lateness of the last `window` wake-ups: a single
stall (a garbage collection, one slow callback) does not count, only a
loop that ran behind for the whole window. Exported as
`dragoman_event_loop_lag_seconds`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from prometheus_client import Gauge

from dragoman import metrics

INTERVAL_S = 0.1
WINDOW = 10


class LoopLag:
    """Measures the running event loop's lateness while `run()` runs."""

    def __init__(self, interval_s: float = INTERVAL_S, window: int = WINDOW,
                 gauge: Gauge = metrics.EVENT_LOOP_LAG) -> None:
        self.interval_s = interval_s
        self._late: deque[float] = deque(maxlen=window)
        self._gauge = gauge

    def lag_s(self) -> float:
        """Seconds every wake-up of the last window came late by (0 until a window is full)."""
        if len(self._late) < (self._late.maxlen or 0):
            return 0.0
        return min(self._late)

    async def run(self) -> None:
        # time.monotonic(), not loop.time(): uvloop's clock is read once per loop
        # iteration, so it would not see a callback that held the loop before this one.
        while True:
            due = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self._late.append(max(0.0, time.monotonic() - due))
            self._gauge.set(self.lag_s())
