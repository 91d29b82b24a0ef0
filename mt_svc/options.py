"""mt_svc's tunables: the `[mt]` settings (`dragoman.config.MtSettings`) in the shapes mt_svc uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dragoman import config
from dragoman.errors import InvalidArgument
from mt_svc.cache import MemoryCache, NoCache, PhraseCache, RedisCache
from mt_svc.engines.ct2 import DecodeOptions


@dataclass(frozen=True, slots=True)
class Options:
    """Decoding, cache and request limits of mt_svc (each field documented in MtSettings)."""

    decode: DecodeOptions
    """How the CTranslate2 models decode (its fields are settings.mt fields too)."""
    cache: str
    cache_entries: int
    cache_ttl_s: int
    redis_url: str
    cache_prefix: str
    max_terms: int
    max_term_chars: int

    @classmethod
    def of(cls, mt: config.MtSettings) -> Options:
        """The options of the `[mt]` settings."""

        def taken(kind: type) -> dict[str, object]:
            return {f.name: getattr(mt, f.name) for f in dataclasses.fields(kind) if f.name != "decode"}

        return cls(decode=DecodeOptions(**taken(DecodeOptions)), **taken(cls))  # type: ignore[arg-type]

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
