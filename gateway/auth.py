"""Accounts and tokens: registration rules, password hashing, access tokens,
rotating refresh tokens.

Access tokens are HS256 JWTs (`sub` user id, `name` username, `sid` login,
`roles`, `iat`, `exp`, `jti`) checked on every proxied call. Refresh tokens are random
and opaque, stored as sha256 digests, single use: each exchange spends the
token and issues the next of its family (one family per login). Showing a
spent token again means it leaked, so the whole family is revoked. Each
family is a device (`ListDevices`): the name the client gave at sign-in, its
user agent, when it was last used and from which network (gateway.peers).

An access token works only while its login stands (`Revocations`): logout,
a leaked refresh token and account deletion revoke the login, and with it
every token it issued, access tokens included.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import argon2
import jwt

from dragoman import config, errors
from gateway.store import (
    ROLES,
    USER,
    Device,
    RefreshToken,
    Sighting,
    TokenState,
    User,
    UserData,
    UserStore,
)

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
AUTHORIZATION_HEADER = "authorization"
HASH_WORKERS = 2
"""Threads hashing passwords (argon2 releases the GIL)."""
MAX_PENDING_HASHES = 32
"""Hashes running or waiting; more get RESOURCE_EXHAUSTED."""

USERNAME = re.compile(r"[A-Za-z0-9._-]{3,32}")
# no control characters: a NUL cannot be stored (PostgreSQL text), the rest cannot be mailed
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
MAX_EMAIL_CHARS = 254
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS = 8, 128
MAX_DEVICE_NAME_CHARS = 64
MAX_USER_AGENT_CHARS = 256
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

WRONG_CREDENTIALS = "wrong username or password"
DISABLED = "this account is disabled by an administrator"
MISSING_TOKEN = "missing access token"
INVALID_TOKEN = "invalid access token"
EXPIRED_TOKEN = "access token expired"
REVOKED_TOKEN = ("access token revoked: its login ended (logout, device revoked or account "
                 "deleted); log in again")
REVOKED_REFRESH = ("refresh token revoked: this device was signed out (logout, RevokeDevice or a "
                   "reused token); log in again")
UNKNOWN_DEVICE = "no such device among yours"
STALE_WHILE_DOWN_S = 60.0
"""How old a cached "this login stands" may be and still be taken while the database
cannot be asked: no login can be revoked while it is down (revoking writes there),
so only a revocation this replica missed just before goes unseen that much longer."""
FRESH_SIGN_IN_S = 600
"""How recent the login of an account without a password (one a sign-in provider created)
must be for DeleteAccount: the sign-in at the provider stands for the password."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified access token speaks for."""

    user_id: str
    username: str
    login_id: str = ""
    """The login (refresh token family) the token belongs to; ending it revokes the token."""
    roles: tuple[str, ...] = (USER,)
    """The account's roles when the token was issued (gateway.store.ROLES)."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    access_expire_time_s: int
    refresh_token: str
    refresh_expire_time_s: int


@dataclass(frozen=True, slots=True)
class SignIn:
    """A user and fresh tokens, from Register or Login."""

    user: User
    tokens: TokenPair


def check_registration(username: str, email: str, password: str, language_code: str) -> None:
    """Raises InvalidArgument naming every field that breaks the rules."""
    problems = []
    if not USERNAME.fullmatch(username):
        problems.append("username must be 3 to 32 letters, digits, '.', '_' or '-'")
    if len(email) > MAX_EMAIL_CHARS or not EMAIL.fullmatch(email):
        problems.append("email must be an address like name@example.com")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        problems.append(
            f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )
    if not LANGUAGE_CODE.fullmatch(language_code):
        problems.append("preferred_language_code must be a BCP-47 code such as 'en' or 'pt-BR'")
    if problems:
        raise errors.InvalidArgument("; ".join(problems))


def check_device_name(name: str) -> None:
    if len(name) > MAX_DEVICE_NAME_CHARS or CONTROL.search(name):
        raise errors.InvalidArgument(
            f"device_name must be at most {MAX_DEVICE_NAME_CHARS} characters, none of them "
            "control characters")


def user_agent(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The call's `user-agent`, without control characters and cut to
    MAX_USER_AGENT_CHARS: the client sends it, so it is shown, never trusted."""
    value = next((v for k, v in metadata if k == "user-agent" and isinstance(v, str)), "")
    return CONTROL.sub("", value)[:MAX_USER_AGENT_CHARS]


