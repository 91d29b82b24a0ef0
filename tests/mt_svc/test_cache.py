"""The phrase cache: the in-process LRU, and Redis (the real one on 127.0.0.1:6379) over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from dragoman import config, rpc
from dragoman.errors import InvalidArgument
from mt_svc import server
from mt_svc.cache import MemoryCache, NoCache, RedisCache, open_cache, read, value
from mt_svc.engines.fake import FakeEngine, tagged
from tests.conftest import started
from tests.mt_svc.conftest import request, stub_of, with_mt

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"dragoman-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.put_many({"a": "A", "b": "B"})
    assert await cache.get_many(["a"]) == ["A"]  # a is now the most recent
    await cache.put_many({"c": "C"})
    assert await cache.get_many(["a", "b", "c"]) == ["A", None, "C"]
    assert (len(cache), cache.stats.hits, cache.stats.misses) == (2, 3, 1)


async def test_the_mt_settings_pick_the_cache() -> None:
    assert isinstance(open_cache(config.MtSettings()), MemoryCache)
    assert isinstance(open_cache(config.MtSettings(cache="off")), NoCache)
    redis_cache = open_cache(config.MtSettings(cache=" Redis "))
    assert isinstance(redis_cache, RedisCache)
    await redis_cache.close()
    with pytest.raises(InvalidArgument, match="setting mt.cache: 'disk' is not one of memory, redis, off"):
        open_cache(config.MtSettings(cache="disk"))


async def test_redis_cache_stores_with_a_ttl_under_its_prefix(prefix: str) -> None:
    cache = RedisCache(REDIS_URL, prefix, ttl_s=60)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        assert await cache.get_many(["k1", "k2"]) == [None, None]
        await cache.put_many({"k1": "Olá, mundo.", "k2": "Até já."})
        assert await cache.get_many(["k2", "k3", "k1"]) == ["Até já.", None, "Olá, mundo."]
        assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (2, 3, 0)
        assert sorted([k async for k in client.scan_iter(match=f"{prefix}*")]) == [
            f"{prefix}k1".encode(), f"{prefix}k2".encode()]
        assert 0 < await client.ttl(f"{prefix}k1") <= 60
    finally:
        await cache.close()
        await client.aclose()


async def test_unreachable_redis_is_a_miss_not_a_failure() -> None:
    cache = RedisCache("redis://127.0.0.1:9/0", timeout_s=0.5)
    try:
        assert await cache.get_many(["k"]) == [None]
        await cache.put_many({"k": "v"})
        assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (0, 1, 2)
    finally:
        await cache.close()


async def test_repeats_are_cached_in_redis_across_replicas(settings: config.Settings, prefix: str) -> None:
    """Two mt_svc replicas on one Redis: the second serves the first one's translation."""
    replies = []
    engines = []
    for _ in range(2):
        engine = FakeEngine({("en", "pt")}, name="alpha")
        mt = config.MtSettings(cache="redis", redis_url=REDIS_URL, cache_prefix=prefix)
        cache = open_cache(mt)
        service = await server.create(with_mt(settings), engines=[engine], cache=cache)
        engine.calls.clear()  # forget the warm-up
        async for address in started(service):
            async with rpc.channel(address) as channel:
                stub = stub_of(channel)
                for segments in (["Hello there.", "Bye."], ["Bye.", "New."]):
                    reply = await stub.Translate(request("en", "pt", *segments))
                    replies.append([(t.text, t.cached) for t in reply.translations])
        engines.append(engine)

    def t(s: str) -> str:
        return tagged(s, "en", "pt", "alpha")

    assert replies == [
        [(t("Hello there."), False), (t("Bye."), False)],
        [(t("Bye."), True), (t("New."), False)],
        [(t("Hello there."), True), (t("Bye."), True)],  # second replica, fresh process
        [(t("Bye."), True), (t("New."), True)],
    ]
    assert [c.texts for c in engines[0].calls] == [("Hello there.", "Bye."), ("New.",)]
    assert engines[1].calls == []


@pytest.mark.parametrize(("text", "confidence"), [
    ("Olá.", 0.8123456789), ("Olá.", None), ("", 1.0), ("\x1e0.5\x1ea", None), ("\x1eodd", 0.5)])
def test_a_stored_value_gives_back_its_translation_and_confidence(
    text: str, confidence: float | None
) -> None:
    assert read(value(text, confidence)) == (text, confidence)
