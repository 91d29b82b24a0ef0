"""Register and Login per client address (issue 27's decisions): a limit on new
accounts per address, and a backoff on wrong passwords per (account, address)
that slows the guesser and never locks the owner out. Addresses come from
x-forwarded-for, as behind the Envoy edge (loopback is the trusted proxy)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from dragoman import config, errors
from dragoman.v1 import auth_pb2, auth_pb2_grpc
from gateway import peers, server
from gateway.limits import MemoryLimiter
from gateway.signin import MemoryFailures, RedisFailures, SignInLimits
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, unique_name, with_session_address

REDIS_URL = "redis://127.0.0.1:6379/0"
FREE_FAILURES = 3
REGISTRATIONS = 3
GUESSER, OWNER = "203.0.113.7", "198.51.100.9"


def from_address(address: str) -> tuple[tuple[str, str], ...]:
    # what a client writes first is not believed, only what the edge appended
    return (("x-forwarded-for", f"10.9.9.9, {address}"),)


@pytest.fixture(scope="module")
async def auth_stub(settings: config.Settings, double_address: str) -> AsyncIterator[
        auth_pb2_grpc.AuthServiceAsyncStub]:
    edge = dataclasses.replace(
        settings,
        auth=dataclasses.replace(settings.auth, login_failures_free=FREE_FAILURES,
                                 login_backoff_max_s=60.0),
        limits=dataclasses.replace(settings.limits, registrations_per_hour=REGISTRATIONS,
                                   trusted_proxies="127.0.0.1/32, ::1"))
    service = await server.create(with_session_address(edge, double_address))
    async for address in started(service):
        async with grpc.aio.insecure_channel(address) as channel:
            yield auth_pb2_grpc.AuthServiceStub(channel)  # type: ignore[misc]


def registration(username: str = "", password: str = PASSWORD) -> auth_pb2.RegisterRequest:
    username = username or unique_name("reg")
    return auth_pb2.RegisterRequest(username=username, email=f"{username}@example.org",
                                    password=password, preferred_language_code="en")


async def status(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code(), str(e.details())
    return grpc.StatusCode.OK, ""


async def test_registrations_per_address_stop_at_the_limit(
    auth_stub: auth_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    here = from_address("192.0.2.10")
    # refused input is not work done: it does not count
    code, _ = await status(auth_stub.Register(registration(password="short"), metadata=here))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(REGISTRATIONS):
        await auth_stub.Register(registration(), metadata=here)
    code, message = await status(auth_stub.Register(registration(), metadata=here))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message.startswith("too many new accounts from this address: retry in 11")
    await auth_stub.Register(registration(), metadata=from_address("192.0.2.11"))


async def test_wrong_passwords_slow_that_address_down_not_the_owner(
    auth_stub: auth_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    username = unique_name("owner")
    await auth_stub.Register(registration(username), metadata=from_address(OWNER))
    wrong = auth_pb2.LoginRequest(username=username, password="guess-guess")
    right = auth_pb2.LoginRequest(username=username, password=PASSWORD)
    for _ in range(FREE_FAILURES):
        assert (await status(auth_stub.Login(wrong, metadata=from_address(GUESSER))))[0] == (
            grpc.StatusCode.UNAUTHENTICATED)
    # the guesser now waits, even with the right password...
    code, message = await status(auth_stub.Login(right, metadata=from_address(GUESSER)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message.startswith("too many wrong passwords for this account from this address")
    # ...the owner, elsewhere, does not
    await auth_stub.Login(right, metadata=from_address(OWNER))
    # once the wait is over one more try; a wrong one doubles the wait
    await asyncio.sleep(1.05)
    assert (await status(auth_stub.Login(wrong, metadata=from_address(GUESSER))))[0] == (
        grpc.StatusCode.UNAUTHENTICATED)
    await asyncio.sleep(1.05)
    assert (await status(auth_stub.Login(right, metadata=from_address(GUESSER))))[0] == (
        grpc.StatusCode.RESOURCE_EXHAUSTED)
    await asyncio.sleep(1.0)
    await auth_stub.Login(right, metadata=from_address(GUESSER))  # and success clears it
    assert (await status(auth_stub.Login(wrong, metadata=from_address(GUESSER))))[0] == (
        grpc.StatusCode.UNAUTHENTICATED)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    limits = SignInLimits(
        config.AuthSettings(login_failures_free=5, login_backoff_max_s=900.0),
        config.LimitSettings(), MemoryLimiter(), MemoryFailures())
    assert [limits.wait_s(n) for n in (0, 4, 5, 6, 7, 14, 15, 1000)] == [
        0.0, 0.0, 1.0, 2.0, 4.0, 512.0, 900.0, 900.0]


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer, self._metadata = peer, metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_the_client_address_believes_only_trusted_proxies() -> None:
    trusted = peers.parse_networks("10.0.0.0/8,::1")
    forwarded = (("x-forwarded-for", "1.2.3.4, 203.0.113.7"),)
    address = peers.client_address
    assert address(_Context("ipv4:10.1.2.3:5000", forwarded), trusted) == "203.0.113.7"  # type: ignore[arg-type]
    assert address(_Context("ipv6:[::1]:5000", forwarded), trusted) == "203.0.113.7"  # type: ignore[arg-type]
    assert address(_Context("ipv4:192.0.2.1:5000", forwarded), trusted) == "192.0.2.1"  # type: ignore[arg-type]
    assert address(_Context("ipv4:10.1.2.3:5000", (("x-forwarded-for", "junk"),)),  # type: ignore[arg-type]
                   trusted) == "10.1.2.3"
    # an IPv6 client stands for its /64; a v4-mapped one for its IPv4 address
    assert address(_Context("ipv6:[2001:db8:1:2:3:4:5:6]:443"), ()) == "2001:db8:1:2::/64"  # type: ignore[arg-type]
    assert address(_Context("ipv6:[::ffff:203.0.113.7]:443"), ()) == "203.0.113.7"  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="^setting limits.trusted_proxies: "):
        peers.parse_networks("10.0.0.0/8, the-edge")


async def test_a_guesser_held_back_does_not_use_up_the_accounts_login_budget(
    settings: config.Settings, double_address: str,
) -> None:
    """The per-username limit counts only tries that were let through, so one
    address hammering the account cannot lock its owner out."""
    edge = dataclasses.replace(
        settings,
        auth=dataclasses.replace(settings.auth, login_failures_free=2, login_backoff_max_s=60.0),
        limits=dataclasses.replace(settings.limits, requests_per_minute=5,
                                   trusted_proxies="127.0.0.1/32"))
    service = await server.create(with_session_address(edge, double_address))
    async for address in started(service):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            username = unique_name("held")
            await stub.Register(registration(username), metadata=from_address(OWNER))
            wrong = auth_pb2.LoginRequest(username=username, password="guess-guess")
            seen = [(await status(stub.Login(wrong, metadata=from_address(GUESSER))))[0]
                    for _ in range(20)]
            assert seen[:2] == [grpc.StatusCode.UNAUTHENTICATED] * 2
            assert set(seen[2:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            await stub.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD),
                             metadata=from_address(OWNER))


async def test_the_backoff_holds_across_replicas_through_redis() -> None:
    prefix = f"dragoman-test:{uuid.uuid4().hex}:"
    settings = config.AuthSettings(login_failures_free=1, login_backoff_max_s=60.0)
    now = [1000.0]
    replicas = [SignInLimits(settings, config.LimitSettings(), MemoryLimiter(),
                             RedisFailures(REDIS_URL, prefix), clock=lambda: now[0])
                for _ in range(2)]
    try:
        await replicas[0].login_failed("Ann", GUESSER)
        with pytest.raises(errors.ResourceExhausted, match="retry in 1.0 s"):
            await replicas[1].before_login("ann", GUESSER)  # usernames regardless of case
        await replicas[1].before_login("ann", OWNER)
        now[0] += 1.0
        await replicas[1].before_login("ann", GUESSER)
        await replicas[1].login_failed("ann", GUESSER)
        now[0] += 1.5
        with pytest.raises(errors.ResourceExhausted, match="retry in 0.5 s"):
            await replicas[0].before_login("ann", GUESSER)
        await replicas[0].login_succeeded("ann", GUESSER)
        await replicas[1].before_login("ann", GUESSER)
    finally:
        for replica in replicas:
            await replica.close()
