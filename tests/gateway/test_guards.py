"""Hostile clients at the gateway (issue 27): guessing pairing codes, quota
spent by rejected requests, streams never joined, and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from dragoman import config, errors
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2
from gateway import server
from gateway.limits import MAX_PENALTY_S, MemoryLimiter, RedisLimiter, Rule
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, unique_name
from tests.gateway.test_limits import REDIS_URL, Clock, outcomes, redis_prefix  # noqa: F401
from tests.rawclient import RawClient
from tests.session_svc.stack import Stack, session_stack

NOT_FOUND = grpc.StatusCode.NOT_FOUND
LIMITS = config.LimitSettings(
    requests_per_minute=1000, sessions_per_hour=3, failed_joins=5,
    failed_join_interval_s=1800, failed_joins_per_address=8,
    failed_join_per_address_interval_s=300)


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    session = dataclasses.replace(settings.session, join_timeout_s=0.5)
    async with session_stack(dataclasses.replace(settings, session=session)) as running:
        yield running


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[str]:
    """A gateway of its own per test (the per-address limit is shared by every test's
    client on 127.0.0.1), its clock standing still: no refill during a test."""
    service = await server.create(
        dataclasses.replace(stack.settings, limits=LIMITS), limiter=MemoryLimiter(Clock()))
    async for address in started(service):
        yield address


USERNAMES: dict[str, str] = {}
"""user id -> username of the users made here."""


async def user(address: str) -> RawClient:
    client = RawClient(address)
    name = unique_name("guard")
    USERNAMES[await client.register(name, f"{name}@example.org", PASSWORD, "en")] = name
    return client


def wrong_codes(client: RawClient, n: int, first: int = 0) -> list[object]:
    # codes from 900000 up: no test session of this module waits for them in practice
    return [client.join_session(f"{900000 + first + i:06d}", "pt") for i in range(n)]


async def test_failed_joins_back_off_per_account(gateway: str) -> None:
    """The probe: 50 wrong codes from one account were all NOT_FOUND in 0.1 s."""
    guesser = await user(gateway)
    seen = await outcomes(*wrong_codes(guesser, 50))
    assert seen.count(NOT_FOUND) == 5 and len(seen) == 50
    # every refusal while locked doubles the wait: 1, 2, 4, ... intervals, up to a day
    waits = sorted(float(s) for s in seen if isinstance(s, str))
    assert waits[:3] == [3600.0, 7200.0, 14400.0]
    assert waits[-1] > MAX_PENALTY_S
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await guesser.join_session("900000", "pt")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith("too many joins with a wrong code: retry in")


async def test_a_right_code_costs_nothing_and_the_creator_sees_the_joiner(gateway: str) -> None:
    host, partner = await user(gateway), await user(gateway)
    assert (await outcomes(*wrong_codes(partner, 4))).count(NOT_FOUND) == 4
    session = await host.create_session("en")
    joined = await partner.join_session(session.code, "pt")  # the fifth try: it succeeds
    assert joined.status == sessions_pb2.SESSION_STATUS_ACTIVE
    seen = await outcomes(*wrong_codes(partner, 2, first=10))
    # the success gave its place back (concurrent calls are admitted in no set order)
    assert sorted(seen, key=str) == sorted([NOT_FOUND, "3600.000"], key=str)

    host_call = host.converse(_joined(session.session_id))
    first = await host_call.read()
    while not first.event.HasField("session_paired"):  # after the roster's own events
        first = await host_call.read()
    paired = first.event.session_paired
    assert paired.partner_user_id == partner.user_id
    assert paired.partner_display_name == USERNAMES[partner.user_id]
    reply = await host.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
        session_id=session.session_id, user_id=partner.user_id), metadata=host.metadata)
    assert reply.session.status == sessions_pb2.SESSION_STATUS_ENDED
    host_call.cancel()


async def _joined(session_id: str) -> AsyncIterator[cpb.ConverseRequest]:
    yield cpb.ConverseRequest(join=cpb.JoinConversation(
        session_id=session_id, encoding=cpb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000))
    await asyncio.sleep(3600)


async def test_failed_joins_are_limited_per_address(gateway: str) -> None:
    """Fresh accounts from one address share its 8 failures."""
    first, second = await user(gateway), await user(gateway)
    assert (await outcomes(*wrong_codes(first, 5))).count(NOT_FOUND) == 5
    seen = await outcomes(*wrong_codes(second, 5, first=20))
    assert seen.count(NOT_FOUND) == 3
    refused = [s for s in seen if isinstance(s, str)]
    # the address's wait (2 intervals), not the account's; concurrent calls are admitted in
    # no set order, so the first refusal is the shortest wait, wherever it is in `seen`
    assert min(refused, key=float) == "600.000"


async def test_rejected_creates_do_not_use_up_the_quota(gateway: str) -> None:
    """The probe: five invalid CreateSession calls used to leave the sixth refused."""
    client = await user(gateway)
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.create_session("klingon-" + "x" * 1000)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(info.value.details()) < 250  # the input quoted cut
    seen = await outcomes(*(client.create_session("en") for _ in range(4)))
    assert seen.count(grpc.StatusCode.OK) == 3 and seen.count("1200.000") == 1


async def test_a_stream_never_joined_ends_at_the_join_deadline(gateway: str) -> None:
    client = await user(gateway)

    async def nothing() -> AsyncIterator[cpb.ConverseRequest]:
        await asyncio.sleep(3600)
        yield cpb.ConverseRequest()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in client.converse(nothing()):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.value.details() == (
        "no `join` within 0.5 s of opening the stream (session.join_timeout_s)")


async def test_a_resume_point_from_the_future_is_out_of_range_at_the_edge(gateway: str) -> None:
    host, partner = await user(gateway), await user(gateway)
    session = await host.create_session("en")
    await partner.join_session(session.code, "pt")

    async def resume() -> AsyncIterator[cpb.ConverseRequest]:
        yield cpb.ConverseRequest(join=cpb.JoinConversation(
            session_id=session.session_id, encoding=cpb.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=16000, resume_after_sequence=10**15))
        await asyncio.sleep(3600)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in partner.converse(resume()):
            pass
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    # session_paired, roster_changed (joined)
    assert info.value.details().endswith("is past the last event of this stream, 2")


async def _reflects(address: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        try:
            async for _ in stub.ServerReflectionInfo(ask()):
                pass
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK


async def test_reflection_is_off_unless_the_setting_turns_it_on(stack: Stack) -> None:
    assert config.Settings().reflection is False
    assert config.load(env={"DRAGOMAN_REFLECTION": "true"}).reflection is True
    for on in (False, True):
        service = await server.create(stack.settings, limiter=MemoryLimiter())
        service.reflection = on  # what rpc.run does with settings.reflection
        async for address in started(service):
            code = await _reflects(address)
        assert code == (grpc.StatusCode.OK if on else grpc.StatusCode.UNIMPLEMENTED)


async def test_strikes_back_off_exponentially_in_redis_too(redis_prefix: str) -> None:  # noqa: F811
    rule = Rule("joins", 1 / 60, 2, "too many")
    for limiter in (MemoryLimiter(Clock()), RedisLimiter(REDIS_URL, redis_prefix)):
        key = uuid.uuid4().hex
        try:
            await limiter.strike(rule, key)
            await limiter.strike(rule, key)
            waits = []
            for _ in range(3):
                with pytest.raises(errors.ResourceExhausted) as info:
                    await limiter.strike(rule, key)
                waits.append(info.value.retry_after_s)
            assert waits == pytest.approx([120, 240, 480], abs=1)
            await limiter.refund(rule, key)  # a place given back shortens the wait
            with pytest.raises(errors.ResourceExhausted) as info:
                await limiter.strike(rule, key)
            assert info.value.retry_after_s == pytest.approx(420 + 480, abs=1)
        finally:
            await limiter.close()


@examples(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4000), max_size=120))
async def test_wrong_guesses_never_beat_the_burst_plus_the_steady_rate(gaps_s: list[float]) -> None:
    """The bound docs/security.md's odds rest on: however a guesser times its tries,
    at most `burst` + elapsed / interval of them run."""
    clock = Clock()
    limiter, rule = MemoryLimiter(clock), Rule("joins", 1 / 1800, 5, "too many")
    start, ran = clock.now_s, 0
    for gap in gaps_s:
        clock.now_s += gap
        with contextlib.suppress(errors.ResourceExhausted):
            await limiter.strike(rule, "guesser")
            ran += 1
        assert ran <= 5 + (clock.now_s - start) / 1800 + 1e-9
