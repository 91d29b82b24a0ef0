"""Limits on signing in, per client address (gateway.peers).

    registrations  `limits.registrations_per_hour` Register calls per address
                   (those that pass validation: only work done counts)
    login backoff  after `auth.login_failures_free` wrong passwords for one
                   username from one address, each further attempt from that
                   address must wait 1, 2, 4 ... s (at most
                   `auth.login_backoff_max_s`) after the last failure; the
                   right password clears it

The backoff is per (username, address), so a guesser slows only themself:
the account's owner, from any other address, logs in as before, and tries
the backoff refuses do not count against the per-username request limit
(gateway.limits), which still bounds what many addresses together can try
(and only that many addresses together can exhaust).

State is in process, or in Redis (`limits.redis_url`) so that every gateway
replica sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from dragoman import config
from dragoman.errors import ResourceExhausted
from gateway.limits import Limiter, Rule

log = logging.getLogger(__name__)

FIRST_WAIT_S = 1.0
FORGET_AFTER_S = 24 * 3600.0
"""Failures are forgotten this long after the last one."""
MAX_ENTRIES = 100_000
"""In process: (username, address) pairs remembered; the oldest go first."""


class FailureStore(Protocol):
    async def get(self, key: str) -> tuple[int, float]:
        """(failures, time of the last one); (0, 0.0) when none."""
        ...

    async def failed(self, key: str, now: float) -> None: ...

    async def clear(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryFailures:
    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}

    async def get(self, key: str) -> tuple[int, float]:
        return self._failures.get(key, (0, 0.0))

    async def failed(self, key: str, now: float) -> None:
        count, last = self._failures.pop(key, (0, 0.0))
        if now - last >= FORGET_AFTER_S:
            count = 0
        self._failures[key] = (count + 1, now)
        if len(self._failures) > MAX_ENTRIES:
            del self._failures[next(iter(self._failures))]

    async def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    async def close(self) -> None:
        pass


class RedisFailures:
    """One hash per key (count, last), expiring FORGET_AFTER_S after the last failure.
    Redis errors let the attempt through: the limits must not take logins down."""

    def __init__(self, url: str, prefix: str = "dragoman:login-failures:") -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self._prefix = prefix

    async def get(self, key: str) -> tuple[int, float]:
        from redis.exceptions import RedisError

        try:
            count, last = await self._redis.hmget(self._prefix + key, "count", "last")
        except RedisError as e:
            log.warning("login backoff not checked: redis unavailable (%s)", type(e).__name__)
            return 0, 0.0
        return int(count or 0), float(last or 0.0)

    async def failed(self, key: str, now: float) -> None:
        from redis.exceptions import RedisError

        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(self._prefix + key, "count", 1)
                pipe.hset(self._prefix + key, "last", repr(now))
                pipe.expire(self._prefix + key, int(FORGET_AFTER_S))
                await pipe.execute()
        except RedisError as e:
            log.warning("login failure not counted: redis unavailable (%s)", type(e).__name__)

    async def clear(self, key: str) -> None:
        from redis.exceptions import RedisError

        try:
            await self._redis.delete(self._prefix + key)
        except RedisError:
            pass

    async def close(self) -> None:
        await self._redis.aclose()


class SignInLimits:
    """The registration limit and the login backoff of one gateway."""

    def __init__(self, auth: config.AuthSettings, limits: config.LimitSettings,
                 limiter: Limiter, failures: FailureStore,
                 clock: Callable[[], float] = time.time) -> None:
        self._limiter = limiter
        self._failures = failures
        self._free = auth.login_failures_free
        self._max_s = auth.login_backoff_max_s
        self._clock = clock
        self.registrations = Rule(
            "registrations", limits.registrations_per_hour / 3600, limits.registrations_per_hour,
            "too many new accounts from this address")

    @classmethod
    def from_settings(cls, settings: config.Settings, limiter: Limiter) -> SignInLimits:
        url = settings.limits.redis_url
        failures: FailureStore = RedisFailures(url) if url else MemoryFailures()
        return cls(settings.auth, settings.limits, limiter, failures)

    async def registration(self, address: str) -> None:
        await self._limiter.acquire(self.registrations, address)

    def wait_s(self, failures: int) -> float:
        """How long after the last failure the next attempt may come."""
        if failures < self._free:
            return 0.0
        return min(self._max_s, FIRST_WAIT_S * 2.0 ** min(failures - self._free, 64))

    @staticmethod
    def _key(username: str, address: str) -> str:
        return f"{username.casefold()}|{address}"

    async def before_login(self, username: str, address: str) -> None:
        """Raises ResourceExhausted while this address must wait to try `username` again."""
        failures, last = await self._failures.get(self._key(username, address))
        now = self._clock()
        if now - last >= FORGET_AFTER_S:
            return
        wait_s = last + self.wait_s(failures) - now
        if wait_s > 0:
            raise ResourceExhausted(
                f"too many wrong passwords for this account from this address: retry in "
                f"{wait_s:.1f} s", retry_after_s=wait_s)

    async def login_failed(self, username: str, address: str) -> None:
        await self._failures.failed(self._key(username, address), self._clock())

    async def login_succeeded(self, username: str, address: str) -> None:
        await self._failures.clear(self._key(username, address))

    async def close(self) -> None:
        await self._failures.close()