class Passwords:
    """argon2id hashing off the event loop, in a small dedicated pool."""

    def __init__(
        self,
        hasher: argon2.PasswordHasher | None = None,
        workers: int = HASH_WORKERS,
        max_pending: int = MAX_PENDING_HASHES,
    ) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._max_pending = max_pending
        self._pending = 0
        self._dummy_hash = ""

    async def warm_up(self) -> None:
        """Prepares the hash that unknown usernames are checked against."""
        if not self._dummy_hash:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches. With no hash (no such user) a dummy is
        checked, so the answer takes as long and tells nothing."""
        await self.warm_up()
        try:
            await self._run(self._hasher.verify, password_hash or self._dummy_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        return password_hash is not None

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        if self._pending >= self._max_pending:
            raise errors.ResourceExhausted("too many sign-ins in progress; retry shortly")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1


class AccessTokens:
    """Issues and verifies the short-lived JWT access tokens."""

    def __init__(
        self, key: str | bytes, ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_settings(cls, auth: config.AuthSettings) -> AccessTokens:
        if not auth.jwt_secret:
            log.warning(
                "auth.jwt_secret is empty: signing access tokens with a random key that dies "
                "with this process (development only; set DRAGOMAN_AUTH_JWT_SECRET)"
            )
            return cls(secrets.token_bytes(MIN_SECRET_BYTES), auth.access_token_ttl_s)
        if len(auth.jwt_secret.encode()) < MIN_SECRET_BYTES:
            log.warning("auth.jwt_secret is shorter than %d bytes: use a long random secret",
                        MIN_SECRET_BYTES)
        return cls(auth.jwt_secret, auth.access_token_ttl_s)

    def issue(self, identity: Identity) -> tuple[str, int]:
        """A token for `identity` and its expiry (Unix seconds)."""
        now = int(self._clock())
        expire_time_s = now + self._ttl_s
        claims = {
            "sub": identity.user_id,
            "name": identity.username,
            "sid": identity.login_id,  # OpenID Connect's session id: here, the login
            "roles": list(identity.roles),
            "iat": now,
            "exp": expire_time_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expire_time_s

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM],
                options={"require": ["sub", "name", "sid", "iat", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise errors.Unauthenticated(EXPIRED_TOKEN) from None
        except jwt.InvalidTokenError:
            raise errors.Unauthenticated(INVALID_TOKEN) from None
        user_id, username, login_id = claims["sub"], claims["name"], claims["sid"]
        if not all(isinstance(v, str) and v for v in (user_id, username, login_id)):
            raise errors.Unauthenticated(INVALID_TOKEN)
        roles = claims.get("roles", [USER])  # tokens issued before roles have none: users
        if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLES):
            raise errors.Unauthenticated(INVALID_TOKEN)
        return Identity(user_id, username, login_id, tuple(roles))

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Identity:
        """The caller of a call with this metadata (`authorization: Bearer <jwt>`)."""
        values = [value for key, value in metadata if key == AUTHORIZATION_HEADER]
        if not values:
            raise errors.Unauthenticated(MISSING_TOKEN)
        if len(values) > 1 or not isinstance(values[0], str):
            raise errors.Unauthenticated(INVALID_TOKEN)
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            raise errors.Unauthenticated(INVALID_TOKEN)
        if not token.strip():
            raise errors.Unauthenticated(MISSING_TOKEN)
        return self.verify(token.strip())


class Revocations:
    """Whether the login of an access token still stands, asked of the store
    (one primary-key read) and remembered: a live login for `recheck_s`, one
    revoked here or by another replica for good. What this process revokes it forgets at once, so
    here a token stops working on the next call; what other gateway replicas
    revoke it hears from PostgreSQL (PgUserStore.watch_revocations) and, should
    that connection be down, sees within `recheck_s` (auth.revocation_recheck_ms).
    Cost per call: bench/results/revocation.md."""

    def __init__(self, store: UserStore, recheck_s: float, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._recheck_s = recheck_s
        self._max_entries = max_entries
        self._clock = clock
        self._live: dict[str, tuple[str, float]] = {}
        """login id -> (user id, when the store last said it stands)"""
        self._revoked: dict[str, None] = {}

    async def check(self, identity: Identity) -> None:
        """Raises Unauthenticated when the login of `identity` was revoked."""
        login_id = identity.login_id
        if login_id in self._revoked:
            raise errors.Unauthenticated(REVOKED_TOKEN)
        now = self._clock()
        live = self._live.get(login_id)
        age = now - live[1] if live is not None and live[0] == identity.user_id else math.inf
        if age < self._recheck_s:
            return
        try:
            standing = await self._store.login_live(login_id, identity.user_id)
        except errors.Unavailable:
            if age < STALE_WHILE_DOWN_S:
                return  # a conversation resuming needs no database (bench/results/chaos.md)
            raise
        if not standing:
            self._live.pop(login_id, None)
            raise errors.Unauthenticated(REVOKED_TOKEN)
        self._live.pop(login_id, None)  # re-inserted last: the oldest go first
        self._live[login_id] = (identity.user_id, now)
        if len(self._live) > self._max_entries:
            del self._live[next(iter(self._live))]

    def revoked(self, login_id: str) -> None:
        """Called when a login is revoked, here or (notified) elsewhere."""
        self._live.pop(login_id, None)
        self._revoked[login_id] = None
        if len(self._revoked) > self._max_entries:
            del self._revoked[next(iter(self._revoked))]

    def user_deleted(self, user_id: str) -> None:
        for login_id, (owner, _) in list(self._live.items()):
            if owner == user_id:
                self.revoked(login_id)


class Authenticator:
    """The caller of a call: a valid access token whose login stands."""

    def __init__(self, tokens: AccessTokens, revocations: Revocations) -> None:
        self._tokens = tokens
        self._revocations = revocations

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Identity:
        identity = self._tokens.authenticate(metadata)
        await self._revocations.check(identity)
        return identity


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


class Accounts:
    """Register, Login, RefreshToken, Logout, DeleteAccount and ExportMyData,
    over a `UserStore`."""

    def __init__(
        self,
        store: UserStore,
        tokens: AccessTokens,
        passwords: Passwords,
        refresh_ttl_s: int,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._passwords = passwords
        self._refresh_ttl_s = refresh_ttl_s
        self._clock = clock
        self.revocations = revocations or Revocations(store, recheck_s=0.0)

    async def register(
        self, username: str, email: str, password: str, preferred_language_code: str,
        seen: Sighting | None = None,
    ) -> SignIn:
        """`seen`: the device signing in (default: none named, now)."""
        check_registration(username, email, password, preferred_language_code)
        user = User(
            user_id=uuid.uuid4().hex,
            username=username,
            email=email,
            password_hash=await self._passwords.hash(password),
            preferred_language_code=preferred_language_code,
            create_time_s=self._clock(),
        )
        await self._store.add_user(user)
        log.info("user registered", extra={"user_id": user.user_id})
        return SignIn(user, await self._issue(user, uuid.uuid4().hex, seen))

    async def login(self, username: str, password: str, seen: Sighting | None = None) -> SignIn:
        # a name Register would refuse cannot exist (nor can the store take every string:
        # PostgreSQL text holds no NUL)
        user = await self._store.find_user(username) if USERNAME.fullmatch(username) else None
        matches = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not matches:
            raise errors.Unauthenticated(WRONG_CREDENTIALS)
        if user.disabled:  # told only to who knows the password
            raise errors.PermissionDenied(DISABLED)
        log.info("user logged in", extra={"user_id": user.user_id})
        return SignIn(user, await self._issue(user, uuid.uuid4().hex, seen))

    async def sign_in(self, user: User, seen: Sighting | None = None) -> SignIn:
        """A new login of `user`, whom something else authenticated (gateway.oidc)."""
        if user.disabled:
            raise errors.PermissionDenied(DISABLED)
        log.info("user signed in", extra={"user_id": user.user_id})
        return SignIn(user, await self._issue(user, uuid.uuid4().hex, seen))

    async def password_matches(self, user: User | None, password: str) -> bool:
        """Whether `password` is `user`'s, taking as long when there is no user or
        the account has no password (one created by a sign-in provider)."""
        return await self._passwords.verify(user.password_hash if user else None, password)

    async def refresh(self, refresh_token: str, seen: Sighting | None = None) -> TokenPair:
        """Spends `refresh_token` and issues the next pair of its family,
        recording the device as `seen` now."""
        token, state = await self._lookup(refresh_token)
        if state is TokenState.REVOKED:
            log.warning("refresh from a revoked device refused",
                        extra={"user_id": token.user_id, "device_id": token.family_id})
            raise errors.Unauthenticated(REVOKED_REFRESH)
        if token.expire_time_s <= self._clock():
            raise errors.Unauthenticated("refresh token expired")
        if state is TokenState.SPENT or not await self._store.spend_refresh_token(token.token_hash):
            await self._revoke(token.family_id)
            log.warning("spent refresh token shown again: login revoked",
                        extra={"user_id": token.user_id})
            raise errors.Unauthenticated(
                "refresh token already used: every token of this login is revoked"
            )
        user = await self._store.get_user(token.user_id)
        if user is None:
            await self._revoke(token.family_id)
            raise errors.Unauthenticated("invalid refresh token")
        if user.disabled:
            await self._revoke(token.family_id)
            raise errors.PermissionDenied(DISABLED)
        return await self._issue(user, token.family_id, seen)

    async def logout(self, refresh_token: str) -> None:
        """Revokes the login `refresh_token` belongs to. Unknown tokens are
        accepted silently (RFC 7009): there is nothing left to revoke."""
        try:
            token, _ = await self._lookup(refresh_token)
        except errors.Unauthenticated:
            return
        await self._revoke(token.family_id)
        log.info("user logged out", extra={"user_id": token.user_id})

    async def delete_account(
        self, identity: Identity, password: str, session_data: Callable[[], Awaitable[_T]],
    ) -> _T:
        """Deletes the caller's account once the password matches and
        `session_data` (ending their live sessions and deleting what session_svc
        keeps of them) has succeeded; returns what it returned. When it fails,
        the account stays, so that asking again finishes the deletion."""
        user = await self._store.get_user(identity.user_id)
        if user is not None and not user.password_hash:
            await self._check_fresh_login(identity)
        elif not await self._passwords.verify(user.password_hash if user else None, password):
            raise errors.Unauthenticated("wrong password")
        return await self.erase(identity, session_data)

    async def erase(self, identity: Identity, session_data: Callable[[], Awaitable[_T]],
                    keep_an_admin: bool = False) -> _T:
        """Deletes the account, with no password (AdminService.DeleteUser; DeleteAccount
        once it checked one), after `session_data` succeeded; returns what it returned.
        `keep_an_admin`: as UserStore.delete_user."""
        deleted = await session_data()
        await self._store.delete_user(identity.user_id, keep_an_admin)
        self.revocations.user_deleted(identity.user_id)
        log.info("account deleted", extra={"user_id": identity.user_id})
        return deleted

    async def _check_fresh_login(self, identity: Identity) -> None:
        devices = await self._store.list_devices(identity.user_id)
        login = next((d for d in devices if d.device_id == identity.login_id), None)
        if login is None or self._clock() - login.first_seen_s > FRESH_SIGN_IN_S:
            raise errors.Unauthenticated(
                f"this account has no password: sign in with your provider again and delete it "
                f"within {FRESH_SIGN_IN_S // 60} minutes")

    async def export(self, identity: Identity) -> UserData:
        data = await self._store.export_user(identity.user_id)
        if data is None:
            raise errors.NotFound("the account no longer exists")
        return data

    def now(self) -> float:
        return self._clock()

    async def devices(self, identity: Identity) -> list[Device]:
        return await self._store.list_devices(identity.user_id)

    async def revoke_device(self, identity: Identity, device_id: str) -> None:
        """Signs out one of the caller's devices, its access tokens included.
        NotFound for another user's device, so that ids reveal nothing."""
        if not device_id:
            raise errors.InvalidArgument("device_id is required")
        if not await self._store.revoke_device(identity.user_id, device_id):
            raise errors.NotFound(UNKNOWN_DEVICE)
        self.revocations.revoked(device_id)
        log.info("device revoked", extra={"user_id": identity.user_id, "device_id": device_id})

    async def _revoke(self, family_id: str) -> None:
        await self._store.revoke_family(family_id)
        self.revocations.revoked(family_id)

    async def _lookup(self, refresh_token: str) -> tuple[RefreshToken, TokenState]:
        if not refresh_token:
            raise errors.InvalidArgument("refresh_token is required")
        found = await self._store.get_refresh_token(_digest(refresh_token))
        if found is None:
            raise errors.Unauthenticated("invalid refresh token")
        return found

    async def _issue(self, user: User, family_id: str, seen: Sighting | None) -> TokenPair:
        access_token, access_expire_time_s = self._tokens.issue(
            Identity(user.user_id, user.username, family_id, user.roles)
        )
        refresh_token = secrets.token_urlsafe(32)
        refresh_expire_time_s = int(self._clock()) + self._refresh_ttl_s
        await self._store.add_refresh_token(RefreshToken(
            token_hash=_digest(refresh_token),
            user_id=user.user_id,
            family_id=family_id,
            expire_time_s=refresh_expire_time_s,
        ), seen or Sighting(self._clock()))
        return TokenPair(access_token, access_expire_time_s, refresh_token, refresh_expire_time_s)
