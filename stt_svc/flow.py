"""Per-stream flow limits: the chunk rate bucket.

A client may send audio in chunks of any size, but not a flood of them:
beyond a burst of `burst` chunks, at most `per_s` a second (a GCRA token
bucket: one number per stream, the chunk's theoretical arrival time). A
chunk over the limit ends the stream with RESOURCE_EXHAUSTED and a
`retry-after` of the time until the bucket would have taken it. The limit
counts messages, not audio: 100 ms chunks sent in real time are 10 a second,
and a client with a backlog (after a network stall) catches up with few
large chunks rather than many small ones.
"""

from __future__ import annotations

from dragoman.errors import ResourceExhausted

BURST_CHUNKS = 20
"""Default burst: 2 s of 100 ms chunks, for a client catching up after a stall."""
SLACK_S = 1e-6
"""Rounding allowance, so the last chunk of a burst is never refused."""


class ChunkRate:
    """`per_s` chunks a second after a burst of `burst` (GCRA)."""

    def __init__(self, per_s: float, burst: int) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError(f"chunk rate needs per_s > 0 and burst >= 1, got {per_s}, {burst}")
        self.per_s = per_s
        self.burst = burst
        self._interval_s = 1.0 / per_s
        self._tolerance_s = (burst - 1) * self._interval_s
        self._tat = float("-inf")
        """Theoretical arrival time of the next chunk on a steady stream."""

    def admit(self, now_s: float) -> None:
        """Counts a chunk arriving at `now_s` (monotonic seconds), or raises ResourceExhausted."""
        tat = max(self._tat, now_s)
        early_s = tat - self._tolerance_s - now_s
        if early_s > SLACK_S:
            raise ResourceExhausted(
                f"audio chunks arrive faster than {self.per_s:g} a second after a burst of "
                f"{self.burst}: send fewer, larger chunks (about 100 ms each, in real time); "
                f"retry in {early_s:.2f} s",
                retry_after_s=early_s,
            )
        self._tat = tat + self._interval_s
