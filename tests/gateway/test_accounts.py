"""The account and token logic under the AuthService, with a clock to move."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from dragoman import config, errors
from gateway.auth import AccessTokens, Accounts, Identity, Passwords
from gateway.store import PURGE_INTERVAL_S, InMemoryUserStore

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


@pytest.fixture
def store(clock: Clock) -> InMemoryUserStore:
    return InMemoryUserStore(clock)


@pytest.fixture
def accounts(clock: Clock, store: InMemoryUserStore, passwords: Passwords) -> Accounts:
    tokens = AccessTokens(KEY, ACCESS_TTL_S, clock)
    return Accounts(store, tokens, passwords, REFRESH_TTL_S, clock)


async def test_passwords_are_stored_as_argon2id(
    accounts: Accounts, store: InMemoryUserStore
) -> None:
    signed_in = await accounts.register("carol", "carol@example.org", "s3cret-enough", "fr")
    stored = await store.get_user(signed_in.user.user_id)
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert "s3cret-enough" not in stored.password_hash
    assert (await store.find_user("CAROL")) == stored


async def test_refresh_tokens_expire(accounts: Accounts, clock: Clock) -> None:
    signed_in = await accounts.register("dave", "dave@example.org", "s3cret-enough", "de")
    clock.now_s += REFRESH_TTL_S - 1
    renewed = await accounts.refresh(signed_in.tokens.refresh_token)
    assert renewed.refresh_expire_time_s == int(clock.now_s) + REFRESH_TTL_S
    clock.now_s += REFRESH_TTL_S
    with pytest.raises(errors.Unauthenticated, match="^refresh token expired$"):
        await accounts.refresh(renewed.refresh_token)


async def test_concurrent_use_of_one_refresh_token_lets_one_win(accounts: Accounts) -> None:
    signed_in = await accounts.register("erin", "erin@example.org", "s3cret-enough", "es")
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


async def test_expired_tokens_are_purged_from_memory(
    accounts: Accounts, store: InMemoryUserStore, clock: Clock
) -> None:
    signed_in = await accounts.register("fay", "fay@example.org", "s3cret-enough", "pt")
    clock.now_s += REFRESH_TTL_S + PURGE_INTERVAL_S
    await accounts.login("fay", "s3cret-enough")  # adds a token, which triggers the sweep
    with pytest.raises(errors.Unauthenticated, match="^invalid refresh token$"):
        await accounts.refresh(signed_in.tokens.refresh_token)


def test_access_tokens_carry_identity_and_expire() -> None:
    identity = Identity("u-7", "grace")
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
    token, _ = first.issue(Identity("u-1", "heidi"))
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
