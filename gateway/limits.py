"""Rate limits at the edge.

    requests  `limits.requests_per_minute` calls per user (every call but
              SendAudio, which has the audio limit), and as many Login
              attempts per username
    sessions  `limits.sessions_per_hour` CreateSession calls per user
    audio     `limits.audio_chunks_per_s` chunks per stream, after a burst of
              `limits.audio_burst_chunks`: SendAudio per (user, session) gets
              RESOURCE_EXHAUSTED beyond it; a Converse stream is paced
              instead (the gateway reads its audio no faster, and HTTP/2 flow
              control slows the client), since an error would end the
              whole conversation

A full limit raises ResourceExhausted, which the server sends with a
`retry-after` trailer (seconds). The one live stream per user per session
is kept by session_svc: a newer stream replaces the older, which ends
with ABORTED.

Every limit is a token bucket kept as one number per key, its theoretical
arrival time (GCRA): a call is allowed when it is no earlier than `burst`
intervals before it. `MemoryLimiter` holds the numbers in this process;
`RedisLimiter` in Redis with one atomic script on Redis's clock, so the
limits hold across gateway replicas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dragoman import config
from dragoman.errors import ResourceExhausted

log = logging.getLogger(__name__)

PURGE_EVERY = 10_000
"""MemoryLimiter drops idle keys after this many calls."""
SLACK_S = 1e-6
"""Rounding allowance, so the last call of a burst is never refused."""


@dataclass(frozen=True, slots=True)
class Rule:
    """`rate` events per second after a burst of `burst`."""

    name: str
    rate: float
    burst: int
    message: str
    """What the caller is told, e.g. "too many requests"."""

    @property
    def interval_s(self) -> float:
        return 1.0 / self.rate


class Limiter(Protocol):
    async def acquire(self, rule: Rule, key: str, max_wait_s: float = 0.0) -> float:
        """Takes one event of `key` under `rule`. Returns how long to wait before
        acting (0 within the burst); raises ResourceExhausted when that wait
        would be longer than `max_wait_s` (then nothing is taken)."""
        ...

    async def close(self) -> None: ...


def _exhausted(rule: Rule, wait_s: float) -> ResourceExhausted:
    retry_after_s = max(wait_s, 0.001)
    return ResourceExhausted(
        f"{rule.message}: retry in {retry_after_s:.1f} s", retry_after_s=retry_after_s)


def gcra(tat: float, now: float, rule: Rule, max_wait_s: float) -> tuple[float, float]:
    """(new arrival time, wait) for one more event, or raises ResourceExhausted."""
    new_tat = max(tat, now) + rule.interval_s
    wait_s = new_tat - rule.burst * rule.interval_s - now
    if wait_s > max_wait_s + SLACK_S:
        raise _exhausted(rule, wait_s)
    return new_tat, wait_s if wait_s > SLACK_S else 0.0


class MemoryLimiter:
    """Limits in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[tuple[str, str], float] = {}
        self._calls = 0

    async def acquire(self, rule: Rule, key: str, max_wait_s: float = 0.0) -> float:
        now = self._clock()
        self._tat[rule.name, key], wait_s = gcra(
            self._tat.get((rule.name, key), now), now, rule, max_wait_s)
        self._calls += 1
        if self._calls % PURGE_EVERY == 0:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return wait_s

    async def close(self) -> None:
        pass


# KEYS[1]: the key; ARGV: interval_s, burst, max_wait_s (with SLACK_S). Returns {allowed, wait_s}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait > max_wait then return {0, tostring(wait)} end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
           math.ceil((new_tat - now) * 1000) + 1000)
if wait < 0 then wait = 0 end
return {1, tostring(wait)}
"""


class RedisLimiter:
    """Limits shared by every gateway replica through Redis."""

    def __init__(self, url: str, prefix: str = "dragoman:limits:") -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self._prefix = prefix

    async def acquire(self, rule: Rule, key: str, max_wait_s: float = 0.0) -> float:
        """As `Limiter.acquire`; when Redis cannot be reached the call is
        allowed (with a warning): the limits must not take the service down."""
        from redis.exceptions import RedisError

        try:
            allowed, wait = await self._script(
                keys=[f"{self._prefix}{rule.name}:{key}"],
                args=[repr(rule.interval_s), rule.burst, repr(max_wait_s + SLACK_S)])
        except RedisError as e:
            log.warning("rate limit not checked: redis unavailable (%s)", type(e).__name__)
            return 0.0
        wait_s = float(wait)
        if not int(allowed):
            raise _exhausted(rule, wait_s)
        return wait_s

    async def close(self) -> None:
        await self._redis.aclose()


class Pacer:
    """Paces one stream's audio in this process: waits instead of refusing."""

    def __init__(
        self, rule: Rule, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rule = rule
        self._clock = clock
        self._sleep = sleep
        self._tat = clock()

    async def wait(self) -> None:
        now = self._clock()
        self._tat, wait_s = gcra(self._tat, now, self._rule, math.inf)
        if wait_s > 0:
            await self._sleep(wait_s)


class Limits:
    """The gateway's limits over one `Limiter`."""

    def __init__(self, settings: config.LimitSettings, limiter: Limiter) -> None:
        self.limiter = limiter
        self.requests = Rule("requests", settings.requests_per_minute / 60,
                             settings.requests_per_minute, "too many requests")
        self.sessions = Rule("sessions", settings.sessions_per_hour / 3600,
                             settings.sessions_per_hour, "too many new sessions")
        self.audio = Rule("audio", settings.audio_chunks_per_s, settings.audio_burst_chunks,
                          "audio chunks arrive too fast; send ~100 ms chunks in real time")

    @classmethod
    def from_settings(cls, settings: config.LimitSettings) -> Limits:
        if settings.redis_url:
            return cls(settings, RedisLimiter(settings.redis_url))
        return cls(settings, MemoryLimiter())

    async def request(self, user_id: str) -> None:
        await self.limiter.acquire(self.requests, f"user:{user_id}")

    async def login(self, username: str) -> None:
        await self.limiter.acquire(self.requests, f"login:{username.casefold()}")

    async def new_session(self, user_id: str) -> None:
        await self.limiter.acquire(self.sessions, user_id)

    async def audio_chunk(self, user_id: str, session_id: str) -> None:
        await self.limiter.acquire(self.audio, f"{user_id}:{session_id}")

    def pacer(self) -> Pacer:
        return Pacer(self.audio)

    async def close(self) -> None:
        await self.limiter.close()
