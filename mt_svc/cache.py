"""The phrase cache: translations of sentences, in process (LRU) or in Redis.

A key is the sha256 of the route's engines and their versions, the pair and
the sentence in its normalised form (NFC, whitespace runs made one space),
after glossary masking; so a new model version, another route or another
glossary term never reuses a stale entry. The value is the translation,
with the engines' confidence in front where they gave one (`value`).

`MemoryCache` (the default) is a bounded LRU dictionary. `RedisCache` shares
entries between replicas (redis-py asyncio; keys under a prefix, with a
TTL); when Redis is unreachable a lookup counts as a miss and a store is
skipped, with a warning: the cache never fails a translation.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dragoman import config
from dragoman.errors import InvalidArgument

log = logging.getLogger(__name__)


def key(route: str, source: str, target: str, sentence: str) -> str:
    """The cache key of a normalised sentence translated along `route` (Route.version)."""
    return hashlib.sha256(f"{route}\x1f{source}\x1f{target}\x1f{sentence}".encode()).hexdigest()


_SCORED = "\x1e"
"""Marks a value that starts with a confidence (a control character no translation begins with)."""


def value(text: str, confidence: float | None) -> str:
    """What is stored for a translation and its confidence (None: not given)."""
    if confidence is None and not text.startswith(_SCORED):
        return text
    return f"{_SCORED}{'' if confidence is None else repr(confidence)}{_SCORED}{text}"


def read(stored: str) -> tuple[str, float | None]:
    """The translation and confidence of a stored `value`."""
    score, mark, text = stored[1:].partition(_SCORED)
    if not stored.startswith(_SCORED) or not mark:
        return stored, None
    try:
        return text, float(score) if score else None
    except ValueError:
        return stored, None


@dataclass(slots=True)
class CacheStats:
    """Counters since start: lookups that hit or missed, and backend errors."""

    hits: int = 0
    misses: int = 0
    errors: int = 0


class PhraseCache(Protocol):
    """Where translated sentences are kept."""

    stats: CacheStats

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The cached translation of each key, or None."""
        ...

    async def put_many(self, items: Mapping[str, str]) -> None:
        """Stores translations by key."""
        ...

    async def close(self) -> None:
        ...


class NoCache:
    """Caches nothing (settings mt.cache = "off")."""

    def __init__(self) -> None:
        self.stats = CacheStats()

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.stats.misses += len(keys)
        return [None] * len(keys)

    async def put_many(self, items: Mapping[str, str]) -> None:
        pass

    async def close(self) -> None:
        pass


class MemoryCache:
    """An in-process LRU of at most `max_entries` sentences."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._entries: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        found: list[str | None] = []
        for k in keys:
            value = self._entries.get(k)
            if value is not None:
                self._entries.move_to_end(k)
            found.append(value)
        _count(self.stats, found)
        return found

    async def put_many(self, items: Mapping[str, str]) -> None:
        for k, value in items.items():
            self._entries[k] = value
            self._entries.move_to_end(k)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Entries in Redis under `prefix`, each expiring after `ttl_s`."""

    def __init__(self, url: str, prefix: str = "dragoman:mt:", ttl_s: int = 30 * 24 * 3600,
                 timeout_s: float = 0.5) -> None:
        import redis.asyncio

        self.prefix = prefix
        self.ttl_s = ttl_s
        self.stats = CacheStats()
        self._redis: Any = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        try:
            raw = await self._redis.mget([self.prefix + k for k in keys])
        except self._errors as err:
            self._failed("lookup", err)
            raw = [None] * len(keys)
        found = [None if v is None else v.decode() for v in raw]
        _count(self.stats, found)
        return found

    async def put_many(self, items: Mapping[str, str]) -> None:
        if not items:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for k, value in items.items():
                    pipe.set(self.prefix + k, value.encode(), ex=self.ttl_s)
                await pipe.execute()
        except self._errors as err:
            self._failed("store", err)

    def _failed(self, what: str, err: BaseException) -> None:
        self.stats.errors += 1
        log.warning("phrase cache %s failed, going on without it: %s", what, err)

    async def close(self) -> None:
        await self._redis.aclose()


def _count(stats: CacheStats, found: Sequence[str | None]) -> None:
    hits = sum(v is not None for v in found)
    stats.hits += hits
    stats.misses += len(found) - hits


def open_cache(mt: config.MtSettings) -> PhraseCache:
    """The phrase cache `mt.cache` names; another name is INVALID_ARGUMENT."""
    kind = mt.cache.strip().lower()
    if kind == "memory":
        return MemoryCache(mt.cache_entries)
    if kind == "redis":
        return RedisCache(mt.redis_url, mt.cache_prefix, mt.cache_ttl_s)
    if kind == "off":
        return NoCache()
    raise InvalidArgument(f"setting mt.cache: {mt.cache!r} is not one of memory, redis, off")
