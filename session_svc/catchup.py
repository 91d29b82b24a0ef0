"""Catch-up speaking rate: a listener who falls behind hears what comes next faster.

A listener plays the speech sent to them back to back, each chunk from when it
came or when the one before it ends, whichever is later (as bench.simultaneous
plays them). `Backlog` keeps, per listener, how far behind they are: the
seconds of speech sent and not yet played, or, when synthesis is what falls
behind (then little is unplayed, yet each piece comes later than the last),
how long the latest speech waited from when its text was ready to when it
starts playing, whichever is more. When the voice of their language is slower
than the speaker (Kokoro's Portuguese on a busy CPU), that grows, and so does
the ear-voice span; `CatchUp` then asks tts_svc to speak the next syntheses
faster, up to `max_speed`, and back at the voice's own rate once it drains
(settings session.catchup_*). Faster speech is also shorter to synthesise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SPEED_STEP = 0.05
"""Speeds asked for are multiples of this: fewer distinct syntheses, more cache hits."""


class Backlog:
    """How far one listener is behind: speech sent and not yet played, or the wait of the
    latest speech from its text to its playing, whichever is more."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = -math.inf
        """When what was sent will have been played."""
        self.late_s = 0.0
        """From when the latest speech's text was ready to when it starts playing."""

    def sent(self, duration_s: float, ready: float | None = None) -> None:
        """A chunk of `duration_s` seconds went to the listener now; `ready` (the clock's time)
        on the first chunk of a speech: when its text was ready to synthesise."""
        start = max(self._until, self._clock())
        if ready is not None:
            self.late_s = max(0.0, start - ready)
        self._until = start + duration_s

    def idle(self) -> None:
        """Nothing more is on its way to the listener: they are not behind what comes next."""
        self.late_s = 0.0

    @property
    def unplayed_s(self) -> float:
        return max(0.0, self._until - self._clock())

    @property
    def seconds(self) -> float:
        return max(self.unplayed_s, self.late_s)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """How fast a listener's next speech goes, from their backlog.

    Up to `backlog_s` of unplayed speech: the voice's own rate (1). Beyond it the speed
    rises linearly, reaching `max_speed` at twice `backlog_s`, in `SPEED_STEP` steps; as
    the backlog drains it steps back down the same way. `max_speed` 1: never faster."""

    backlog_s: float
    max_speed: float

    def speed(self, backlog_s: float) -> float:
        if self.max_speed <= 1.0 or backlog_s <= self.backlog_s:
            return 1.0
        over = min(1.0, (backlog_s - self.backlog_s) / self.backlog_s)
        steps = math.ceil(over * (self.max_speed - 1.0) / SPEED_STEP - 1e-9)
        return round(min(self.max_speed, 1.0 + steps * SPEED_STEP), 3)

    def for_listeners(self, backlogs: Iterable[Backlog]) -> float:
        """The speed of one synthesis shared by several listeners: the furthest behind sets it."""
        return self.speed(max((b.seconds for b in backlogs), default=0.0))
