"""Access tokens die with their login (issue 27, defect 3): after DeleteAccount,
Logout or a leaked refresh token, the access tokens of that login get
UNAUTHENTICATED on the next call, and nothing reaches session_svc."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from bench.private import Postgres
from dragoman import config, db, errors
from dragoman.v1 import auth_pb2, sessions_pb2
from gateway import auth, server
from gateway.auth import Revocations
from gateway.pgstore import PgUserStore
from gateway.store import InMemoryUserStore, RefreshToken, User
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, Stubs, bearer, with_session_address
from tests.gateway.double import SessionDouble

RECHECK_MS = 60_000


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
    """Another replica on the same database, rechecking logins only after RECHECK_MS."""
    replica = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, revocation_recheck_ms=RECHECK_MS))
    service = await server.create(with_session_address(replica, double_address))
    async for address in started(service):
        yield address


async def test_another_replica_hears_of_a_logout_at_once(
    stubs: Stubs, second_gateway: str
) -> None:
    _, user = await stubs.register()
    token = bearer(user.tokens.access_token)
    async with grpc.aio.insecure_channel(second_gateway) as channel:
        elsewhere = Stubs.on(channel)
        listing = sessions_pb2.ListSessionsRequest()
        await elsewhere.sessions.ListSessions(listing, metadata=token)  # cached as standing
        await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.tokens.refresh_token))
        start = time.monotonic()
        while True:  # the NOTIFY takes milliseconds, not the minute of the recheck
            try:
                await elsewhere.sessions.ListSessions(listing, metadata=token)
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED
                assert e.details() == auth.REVOKED_TOKEN
                break
            assert time.monotonic() - start < 2.0, "the other replica still takes the token"
            await asyncio.sleep(0.02)


async def test_without_notifications_a_standing_login_is_rechecked() -> None:
    clock = [0.0]
    store = InMemoryUserStore()
    user = User("u-1", "ann", "ann@example.org", "x", "en", 0.0)
    await store.add_user(user)
    await store.add_refresh_token(RefreshToken("t-1", "u-1", "login-1", 1e12))
    revocations = Revocations(store, recheck_s=1.0, clock=lambda: clock[0])
    ann = auth.Identity("u-1", "ann", "login-1")
    with pytest.raises(errors.Unauthenticated, match="revoked"):  # another user's login
        await revocations.check(auth.Identity("u-2", "bo", "login-1"))
    await revocations.check(ann)
    await store.revoke_family("login-1")  # by another replica, unheard here
    await revocations.check(ann)  # still cached as standing
    clock[0] = 1.0
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        await revocations.check(ann)


class _DownStore(InMemoryUserStore):
    """The database went away: every login check is Unavailable."""

    down = False

    async def login_live(self, family_id: str, user_id: str) -> bool:
        if self.down:
            raise errors.Unavailable("the database is unavailable; retry shortly")
        return await super().login_live(family_id, user_id)


async def test_while_the_database_is_down_a_recent_standing_answer_is_taken() -> None:
    clock = [0.0]
    store = _DownStore()
    await store.add_user(User("u-1", "ann", "ann@example.org", "x", "en", 0.0))
    await store.add_refresh_token(RefreshToken("t-1", "u-1", "login-1", 1e12))
    await store.add_user(User("u-2", "bo", "bo@example.org", "x", "en", 0.0))
    await store.add_refresh_token(RefreshToken("t-2", "u-2", "login-2", 1e12))
    revocations = Revocations(store, recheck_s=1.0, clock=lambda: clock[0])
    ann, bo = auth.Identity("u-1", "ann", "login-1"), auth.Identity("u-2", "bo", "login-2")
    await revocations.check(ann)
    store.down = True
    clock[0] = auth.STALE_WHILE_DOWN_S - 1  # past the recheck, within the stale bound
    await revocations.check(ann)
    with pytest.raises(errors.Unavailable):  # never seen standing: nothing to go on
        await revocations.check(bo)
    with pytest.raises(errors.Unavailable):  # another user's claim to ann's login
        await revocations.check(auth.Identity("u-2", "bo", "login-1"))
    clock[0] = auth.STALE_WHILE_DOWN_S + 1
    with pytest.raises(errors.Unavailable):  # too old to stand in
        await revocations.check(ann)
    store.down = False
    await store.revoke_family("login-1")
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        await revocations.check(ann)


async def _once_the_pool_reconnects(check: Callable[[], Awaitable[None]]) -> None:
    """psycopg_pool retries a lost server with exponential backoff (1, 2, 4 s ...), so the
    first checks after a restart may still be Unavailable; 30 s covers five retries."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            return await check()
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_gateway_whose_database_restarts_keeps_checked_logins(
        killable_database: tuple[Postgres, db.Database]) -> None:
    """PostgreSQL SIGKILLed: a login checked a moment ago still stands, one never seen
    gets UNAVAILABLE (not INTERNAL), and once it is back the checks go to it again."""
    postgres, database = killable_database
    store = PgUserStore(database)
    for n, name in enumerate(("ann", "bo")):
        await store.add_user(User(f"u-{n}", name, f"{name}@example.org", "x", "en", 0.0))
        await store.add_refresh_token(
            RefreshToken(f"t-{n}", f"u-{n}", f"login-{n}", time.time() + 3600))
    revocations = Revocations(store, recheck_s=0.0)
    ann, bo = auth.Identity("u-0", "ann", "login-0"), auth.Identity("u-1", "bo", "login-1")
    await revocations.check(ann)
    await postgres.kill()
    await revocations.check(ann)
    with pytest.raises(errors.Unavailable, match="database is unavailable"):
        await revocations.check(bo)
    await postgres.start()
    await _once_the_pool_reconnects(lambda: revocations.check(bo))
    await store.revoke_family("login-0")
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        await revocations.check(ann)
