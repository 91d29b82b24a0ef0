"""Access tokens die with their login (issue 27, defect 3): after DeleteAccount,
Logout or a leaked refresh token, the access tokens of that login get
UNAUTHENTICATED on the next call, and nothing reaches session_svc."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from dragoman import config
from dragoman.v1 import auth_pb2, sessions_pb2
from gateway import auth, server
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, Stubs, bearer, with_session_address
from tests.gateway.double import SessionDouble

RECHECK_MS = 200


async def refused(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return str(info.value.details())


async def test_a_deleted_accounts_token_creates_and_lists_nothing(
    stubs: Stubs, double: SessionDouble
) -> None:
    _, user = await stubs.register()
    token = bearer(user.tokens.access_token)
    await stubs.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=token)
    await stubs.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=token)
    double.reset()
    for call in (
        stubs.sessions.CreateSession(sessions_pb2.CreateSessionRequest(language_code="en"),
                                     metadata=token),
        stubs.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=token),
        stubs.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=token),
    ):
        assert await refused(call) == auth.REVOKED_TOKEN
    assert double.calls == []


async def test_logout_ends_the_access_tokens_of_that_login_only(
    stubs: Stubs, double: SessionDouble
) -> None:
    username, user = await stubs.register()
    other = await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    listing = sessions_pb2.ListSessionsRequest()
    await stubs.sessions.ListSessions(listing, metadata=bearer(user.tokens.access_token))
    await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.tokens.refresh_token))
    double.reset()
    assert await refused(stubs.sessions.ListSessions(
        listing, metadata=bearer(user.tokens.access_token))) == auth.REVOKED_TOKEN
    assert double.calls == []
    # the user's other login (another device) goes on
    await stubs.sessions.ListSessions(listing, metadata=bearer(other.tokens.access_token))
    assert double.calls[-1].asserted[0] == user.user_id


async def test_a_leaked_refresh_token_ends_the_access_tokens_of_its_login(stubs: Stubs) -> None:
    _, user = await stubs.register()
    refreshed = await stubs.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=user.tokens.refresh_token))
    assert await refused(stubs.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=user.tokens.refresh_token)))  # reuse
    for access_token in (user.tokens.access_token, refreshed.tokens.access_token):
        assert await refused(stubs.sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(), metadata=bearer(access_token))) == auth.REVOKED_TOKEN


@pytest.fixture(scope="module")
async def second_gateway(settings: config.Settings, double_address: str) -> AsyncIterator[str]:
    """Another replica on the same database, rechecking logins after RECHECK_MS."""
    replica = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, revocation_recheck_ms=RECHECK_MS))
    service = await server.create(with_session_address(replica, double_address))
    async for address in started(service):
        yield address


async def test_another_replica_sees_a_logout_within_its_recheck(
    stubs: Stubs, second_gateway: str
) -> None:
    _, user = await stubs.register()
    token = bearer(user.tokens.access_token)
    async with grpc.aio.insecure_channel(second_gateway) as channel:
        elsewhere = Stubs.on(channel)
        listing = sessions_pb2.ListSessionsRequest()
        await elsewhere.sessions.ListSessions(listing, metadata=token)  # cached as standing
        await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.tokens.refresh_token))
        await asyncio.sleep(RECHECK_MS / 1000 + 0.05)
        assert await refused(elsewhere.sessions.ListSessions(listing, metadata=token)) == (
            auth.REVOKED_TOKEN)
