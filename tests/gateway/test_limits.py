"""Rate limits: floods stop exactly at the limit, with retry-after; audio streams are paced."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as redis

from dragoman import config, errors
from dragoman.v1 import auth_pb2, sessions_pb2
from dragoman.v1 import conversation_pb2 as cpb
from gateway import limits as limits_module
from gateway import server
from gateway.limits import MemoryLimiter, Pacer, RedisLimiter, Rule
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, unique_name, with_session_address
from tests.rawclient import RawClient, join_request
from tests.session_svc.stack import Stack, session_stack

REDIS_URL = "redis://127.0.0.1:6379/0"
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
LIMITS = config.LimitSettings(
    requests_per_minute=10, sessions_per_hour=3, audio_chunks_per_s=10, audio_burst_chunks=5,
    registrations_per_hour=1_000)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def hourly(limit: int) -> Rule:
    return Rule("hourly", limit / 3600, limit, "too many")


async def flood(limiter: limits_module.Limiter, rule: Rule, n: int, key: str = "k") -> list[object]:
    return await asyncio.gather(*(limiter.acquire(rule, key) for _ in range(n)), return_exceptions=True)


def split(results: list[object]) -> tuple[list[object], list[errors.ResourceExhausted]]:
    refused = [r for r in results if isinstance(r, errors.ResourceExhausted)]
    return [r for r in results if not isinstance(r, BaseException)], refused


async def test_a_flood_stops_exactly_at_the_limit_and_refills_steadily() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    per_minute = Rule("requests", 100 / 60, 100, "too many requests")
    allowed, refused = split(await flood(limiter, per_minute, 150))
    assert len(allowed) == 100 and len(refused) == 50
    assert refused[0].retry_after_s == pytest.approx(0.6)
    assert "too many requests: retry in 0.6 s" == refused[0].message
    clock.now_s += 0.6
    allowed, refused = split(await flood(limiter, per_minute, 3))
    assert (len(allowed), len(refused)) == (1, 2)
    clock.now_s += 60
    assert len(split(await flood(limiter, per_minute, 150))[0]) == 100
    assert len(split(await flood(limiter, per_minute, 1, key="other"))[0]) == 1  # keys apart


async def test_waiting_within_max_wait_reserves_a_later_slot() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    rule = Rule("audio", 10, 2, "too fast")
    waits = [await limiter.acquire(rule, "s", max_wait_s=0.25) for _ in range(4)]
    assert waits == pytest.approx([0, 0, 0.1, 0.2])
    with pytest.raises(errors.ResourceExhausted) as info:
        await limiter.acquire(rule, "s", max_wait_s=0.25)
    assert info.value.retry_after_s == pytest.approx(0.3)


async def test_a_pacer_delays_beyond_the_burst() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now_s += seconds

    pacer = Pacer(Rule("audio", 10, 3, "too fast"), clock, sleep)
    for _ in range(6):
        await pacer.wait()
    assert slept == pytest.approx([0.1, 0.1, 0.1])  # the first three pass at once
    clock.now_s += 1.0  # a pause refills the burst
    for _ in range(3):
        await pacer.wait()
    assert len(slept) == 3


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"dragoman-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.from_url(REDIS_URL)
    async for key in client.scan_iter(f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


async def test_redis_limits_hold_across_replicas(redis_prefix: str) -> None:
    replicas = [RedisLimiter(REDIS_URL, redis_prefix) for _ in range(2)]
    rule = hourly(10)
    try:
        results = await asyncio.gather(
            *(replicas[i % 2].acquire(rule, "user:1") for i in range(25)), return_exceptions=True)
        allowed, refused = split(results)
        assert len(allowed) == 10 and len(refused) == 15
        assert all(r.retry_after_s == pytest.approx(360, abs=1) for r in refused)
        assert await replicas[1].acquire(rule, "user:2") == 0.0
        waits = [await replicas[i % 2].acquire(Rule("pace", 10, 1, "x"), "s", max_wait_s=1) for i in range(3)]
        assert waits[0] == 0 and waits[1] == pytest.approx(0.1, abs=0.02)
    finally:
        for limiter in replicas:
            await limiter.close()


async def test_an_unreachable_redis_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    try:
        assert await limiter.acquire(hourly(1), "k") == 0.0
        assert await limiter.acquire(hourly(1), "k") == 0.0
    finally:
        await limiter.close()
    assert "rate limit not checked: redis unavailable" in caplog.text


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    async with session_stack(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def gateway(stack: Stack) -> AsyncIterator[str]:
    """A gateway with small limits whose clock stands still (no refill during a test)."""
    tight = dataclasses.replace(stack.settings, limits=LIMITS)
    service = await server.create(tight, limiter=MemoryLimiter(Clock()))
    async for address in started(service):
        yield address


async def user(address: str) -> tuple[RawClient, str]:
    client = RawClient(address)
    name = unique_name("lim")
    await client.register(name, f"{name}@example.org", PASSWORD, "en")
    return client, name


async def outcomes(*calls: object) -> list[grpc.StatusCode | str]:
    async def one(call: object) -> grpc.StatusCode | str:
        try:
            await call  # type: ignore[misc]
        except grpc.aio.AioRpcError as e:
            if e.code() == RESOURCE_EXHAUSTED:
                return dict(e.trailing_metadata() or ())["retry-after"]  # type: ignore[return-value]
            return e.code()
        return grpc.StatusCode.OK

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def test_requests_per_user_stop_at_the_limit(gateway: str) -> None:
    client, _ = await user(gateway)
    other, _ = await user(gateway)
    get = sessions_pb2.GetSessionRequest(session_id="nothing-here")
    seen = await outcomes(*(client.sessions.GetSession(get, metadata=client.metadata)
                            for _ in range(15)))
    assert seen.count(grpc.StatusCode.NOT_FOUND) == 10 and seen.count("6.000") == 5
    export = await outcomes(client.auth.ExportMyData(auth_pb2.ExportMyDataRequest(),
                                                      metadata=client.metadata))
    assert export == ["6.000"]  # every authenticated call counts
    assert await outcomes(other.sessions.GetSession(get, metadata=other.metadata)) == [
        grpc.StatusCode.NOT_FOUND]  # per user


async def test_anonymous_language_lists_stop_at_the_limit_per_address(gateway: str) -> None:
    async with RawClient(gateway) as anonymous:
        seen = await outcomes(*(anonymous.sessions.ListLanguages(sessions_pb2.ListLanguagesRequest())
                                for _ in range(12)))
    assert seen.count(grpc.StatusCode.OK) == 10 and seen.count("6.000") == 2
    client, _ = await user(gateway)  # a signed-in user's own limit is another
    get = sessions_pb2.GetSessionRequest(session_id="nothing-here")
    assert await outcomes(client.sessions.GetSession(get, metadata=client.metadata)) == [
        grpc.StatusCode.NOT_FOUND]


async def test_session_creations_per_user_stop_at_the_limit(gateway: str) -> None:
    client, _ = await user(gateway)
    seen = await outcomes(*(client.create_session("en") for _ in range(5)))
    assert seen.count(grpc.StatusCode.OK) == 3 and seen.count("1200.000") == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.create_session("en")
    assert info.value.details().startswith("too many new sessions: retry in 1200")


async def test_login_attempts_per_username_stop_at_the_limit(gateway: str) -> None:
    _, name = await user(gateway)
    wrong = auth_pb2.LoginRequest(username=name, password="guess-guess")
    async with RawClient(gateway) as anonymous:
        seen = await outcomes(*(anonymous.auth.Login(wrong) for _ in range(12)))
    assert seen.count(grpc.StatusCode.UNAUTHENTICATED) == 10 and seen.count("6.000") == 2


async def test_send_audio_stops_at_the_burst_and_does_not_count_as_requests(gateway: str) -> None:
    client, _ = await user(gateway)
    partner, _ = await user(gateway)
    session = await client.create_session("en")
    await partner.join_session(session.code, "pt")
    listen = client.conversation.Listen(
        cpb.ListenRequest(join=join_request(session.session_id).join), metadata=client.metadata)
    await listen.read()
    silence = cpb.AudioChunk(data=b"\0\0" * 1600)
    sends = [client.conversation.SendAudio(cpb.SendAudioRequest(
        session_id=session.session_id, audio=cpb.AudioChunk(data=silence.data, sequence=i + 1)),
        metadata=client.metadata) for i in range(8)]
    seen = await outcomes(*sends)
    assert seen.count(grpc.StatusCode.OK) == 5 and seen.count("0.100") == 3
    # two requests so far (CreateSession, Listen): eight of ten left
    gets = await outcomes(*(client.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=client.metadata)
        for _ in range(9)))
    assert gets.count(grpc.StatusCode.OK) == 8 and gets.count("6.000") == 1
    listen.cancel()


async def test_converse_audio_is_paced_not_refused(
    settings: config.Settings, double_address: str
) -> None:
    paced = dataclasses.replace(
        with_session_address(settings, double_address),
        limits=config.LimitSettings(audio_chunks_per_s=20, audio_burst_chunks=2))
    async for address in started(await server.create(paced)):
        client, _ = await user(address)

        async def requests() -> AsyncIterator[cpb.ConverseRequest]:
            yield join_request("s-1")
            for sequence in range(1, 7):
                yield cpb.ConverseRequest(audio=cpb.AudioChunk(data=b"\1\0" * 8, sequence=sequence))

        start = time.monotonic()
        events = [r.event async for r in client.converse(requests())]
        elapsed = time.monotonic() - start
        echoed = [e.speech_audio.chunk_index for e in events if e.HasField("speech_audio")]
        assert echoed == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing refused
        assert elapsed >= (6 - 2) / 20 - 0.01  # four chunks waited their turn
        await client.channel.close()
