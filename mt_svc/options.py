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

    beam_size: int = 2
    """Beam width of the CTranslate2 models (1: greedy, fastest)."""
    max_input_tokens: int = 200
    """Longest piece (SentencePiece tokens) sent to a CTranslate2 model; longer sentences are split."""
    max_output_tokens: int = 256
    """Most tokens a CTranslate2 model may produce for one piece."""
    max_batch_size: int = 32
    """Most pieces a CTranslate2 model decodes at once."""
    compute_type: str = "int8"
    """CTranslate2 compute type on the CPU."""
    cpu_threads: int = 2
    """Threads each CTranslate2 model uses per batch."""
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
        return cls(**{
            f.name: getattr(mt_settings, f.name)
            for f in dataclasses.fields(cls) if hasattr(mt_settings, f.name)
        })

    @property
    def decode(self) -> DecodeOptions:
        return DecodeOptions(
            beam_size=self.beam_size, max_input_tokens=self.max_input_tokens,
            max_output_tokens=self.max_output_tokens, max_batch_size=self.max_batch_size,
            compute_type=self.compute_type, cpu_threads=self.cpu_threads,
        )

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
