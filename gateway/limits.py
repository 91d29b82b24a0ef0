"""Rate limits at the edge.

    requests  `limits.requests_per_minute` calls per user (every call but
              SendAudio, which has the audio limit), and as many Login
              attempts per username
    sessions  `limits.sessions_per_hour` sessions created per user (a
              CreateSession that fails gives its place back: only work
              done counts)
    joins     failed JoinSession calls (NOT_FOUND: a wrong code) per user
              and per client address, `limits.failed_joins*`: a try takes
              a place before it runs and gives it back when it succeeds, so
              concurrent guesses count too; each try refused while the
              places are taken doubles the wait (`strike`)
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


MAX_PENALTY_S = 24 * 3600.0
"""Longest wait one refused `strike` adds."""


class Limiter(Protocol):
    async def acquire(self, rule: Rule, key: str, max_wait_s: float = 0.0) -> float:
        """Takes one event of `key` under `rule`. Returns how long to wait before
        acting (0 within the burst); raises ResourceExhausted when that wait
        would be longer than `max_wait_s` (then nothing is taken)."""
        ...

    async def refund(self, rule: Rule, key: str) -> None:
        """Gives back one event taken by `acquire` or `strike`."""
        ...

    async def strike(self, rule: Rule, key: str) -> None:
        """As `acquire` with no wait, with exponential backoff: the n-th refusal in a
        row (none allowed between) pushes the next allowed event 2^(n-1) intervals
        further out, up to MAX_PENALTY_S."""
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


def strike(tat: float, strikes: int, now: float, rule: Rule) -> tuple[float, int, float | None]:
    """(new arrival time, strikes, wait when refused else None) for one more event
    under `rule` with exponential backoff (`Limiter.strike`)."""
    tat = max(tat, now)
    if tat + rule.interval_s - rule.burst * rule.interval_s <= now + SLACK_S:
        return tat + rule.interval_s, 0, None
    tat += min(rule.interval_s * 2 ** min(strikes, 40), MAX_PENALTY_S)
    return tat, strikes + 1, tat + rule.interval_s - rule.burst * rule.interval_s - now


class MemoryLimiter:
    """Limits in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[tuple[str, str], float] = {}
        self._strikes: dict[tuple[str, str], int] = {}
        self._calls = 0

    async def refund(self, rule: Rule, key: str) -> None:
        if (rule.name, key) in self._tat:
            self._tat[rule.name, key] -= rule.interval_s

    async def strike(self, rule: Rule, key: str) -> None:
        now, at = self._clock(), (rule.name, key)
        self._tat[at], strikes, wait_s = strike(
            self._tat.get(at, now), self._strikes.get(at, 0), now, rule)
        self._strikes[at] = strikes
        if wait_s is not None:
            raise _exhausted(rule, wait_s)

    async def acquire(self, rule: Rule, key: str, max_wait_s: float = 0.0) -> float:
        now = self._clock()
        self._tat[rule.name, key], wait_s = gcra(
            self._tat.get((rule.name, key), now), now, rule, max_wait_s)
        self._calls += 1
        if self._calls % PURGE_EVERY == 0:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
            self._strikes = {k: n for k, n in self._strikes.items() if k in self._tat}
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


# KEYS[1]: the key; ARGV: interval_s. Gives back one event, keeping the key's expiry.
REFUND_SCRIPT = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat == 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%.6f', tat - tonumber(ARGV[1])), 'KEEPTTL')
return 1
"""

# KEYS[1]: the key, KEYS[2]: its strikes; ARGV: interval_s, burst, max penalty. As `strike`.
STRIKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local strikes = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local wait = -1
if tat + interval - burst * interval <= now + 0.000001 then
  tat = tat + interval
  strikes = 0
else
  tat = tat + math.min(interval * 2 ^ math.min(strikes, 40), tonumber(ARGV[3]))
  strikes = strikes + 1
  wait = tat + interval - burst * interval - now
end
local ttl = math.ceil((tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', ttl)
redis.call('SET', KEYS[2], strikes, 'PX', ttl)
return tostring(wait)
"""


class RedisLimiter:
    """Limits shared by every gateway replica through Redis."""

    def __init__(self, url: str, prefix: str = "dragoman:limits:") -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self._refund = self._redis.register_script(REFUND_SCRIPT)
        self._strike = self._redis.register_script(STRIKE_SCRIPT)
        self._prefix = prefix

    async def refund(self, rule: Rule, key: str) -> None:
        from redis.exceptions import RedisError

        try:
            await self._refund(keys=[f"{self._prefix}{rule.name}:{key}"], args=[repr(rule.interval_s)])
        except RedisError as e:
            log.warning("rate limit not refunded: redis unavailable (%s)", type(e).__name__)

    async def strike(self, rule: Rule, key: str) -> None:
        """As `Limiter.strike`; allowed (with a warning) when Redis cannot be reached."""
        from redis.exceptions import RedisError

        name = f"{self._prefix}{rule.name}:{key}"
        try:
            wait = float(await self._strike(
                keys=[name, f"{name}:strikes"],
                args=[repr(rule.interval_s), rule.burst, repr(MAX_PENALTY_S)]))
        except RedisError as e:
            log.warning("rate limit not checked: redis unavailable (%s)", type(e).__name__)
            return
        if wait >= 0:
            raise _exhausted(rule, wait)

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
        self.failed_joins = Rule(
            "failed-joins", 1 / settings.failed_join_interval_s, settings.failed_joins,
            "too many joins with a wrong code")
        self.failed_joins_per_address = Rule(
            "failed-joins-address", 1 / settings.failed_join_per_address_interval_s,
            settings.failed_joins_per_address, "too many joins with a wrong code from this address")

    @classmethod
    def from_settings(cls, settings: config.LimitSettings) -> Limits:
        if settings.redis_url:
            return cls(settings, RedisLimiter(settings.redis_url))
        return cls(settings, MemoryLimiter())

    async def request(self, user_id: str) -> None:
        await self.limiter.acquire(self.requests, f"user:{user_id}")

    async def anonymous_request(self, address: str) -> None:
        """A call open to anyone (ListLanguages): the request limit, per client address."""
        await self.limiter.acquire(self.requests, f"address:{address}")

    async def login(self, username: str) -> None:
        await self.limiter.acquire(self.requests, f"login:{username.casefold()}")

    async def new_session(self, user_id: str) -> None:
        await self.limiter.acquire(self.sessions, user_id)

    async def session_not_created(self, user_id: str) -> None:
        """Gives back the place of a CreateSession that failed."""
        await self.limiter.refund(self.sessions, user_id)

    async def join_attempt(self, user_id: str, address: str) -> None:
        """Counts a join as failed before it runs (`join_succeeded` takes that back),
        per user, then per address; refused tries back off exponentially."""
        await self.limiter.strike(self.failed_joins, user_id)
        try:
            await self.limiter.strike(self.failed_joins_per_address, address)
        except ResourceExhausted:
            await self.limiter.refund(self.failed_joins, user_id)  # not tried
            raise

    async def join_succeeded(self, user_id: str, address: str) -> None:
        await self.limiter.refund(self.failed_joins, user_id)
        await self.limiter.refund(self.failed_joins_per_address, address)

    async def audio_chunk(self, user_id: str, session_id: str) -> None:
        await self.limiter.acquire(self.audio, f"{user_id}:{session_id}")

    def pacer(self) -> Pacer:
        return Pacer(self.audio)

    async def close(self) -> None:
        await self.limiter.close()
