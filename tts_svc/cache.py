"""The audio cache for frequent phrases: an in-process LRU, or Redis when configured.

Both stores map a key (a hash of text, language, voice, rate, encoding and
engine version: see `pipeline`) to the bytes of a finished synthesis. A
cache never fails a synthesis: a Redis that is down or slow counts as a
miss (and an error), and the request is synthesised as usual.

Settings mirror mt_svc's phrase cache: `tts.cache` (memory, redis or off),
`tts.cache_entries`, `tts.redis_url`, `tts.cache_ttl_s`, `tts.cache_prefix`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from dragoman import config
from dragoman.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_ENTRIES = 256
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TTL_S = 7 * 24 * 3600
DEFAULT_PREFIX = "dragoman:tts:"
REDIS_TIMEOUT_S = 0.5
"""A Redis call slower than this is given up on (a miss): synthesis is faster."""


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Which audio cache to open (field names are those of the `tts` settings)."""

    cache: str = "memory"
    """memory (in-process LRU), redis, or off."""
    cache_entries: int = DEFAULT_ENTRIES
    """Entries of the in-process LRU."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for cache = redis."""
    cache_ttl_s: int = DEFAULT_TTL_S
    """Lifetime of a Redis entry."""
    cache_prefix: str = DEFAULT_PREFIX
    """Key prefix in Redis."""

    @classmethod
    def from_settings(cls, settings: config.TtsSettings) -> CacheOptions:
        """The cache options of `settings.tts` (TOML `[tts]`, DRAGOMAN_TTS_<FIELD>)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was opened."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    """Redis calls that failed or timed out (each also a miss or a lost put)."""


class AudioCache(Protocol):
    """Bytes by key, with hit and miss counters."""

    stats: CacheStats

    @property
    def kind(self) -> str:
        """ "memory", "redis" or "none", for logs."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """LRU in this process, bounded by entries and by total bytes (0 entries: no cache)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.stats = CacheStats()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    @property
    def kind(self) -> str:
        return "memory" if self._max_entries > 0 else "none"

    async def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._items.move_to_end(key)
        self.stats.hits += 1
        return value

    async def put(self, key: str, value: bytes) -> None:
        if self._max_entries <= 0 or len(value) > self._max_bytes:
            return
        old = self._items.pop(key, None)
        self._bytes += len(value) - (len(old) if old is not None else 0)
        self._items[key] = value
        while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)

    async def close(self) -> None:
        self._items.clear()
        self._bytes = 0


class RedisCache:
    """Entries in Redis under `prefix`, expiring after `ttl_s`; shared by every replica."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, ttl_s: int = DEFAULT_TTL_S) -> None:
        import redis.asyncio as redis

        self.stats = CacheStats()
        self.prefix = f"{prefix}audio:"
        self._ttl_s = ttl_s
        self._redis: Any = redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)

    @property
    def kind(self) -> str:
        return "redis"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self.prefix + key)
        except self._errors as e:
            self._failed("get", e)
            value = None
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(self.prefix + key, value, ex=self._ttl_s)
        except self._errors as e:
            self._failed("put", e)

    def _failed(self, operation: str, error: BaseException) -> None:
        self.stats.errors += 1
        log.warning("redis cache %s failed: %s", operation, type(error).__name__, extra={"error": str(error)})

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache(options: CacheOptions) -> AudioCache:
    """The cache `options.cache` names; another name is INVALID_ARGUMENT."""
    kind = options.cache.strip().lower()
    if kind == "memory":
        return MemoryCache(options.cache_entries)
    if kind == "redis":
        return RedisCache(options.redis_url, prefix=options.cache_prefix, ttl_s=options.cache_ttl_s)
    if kind == "off":
        return MemoryCache(0)
    raise InvalidArgument(f"setting tts.cache: {options.cache!r} is not one of memory, redis, off")
