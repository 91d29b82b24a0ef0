"""The audio cache: the in-process LRU, the real Redis at 127.0.0.1:6379, and the service using them."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from dragoman import config, rpc
from dragoman.errors import InvalidArgument
from dragoman.tts.v1 import tts_pb2
from tests.conftest import started
from tests.tts_svc.conftest import collect, stub
from tts_svc import server
from tts_svc.cache import AudioCache, CacheOptions, MemoryCache, RedisCache, open_cache
from tts_svc.engines.fake import FakeEngine
from tts_svc.pipeline import CACHE_MAX_CHARS, Chunk, pack, unpack

if TYPE_CHECKING:
    from dragoman.tts.v1.tts_pb2_grpc import TextToSpeechServiceAsyncStub as Stub

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    """A RedisCache under a prefix of its own; its keys are deleted afterwards."""
    cache = RedisCache(REDIS_URL, prefix=f"dragoman-test:{uuid.uuid4().hex}:", ttl_s=60)
    try:
        yield cache
    finally:
        keys = [k async for k in cache._redis.scan_iter(match=f"{cache.prefix}*")]
        if keys:
            await cache._redis.delete(*keys)
        await cache.close()


async def test_memory_cache_is_an_lru_bounded_by_entries_and_bytes() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=10)
    await cache.put("a", b"1234")
    await cache.put("b", b"5678")
    assert await cache.get("a") == b"1234"  # "a" is now the most recent
    await cache.put("c", b"90")
    assert await cache.get("b") is None
    await cache.put("d", b"abcdefghi")  # 9 bytes: "a" and "c" must go to stay within 10
    assert [await cache.get(k) for k in ("a", "c", "d")] == [None, None, b"abcdefghi"]
    await cache.put("huge", b"x" * 11)  # larger than the whole cache: not kept
    assert await cache.get("huge") is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (2, 4, 0)


async def test_redis_cache_keeps_values_under_its_prefix_with_a_ttl(redis_cache: RedisCache) -> None:
    assert await redis_cache.get("k") is None
    await redis_cache.put("k", b"\x00audio\xff")
    assert await redis_cache.get("k") == b"\x00audio\xff"
    assert 0 < await redis_cache._redis.ttl(f"{redis_cache.prefix}k") <= 60
    assert redis_cache.prefix.endswith(":audio:")
    assert (redis_cache.stats.hits, redis_cache.stats.misses, redis_cache.stats.errors) == (1, 1, 0)


async def test_an_unreachable_redis_is_a_miss_not_a_failure() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", prefix="dragoman-test:down:")
    try:
        await cache.put("k", b"v")
        assert await cache.get("k") is None
        assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (0, 1, 2)
    finally:
        await cache.close()


def test_cache_options_come_from_the_settings(settings: config.Settings) -> None:
    env = {
        "DRAGOMAN_TTS_CACHE": "redis",
        "DRAGOMAN_TTS_CACHE_ENTRIES": "9",
        "DRAGOMAN_TTS_REDIS_URL": "redis://h:1",
    }
    options = CacheOptions.from_settings(config.load(env=env).tts)
    assert (options.cache, options.cache_entries, options.redis_url) == ("redis", 9, "redis://h:1")
    defaults = CacheOptions.from_settings(settings.tts)
    assert (defaults.cache, defaults.cache_prefix) == (settings.tts.cache, "dragoman:tts:")
    with pytest.raises(InvalidArgument) as info:
        open_cache(CacheOptions(cache="disk"))
    assert info.value.message == "setting tts.cache: 'disk' is not one of memory, redis, off"
    assert open_cache(CacheOptions(cache="off")).kind == "none"


def test_pack_and_unpack_keep_every_field() -> None:
    chunks = [
        Chunk(0, b"\x01\x02", 24_000, "Hola,", "ef_dora", False, 0.5),
        Chunk(1, b"", 24_000, "¿qué tal?", "ef_dora", True, 0.0),
    ]
    assert unpack(pack(chunks)) == chunks
    assert unpack(b"garbage") is None
    assert unpack(pack(chunks)[:-3]) is None


FAKE_DELAY_S = 0.2


async def fake_service(
    settings: config.Settings, cache: AudioCache
) -> AsyncIterator[tuple[Stub, FakeEngine]]:
    engine = FakeEngine(delay_s=FAKE_DELAY_S)
    service = await server.create(settings, engine=engine, cache=cache)
    engine.requests.clear()
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield stub(channel), engine


async def timed(tts: Stub, **request: object) -> tuple[list[tts_pb2.SynthesizeResponse], float]:
    started_at = time.perf_counter()
    responses = await collect(tts, **request)
    return responses, time.perf_counter() - started_at


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_cache_hit_returns_identical_bytes_faster(
    settings: config.Settings, redis_cache: RedisCache, backend: str
) -> None:
    cache: AudioCache = redis_cache if backend == "redis" else MemoryCache()
    async for tts, engine in fake_service(settings, cache):
        request = {
            "text": "Good morning, how are you doing today? Fine.",
            "language_code": "en",
            "sample_rate_hertz": 16_000,
        }
        first, first_s = await timed(tts, **request)
        asked = len(engine.requests)
        second, second_s = await timed(tts, **request)
        assert second == first  # every field of every chunk, audio bytes included
        assert len(first) == 3 and asked == 3
        assert len(engine.requests) == asked  # the engine was not asked again
        assert second_s < first_s
        assert (cache.stats.hits, cache.stats.misses) == (1, 1)

        # Anything that changes the bytes is another entry: rate, encoding, voice's language.
        await collect(tts, **{**request, "sample_rate_hertz": 48_000})
        await collect(tts, **{**request, "encoding": tts_pb2.AUDIO_ENCODING_OGG_OPUS})
        await collect(tts, **{**request, "language_code": "de"})
        assert (cache.stats.hits, cache.stats.misses) == (1, 4)
        opus = await collect(tts, **{**request, "encoding": tts_pb2.AUDIO_ENCODING_OGG_OPUS})
        assert opus[0].audio.startswith(b"OggS") and cache.stats.hits == 2


async def test_long_texts_are_not_cached(settings: config.Settings) -> None:
    cache = MemoryCache()
    async for tts, engine in fake_service(settings, cache):
        text = "This sentence is repeated. " * (CACHE_MAX_CHARS // 20)
        assert len(text) > CACHE_MAX_CHARS
        first = await collect(tts, text=text, language_code="en")
        asked = len(engine.requests)
        assert await collect(tts, text=text, language_code="en") == first  # the fake engine is deterministic
        assert len(engine.requests) == 2 * asked
        assert (cache.stats.hits, cache.stats.misses) == (0, 0)


async def test_the_service_opens_redis_when_the_settings_ask(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"dragoman-test:{uuid.uuid4().hex}:"
    env: dict[str, Any] = {"cache": "redis", "redis_url": REDIS_URL, "cache_prefix": prefix}
    tts_settings = settings.tts
    for field, value in env.items():
        if hasattr(tts_settings, field):
            tts_settings = dataclasses.replace(tts_settings, **{field: value})
        else:
            monkeypatch.setenv(f"DRAGOMAN_TTS_{field.upper()}", value)
    fake_settings = dataclasses.replace(settings, tts=dataclasses.replace(tts_settings, engines="fake"))
    service = await server.create(fake_settings)
    probe = RedisCache(REDIS_URL, prefix=prefix)
    try:
        async for address in started(service):
            async with rpc.channel(address) as channel:
                await collect(stub(channel), text="Hallo.", language_code="de")
        keys = [k async for k in probe._redis.scan_iter(match=f"{prefix}audio:*")]
        assert len(keys) == 1
    finally:
        keys = [k async for k in probe._redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await probe._redis.delete(*keys)
        await probe.close()
