"""The event loop's lateness, the signal new work is refused on."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Gauge

from dragoman.overload import LoopLag


async def _blocking(for_s: float, each_s: float) -> None:
    """Keeps the loop busy: callbacks that each hold it `each_s`, one after another."""
    end = time.monotonic() + for_s
    while time.monotonic() < end:
        time.sleep(each_s)
        await asyncio.sleep(0)


async def test_lag_counts_a_loop_behind_for_the_whole_window_not_one_stall() -> None:
    registry = CollectorRegistry()  # not the process's: other loops' lags are set there
    lag = LoopLag(interval_s=0.01, window=3, gauge=Gauge("lag", "lag", registry=registry))
    ticker = asyncio.create_task(lag.run())
    try:
        assert lag.lag_s() == 0.0  # no full window yet
        await asyncio.sleep(0.1)
        assert lag.lag_s() < 0.02  # an idle loop wakes on time

        time.sleep(0.2)  # one stall: a single late wake-up
        await asyncio.sleep(0.06)
        assert lag.lag_s() < 0.02

        await _blocking(0.6, 0.05)  # every wake-up waits behind 50 ms callbacks
        assert lag.lag_s() >= 0.02
        assert registry.get_sample_value("lag") == lag.lag_s()

        await asyncio.sleep(0.1)  # load gone: back to on time
        assert lag.lag_s() < 0.02
    finally:
        ticker.cancel()
