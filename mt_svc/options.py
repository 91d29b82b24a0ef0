"""mt_svc's tunables, read from `settings.mt` (each field there, when declared, wins over the default).

Until `dragoman.config.MtSettings` declares these fields, the defaults below
apply; a field of the same name added there (and so DRAGOMAN_MT_<FIELD> and
`[mt]` in the TOML file) takes over with no change here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dragoman.errors import InvalidArgument
from mt_svc.cache import MemoryCache, NoCache, PhraseCache, RedisCache
from mt_svc.engines.ct2 import DecodeOptions


@dataclass(frozen=True, slots=True)
class Options:
    """Decoding, cache and request limits of mt_svc."""

    decode: DecodeOptions = DecodeOptions()
    """How the CTranslate2 models decode (its fields are settings.mt fields too)."""
    cache: str = "memory"
    """Phrase cache: "memory" (in-process LRU), "redis" (shared, at redis_url) or "off"."""
    cache_entries: int = 10_000
    """Sentences the in-process cache keeps."""
    cache_ttl_s: int = 30 * 24 * 3600
    """Lifetime of a Redis cache entry."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis of the phrase cache when cache = "redis"."""
    cache_prefix: str = "dragoman:mt:"
    """Prefix of the cache's Redis keys."""
    max_terms: int = 256
    """Most glossary plus do-not-translate terms in one request."""
    max_term_chars: int = 200
    """Longest glossary or do-not-translate term."""

    @classmethod
    def of(cls, mt_settings: Any) -> Options:
        """The options with every field that `mt_settings` declares taken from it."""

        def declared(kind: type) -> dict[str, Any]:
            return {f.name: getattr(mt_settings, f.name) for f in dataclasses.fields(kind)
                    if f.name != "decode" and hasattr(mt_settings, f.name)}

        return cls(decode=DecodeOptions(**declared(DecodeOptions)), **declared(cls))

    def new_cache(self) -> PhraseCache:
        """The phrase cache these options ask for."""
        kind = self.cache.strip().lower()
        if kind == "memory":
            return MemoryCache(self.cache_entries)
        if kind == "redis":
            return RedisCache(self.redis_url, self.cache_prefix, self.cache_ttl_s)
        if kind == "off":
            return NoCache()
        raise InvalidArgument(f"setting mt.cache: {self.cache!r} is not one of memory, redis, off")
