"""Devices (issue 23, part 5) through a real gateway on loopback, once over
PostgreSQL and once over the in-memory store: each login is a device with
the name its client gave, its user agent, first and last seen and a coarse
network; RevokeDevice signs it out at once, refresh and access tokens both."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest

from dragoman import config
from dragoman.v1 import auth_pb2, sessions_pb2
from gateway import auth, peers, server
from gateway.store import InMemoryUserStore
from tests.conftest import started
from tests.gateway.conftest import (
    PASSWORD,
    SECRET,
    Stubs,
    bearer,
    failure,
    unique_name,
    with_session_address,
)

AGENT = "dragoman-devices-test/1.0"


@pytest.fixture(scope="module", params=["postgres", "memory"])
async def address(
    request: pytest.FixtureRequest, settings: config.Settings, double_address: str
) -> AsyncIterator[str]:
    store = InMemoryUserStore() if request.param == "memory" else None
    service = await server.create(with_session_address(settings, double_address), store=store)
    async for address in started(service):
        yield address


@pytest.fixture
async def laptop(address: str) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(
            address, options=[("grpc.primary_user_agent", AGENT)]) as channel:
        yield Stubs.on(channel)


@pytest.fixture
async def phone(address: str) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield Stubs.on(channel)


async def sign_up(stubs: Stubs, device_name: str) -> tuple[str, auth_pb2.RegisterResponse]:
    username = unique_name()
    return username, await stubs.auth.Register(auth_pb2.RegisterRequest(
        username=username, email=f"{username}@example.org", password=PASSWORD,
        preferred_language_code="en", device_name=device_name))


async def devices(stubs: Stubs, access_token: str) -> list[auth_pb2.Device]:
    reply = await stubs.auth.ListDevices(auth_pb2.ListDevicesRequest(),
                                         metadata=bearer(access_token))
    return list(reply.devices)


async def test_each_login_is_a_device_named_with_its_agent_network_and_times(
    laptop: Stubs, phone: Stubs
) -> None:
    username, first = await sign_up(laptop, "Ana's laptop")
    await asyncio.sleep(0.05)
    second = await phone.auth.Login(auth_pb2.LoginRequest(
        username=username, password=PASSWORD, device_name="phone ✆"))

    listed = await devices(laptop, first.tokens.access_token)
    assert [d.name for d in listed] == ["phone ✆", "Ana's laptop"]  # last seen first
    mine, other = listed[1], listed[0]
    assert mine.current and not other.current
    assert mine.device_id == jwt.decode(first.tokens.access_token, SECRET, ["HS256"])["sid"]
    assert mine.user_agent.startswith(AGENT) and not other.user_agent.startswith(AGENT)
    assert "grpc" in other.user_agent
    assert mine.coarse_ip == other.coarse_ip == "127.0.0.0/24"
    assert mine.first_seen_time == mine.last_seen_time
    assert other.first_seen_time.ToNanoseconds() > mine.first_seen_time.ToNanoseconds()
    # the other login sees the same devices, itself the current one
    assert [d.current for d in await devices(phone, second.tokens.access_token)] == [True, False]

    # a refresh is a sighting: the laptop is now the one last seen, its name kept
    await asyncio.sleep(0.05)
    renewed = await laptop.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=first.tokens.refresh_token))
    listed = await devices(laptop, renewed.tokens.access_token)
    assert [d.name for d in listed] == ["Ana's laptop", "phone ✆"]
    assert listed[0].first_seen_time == mine.first_seen_time
    assert listed[0].last_seen_time.ToNanoseconds() > mine.last_seen_time.ToNanoseconds()

    exported = await laptop.auth.ExportMyData(auth_pb2.ExportMyDataRequest(),
                                              metadata=bearer(renewed.tokens.access_token))
    assert [login.device.name for login in exported.logins] == ["Ana's laptop", "phone ✆"]
    assert exported.logins[0].device.user_agent.startswith(AGENT)


async def test_revoking_a_device_ends_its_refresh_and_access_tokens_at_once(
    laptop: Stubs, phone: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    username, first = await sign_up(laptop, "laptop")
    second = await phone.auth.Login(auth_pb2.LoginRequest(
        username=username, password=PASSWORD, device_name="stolen phone"))
    stolen = next(d for d in await devices(laptop, first.tokens.access_token) if not d.current)
    # the phone works until it is revoked
    await phone.sessions.ListSessions(sessions_pb2.ListSessionsRequest(),
                                      metadata=bearer(second.tokens.access_token))

    await laptop.auth.RevokeDevice(auth_pb2.RevokeDeviceRequest(device_id=stolen.device_id),
                                   metadata=bearer(first.tokens.access_token))

    assert [d.name for d in await devices(laptop, first.tokens.access_token)] == ["laptop"]
    for call in (
        phone.sessions.ListSessions(sessions_pb2.ListSessionsRequest(),
                                    metadata=bearer(second.tokens.access_token)),
        phone.auth.ListDevices(auth_pb2.ListDevicesRequest(),
                               metadata=bearer(second.tokens.access_token)),
    ):
        assert await failure(call, grpc.StatusCode.UNAUTHENTICATED) == auth.REVOKED_TOKEN
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        refused = await failure(
            phone.auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=second.tokens.refresh_token)),
            grpc.StatusCode.UNAUTHENTICATED)
    assert refused == auth.REVOKED_REFRESH
    logged = [r for r in caplog.records if r.getMessage() == "refresh from a revoked device refused"]
    assert [getattr(r, "device_id", None) for r in logged] == [stolen.device_id]
    # revoked once; again it is no longer there
    assert await failure(
        laptop.auth.RevokeDevice(auth_pb2.RevokeDeviceRequest(device_id=stolen.device_id),
                                 metadata=bearer(first.tokens.access_token)),
        grpc.StatusCode.NOT_FOUND) == auth.UNKNOWN_DEVICE
    # the laptop is untouched
    await laptop.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=first.tokens.refresh_token))


async def test_another_users_device_is_not_found_and_stays(laptop: Stubs, phone: Stubs) -> None:
    _, ana = await sign_up(laptop, "ana's")
    _, bob = await sign_up(phone, "bob's")
    anas = (await devices(laptop, ana.tokens.access_token))[0]
    for device_id, code in ((anas.device_id, grpc.StatusCode.NOT_FOUND),
                            ("no-such-device", grpc.StatusCode.NOT_FOUND),
                            ("", grpc.StatusCode.INVALID_ARGUMENT)):
        await failure(phone.auth.RevokeDevice(auth_pb2.RevokeDeviceRequest(device_id=device_id),
                                              metadata=bearer(bob.tokens.access_token)), code)
    assert [d.name for d in await devices(phone, bob.tokens.access_token)] == ["bob's"]
    assert [d.device_id for d in await devices(laptop, ana.tokens.access_token)] == [anas.device_id]
    await failure(laptop.auth.ListDevices(auth_pb2.ListDevicesRequest()),
                  grpc.StatusCode.UNAUTHENTICATED)


@pytest.mark.parametrize("device_name", ["x" * 65, "line\nbreak", "nul\x00"])
async def test_bad_device_names_are_invalid(laptop: Stubs, device_name: str) -> None:
    username, _ = await sign_up(laptop, "")
    message = await failure(laptop.auth.Login(auth_pb2.LoginRequest(
        username=username, password=PASSWORD, device_name=device_name)),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert message.startswith("device_name must be at most 64 characters")
    name = unique_name()
    await failure(laptop.auth.Register(auth_pb2.RegisterRequest(
        username=name, email=f"{name}@example.org", password=PASSWORD,
        preferred_language_code="en", device_name=device_name)), grpc.StatusCode.INVALID_ARGUMENT)


class _Context:
    """What peers reads of a call: its peer and metadata."""

    def __init__(self, peer: str, forwarded: str = "") -> None:
        self._peer = peer
        self._metadata = (("x-forwarded-for", forwarded),) if forwarded else ()

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


@pytest.mark.parametrize(("peer", "forwarded", "network"), [
    ("ipv4:203.0.113.77:5000", "", "203.0.113.0/24"),
    ("ipv6:[2001:db8:aa:bb::1]:5000", "", "2001:db8:aa::/48"),
    ("ipv6:[::ffff:198.51.100.9]:5000", "", "198.51.100.0/24"),
    ("ipv4:10.0.0.2:5000", "192.0.2.1, 198.51.100.200", "198.51.100.0/24"),  # via the trusted proxy
    ("ipv4:10.9.0.2:5000", "198.51.100.200", "10.9.0.0/24"),  # an untrusted peer's claim
    ("unix:/tmp/gw.sock", "", ""),
])
def test_the_network_is_coarse(peer: str, forwarded: str, network: str) -> None:
    trusted = peers.parse_networks("10.0.0.2")
    assert peers.coarse_network(_Context(peer, forwarded), trusted) == network  # type: ignore[arg-type]
