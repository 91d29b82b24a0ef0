"""The account and token logic under the AuthService, with a clock to move,
over each `UserStore`: in memory and in PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

import jwt
import pytest

from dragoman import config, db, errors
from gateway.auth import FRESH_SIGN_IN_S, AccessTokens, Accounts, Identity, Passwords
from gateway.pgstore import PgUserStore
from gateway.store import PURGE_INTERVAL_S, InMemoryUserStore, ProviderIdentity, User, UserStore

KEY = "accounts-tests-secret-of-at-least-32-bytes"
ACCESS_TTL_S = 900
REFRESH_TTL_S = 7 * 24 * 3600


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(scope="module")
async def passwords() -> AsyncIterator[Passwords]:
    hashing = Passwords()
    yield hashing
    await hashing.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
async def database(settings: config.Settings) -> AsyncIterator[db.Database]:
    database = await db.open_database(settings.database)
    yield database
    await database.close()


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest, clock: Clock, database: db.Database) -> UserStore:
    if request.param == "memory":
        return InMemoryUserStore(clock)
    return PgUserStore(database, clock)


def name(base: str, store: UserStore) -> str:
    """One name per store (the PostgreSQL schema outlives a test)."""
    return f"{base}-{type(store).__name__[:2].lower()}"


@pytest.fixture
def accounts(clock: Clock, store: UserStore, passwords: Passwords) -> Accounts:
    tokens = AccessTokens(KEY, ACCESS_TTL_S, clock)
    return Accounts(store, tokens, passwords, REFRESH_TTL_S, clock)


async def register(accounts: Accounts, store: UserStore, base: str, language: str = "en") -> object:
    username = name(base, store)
    return await accounts.register(username, f"{username}@example.org", "s3cret-enough", language)


async def test_passwords_are_stored_as_argon2id(accounts: Accounts, store: UserStore) -> None:
    signed_in = await register(accounts, store, "carol", "fr")
    stored = await store.get_user(signed_in.user.user_id)  # type: ignore[attr-defined]
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert "s3cret-enough" not in stored.password_hash
    assert (await store.find_user(name("CAROL", store).upper())) == stored
    assert await store.find_user("nobody-at-all") is None


async def test_taken_names_and_addresses_already_exist(accounts: Accounts, store: UserStore) -> None:
    await register(accounts, store, "olga")
    username = name("olga", store)
    with pytest.raises(errors.AlreadyExists, match="username .* is taken"):
        await accounts.register(username.upper(), "else@example.org", "s3cret-enough", "en")
    with pytest.raises(errors.AlreadyExists, match="email address is already registered"):
        await accounts.register(name("olga2", store), f"{username}@EXAMPLE.org", "s3cret-enough", "en")


async def test_refresh_tokens_expire(accounts: Accounts, store: UserStore, clock: Clock) -> None:
    signed_in = await register(accounts, store, "dave", "de")
    clock.now_s += REFRESH_TTL_S - 1
    renewed = await accounts.refresh(signed_in.tokens.refresh_token)
    assert renewed.refresh_expire_time_s == int(clock.now_s) + REFRESH_TTL_S
    clock.now_s += REFRESH_TTL_S
    with pytest.raises(errors.Unauthenticated, match="^refresh token expired$"):
        await accounts.refresh(renewed.refresh_token)


async def test_concurrent_use_of_one_refresh_token_lets_one_win(
    accounts: Accounts, store: UserStore
) -> None:
    signed_in = await register(accounts, store, "erin", "es")
    results = await asyncio.gather(
        accounts.refresh(signed_in.tokens.refresh_token),
        accounts.refresh(signed_in.tokens.refresh_token),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, errors.Unauthenticated)]
    assert len(winners) == 1 and len(losers) == 1
    assert "already used" in losers[0].message
    # the reuse revoked the family, the winner's new token included
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        await accounts.refresh(winners[0].refresh_token)


async def test_expired_tokens_are_purged(accounts: Accounts, store: UserStore, clock: Clock) -> None:
    signed_in = await register(accounts, store, "fay", "pt")
    clock.now_s += REFRESH_TTL_S + PURGE_INTERVAL_S
    await accounts.login(name("fay", store), "s3cret-enough")  # adds a token: triggers the sweep
    with pytest.raises(errors.Unauthenticated, match="^invalid refresh token$"):
        await accounts.refresh(signed_in.tokens.refresh_token)
    data = await store.export_user(signed_in.user.user_id)
    assert data is not None and len(data.logins) == 1  # the expired login went with its tokens


async def test_reuse_revokes_the_family_and_logout_revokes_later_tokens(
    accounts: Accounts, store: UserStore
) -> None:
    signed_in = await register(accounts, store, "gus")
    second = await accounts.refresh(signed_in.tokens.refresh_token)
    with pytest.raises(errors.Unauthenticated, match="already used"):
        await accounts.refresh(signed_in.tokens.refresh_token)
    with pytest.raises(errors.Unauthenticated, match="^refresh token revoked: this device was signed out"):
        await accounts.refresh(second.refresh_token)
    other = await accounts.login(name("gus", store), "s3cret-enough")
    await accounts.logout(other.tokens.refresh_token)
    with pytest.raises(errors.Unauthenticated, match="^refresh token revoked: this device was signed out"):
        await accounts.refresh(other.tokens.refresh_token)
    data = await store.export_user(signed_in.user.user_id)
    assert data is not None and [login.revoked for login in data.logins] == [True, True]


async def test_deleting_an_account_needs_its_password_and_its_session_data_gone_first(
    accounts: Accounts, store: UserStore
) -> None:
    signed_in = await register(accounts, store, "hal")
    me = Identity(signed_in.user.user_id, signed_in.user.username)
    ran: list[str] = []

    async def session_data() -> str:
        ran.append("session data deleted")
        if len(ran) == 1:
            raise errors.Unavailable("session service is unavailable")
        return "what session_svc deleted"

    with pytest.raises(errors.Unauthenticated, match="^wrong password$"):
        await accounts.delete_account(me, "not-the-password", session_data)
    assert ran == [] and await store.get_user(me.user_id) is not None
    # session_svc's part failed: the account stays, so that a retry can finish
    with pytest.raises(errors.Unavailable):
        await accounts.delete_account(me, "s3cret-enough", session_data)
    assert await store.get_user(me.user_id) is not None
    assert await accounts.delete_account(me, "s3cret-enough", session_data) \
        == "what session_svc deleted"
    assert ran == ["session data deleted"] * 2
    assert await store.get_user(me.user_id) is None
    assert await store.get_refresh_token(
        hashlib.sha256(signed_in.tokens.refresh_token.encode()).hexdigest()) is None
    with pytest.raises(errors.NotFound):
        await accounts.export(me)
    # the name is free again
    await register(accounts, store, "hal")


def test_access_tokens_carry_identity_and_expire() -> None:
    identity = Identity("u-7", "grace", "login-1")
    tokens = AccessTokens(KEY, ACCESS_TTL_S)
    token, _ = tokens.issue(identity)
    assert tokens.verify(token) == identity
    assert tokens.authenticate([("authorization", f"bearer {token}")]) == identity

    stale, _ = AccessTokens(KEY, -5).issue(identity)
    with pytest.raises(errors.Unauthenticated, match="^access token expired$"):
        tokens.verify(stale)
    with pytest.raises(errors.Unauthenticated, match="^invalid access token$"):
        tokens.authenticate([("authorization", f"Bearer {token}"), ("authorization", "x")])


def test_an_empty_secret_gives_a_random_key_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        first = AccessTokens.from_settings(config.AuthSettings(jwt_secret=""))
        second = AccessTokens.from_settings(config.AuthSettings(jwt_secret=""))
    assert "jwt_secret is empty" in caplog.text
    token, _ = first.issue(Identity("u-1", "heidi", "login-1"))
    assert first.verify(token).user_id == "u-1"
    with pytest.raises(errors.Unauthenticated, match="^invalid access token$"):
        second.verify(token)


async def test_hashing_beyond_the_queue_is_resource_exhausted() -> None:
    hashing = Passwords(workers=1, max_pending=1)
    try:
        first = asyncio.ensure_future(hashing.hash("one password"))
        await asyncio.sleep(0)
        with pytest.raises(errors.ResourceExhausted, match="too many sign-ins"):
            await hashing.hash("another one")
        assert (await first).startswith("$argon2id$")
    finally:
        await hashing.close()


async def test_admins_are_made_and_unmade_but_the_last_one_stays(
    accounts: Accounts, store: UserStore
) -> None:
    first = (await register(accounts, store, "root1")).user  # type: ignore[attr-defined]
    second = (await register(accounts, store, "root2")).user  # type: ignore[attr-defined]
    assert first.roles == ("user",)
    assert (await store.set_admin(first.username.upper(), admin=True)).roles == ("user", "admin")
    assert (await store.get_user(first.user_id)).roles == ("user", "admin")  # type: ignore[union-attr]
    with pytest.raises(errors.FailedPrecondition, match="cannot remove the last admin"):
        await store.set_admin(first.username, admin=False)
    await store.set_admin(second.username, admin=True)
    assert [u.username for u in await store.list_admins()] == [first.username, second.username]
    await store.set_admin(first.username, admin=False)
    assert [u.user_id for u in await store.list_admins()] == [second.user_id]
    with pytest.raises(errors.FailedPrecondition, match="cannot remove the last admin"):
        await store.set_admin(second.username, admin=False)
    with pytest.raises(errors.NotFound, match="no account named 'nobody-here'"):
        await store.set_admin("nobody-here", admin=True)
    # the role reaches the access token of the next sign-in
    signed_in = await accounts.login(second.username, "s3cret-enough")
    claims = jwt.decode(signed_in.tokens.access_token, KEY, algorithms=["HS256"],
                        options={"verify_exp": False})  # issued at the test's clock
    assert claims["roles"] == ["user", "admin"]
    await store.set_admin(first.username, admin=True)  # leave the next run a spare admin
    await store.set_admin(second.username, admin=False)


def test_roles_in_access_tokens_are_checked() -> None:
    tokens = AccessTokens(KEY, ACCESS_TTL_S)
    token, _ = tokens.issue(Identity("u-1", "ivy", "login-1"))
    assert tokens.verify(token).roles == ("user",)
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["roles"] == ["user"]
    for roles in (["root"], "admin", []):
        forged = jwt.encode({**claims, "roles": roles}, KEY, algorithm="HS256")
        with pytest.raises(errors.Unauthenticated, match="invalid access token"):
            tokens.verify(forged)
    del claims["roles"]  # issued before roles: a user
    assert tokens.verify(jwt.encode(claims, KEY, algorithm="HS256")).roles == ("user",)


async def test_an_account_without_a_password_is_deleted_only_on_a_fresh_sign_in(
    accounts: Accounts, store: UserStore, clock: Clock
) -> None:
    username = name(f"provided-{uuid.uuid4().hex[:6]}", store)
    user = User(uuid.uuid4().hex, username, f"{username}@example.org", "", "en", clock())
    await store.link_identity(ProviderIdentity("https://id.example.com", username), user.user_id,
                              new_user=user)

    async def session_data() -> str:
        return "what session_svc deleted"

    async def signed_in() -> Identity:
        claims = jwt.decode((await accounts.sign_in(user)).tokens.access_token, KEY,
                            algorithms=["HS256"], options={"verify_exp": False})
        return Identity(user.user_id, username, claims["sid"])

    old = await signed_in()
    clock.now_s += FRESH_SIGN_IN_S + 1
    for password in ("", "any password at all"):
        with pytest.raises(errors.Unauthenticated, match="sign in with your provider again"):
            await accounts.delete_account(old, password, session_data)
    assert await store.get_user(user.user_id) is not None
    fresh = await signed_in()
    assert await accounts.delete_account(fresh, "", session_data) == "what session_svc deleted"
    assert await store.get_user(user.user_id) is None
