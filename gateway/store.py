"""Where accounts and refresh tokens live.

`UserStore` is the one storage interface of the gateway. `PgUserStore`
(gateway.pgstore) keeps it in PostgreSQL, the default; `InMemoryUserStore`
serves unit tests. Each method is one statement or transaction, and the
ones documented as atomic are so (`spend_refresh_token` is
`UPDATE ... WHERE spent_at IS NULL ... RETURNING` in PostgreSQL).

Refresh tokens are stored only as digests: whoever reads the store cannot
use them.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dragoman import errors

PURGE_INTERVAL_S = 60.0
"""How often the in-memory store drops expired refresh tokens."""
USER, ADMIN = "user", "admin"
ROLES = (USER, ADMIN)
"""Every account has USER; ADMIN is granted only server-side (`dragoman admin`)."""
LAST_ADMIN = "cannot remove the last admin: make another admin first"
LAST_ENABLED_ADMIN = "cannot disable the last enabled admin: make or enable another admin first"


@dataclass(frozen=True, slots=True)
class User:
    """An account."""

    user_id: str
    username: str
    """As registered; unique regardless of case."""
    email: str
    """As registered; unique regardless of case."""
    password_hash: str
    """argon2id, in the PHC string format."""
    preferred_language_code: str
    create_time_s: float
    roles: tuple[str, ...] = (USER,)
    disabled: bool = False
    """Set by an admin (AdminService.DisableUser): no login or refresh while set."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a sign-in or refresh call showed of the device making it."""

    time_s: float
    user_agent: str = ""
    coarse_ip: str = ""
    """The client's network (gateway.peers.coarse_network), never its address."""
    device_name: str = ""
    """Given by the client at sign-in; a refresh gives none and keeps the name."""


@dataclass(frozen=True, slots=True)
class Device:
    """A login (refresh token family) as its user sees it."""

    device_id: str
    """The family id."""
    name: str
    user_agent: str
    coarse_ip: str
    """Where it was last seen from."""
    first_seen_s: float
    last_seen_s: float


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """One issued refresh token. A family is one login: each rotation adds a
    token to the family of the one it replaces."""

    token_hash: str
    """sha256 hex digest of the opaque token."""
    user_id: str
    family_id: str
    expire_time_s: float


@dataclass(frozen=True, slots=True)
class Login:
    """One login (refresh token family), as exported."""

    create_time_s: float
    expire_time_s: float
    """Expiry of its newest token."""
    revoked: bool
    device: Device | None = None


@dataclass(frozen=True, slots=True)
class UserData:
    """What the gateway stores about a user (ExportMyData adds what session_svc keeps)."""

    user: User
    logins: list[Login]


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """Who an OpenID Connect provider says signed in."""

    issuer: str
    subject: str


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """An OpenID Connect sign-in begun and not yet finished (gateway.oidc)."""

    provider: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    expire_time_s: float
    link_user_id: str = ""
    """Set once the provider vouched for `link`: the existing account it would
    link to, waiting for that account's password."""
    link: ProviderIdentity | None = None


class TokenState(enum.Enum):
    LIVE = "live"
    """Usable once."""
    SPENT = "spent"
    """Already exchanged; showing it again means it leaked."""
    REVOKED = "revoked"
    """Its family was revoked (logout or detected reuse)."""


class UserStore(Protocol):
    """Accounts and refresh tokens."""

    async def add_user(self, user: User) -> None:
        """Adds an account; a taken username or email raises errors.AlreadyExists."""
        ...

    async def find_user(self, username: str) -> User | None:
        """The account with this username, compared without regard to case."""
        ...

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        ...

    async def add_refresh_token(self, token: RefreshToken, seen: Sighting | None = None) -> None:
        """Records a newly issued, live refresh token, and its family's device
        as `seen` (default: nothing but the time, now): the first token of a
        family creates the device, a later one updates when and where it was
        last seen (and the user agent, if given)."""
        ...

    async def get_refresh_token(self, token_hash: str) -> tuple[RefreshToken, TokenState] | None:
        """The token with this digest and its state; None when unknown or purged."""
        ...

    async def spend_refresh_token(self, token_hash: str) -> bool:
        """Atomically marks a live token spent. False when it was not live, so of
        two concurrent uses of one token exactly one wins."""
        ...

    async def revoke_family(self, family_id: str) -> None:
        """Revokes every token of a family, present and future."""
        ...

    async def login_live(self, family_id: str, user_id: str) -> bool:
        """Whether the login (family) of `user_id` exists and is not revoked."""
        ...

    async def list_devices(self, user_id: str) -> list[Device]:
        """The standing (not revoked) logins of `user_id`, last seen first."""
        ...

    async def revoke_device(self, user_id: str, family_id: str) -> bool:
        """Revokes the standing login `family_id` if it is `user_id`'s; False
        (nothing done) when it is someone else's, unknown or already revoked."""
        ...

    async def set_admin(self, username: str, admin: bool) -> User:
        """Grants or removes the admin role of the account `username`, atomically
        refusing (FailedPrecondition, LAST_ADMIN) to remove the last admin.
        NotFound when there is no such account."""
        ...

    async def list_admins(self) -> list[User]:
        """Accounts with the admin role, by username."""
        ...

    async def search_users(self, query: str, limit: int) -> list[User]:
        """Up to `limit` accounts whose username or email contains `query`
        (case-insensitive), by username."""
        ...

    async def set_disabled(self, user_id: str, disabled: bool) -> User | None:
        """Disables (revoking every login) or enables the account; None when there
        is none. FailedPrecondition when disabling the last enabled admin."""
        ...

    async def delete_user(self, user_id: str, keep_an_admin: bool = False) -> None:
        """Deletes the account with its tokens, atomically (session data is
        session_svc's to delete). With `keep_an_admin`, FailedPrecondition
        (LAST_ADMIN) instead when it is an admin and no other enabled admin
        would remain, checked in the same transaction as set_disabled's check."""
        ...

    async def export_user(self, user_id: str) -> UserData | None:
        """The account and its logins; None when there is no such user."""
        ...

    async def find_user_by_email(self, email: str) -> User | None:
        """The account with this email, compared without regard to case."""
        ...

    async def find_identity(self, identity: ProviderIdentity) -> User | None:
        """The account linked to this provider identity."""
        ...

    async def link_identity(self, identity: ProviderIdentity, user_id: str,
                            new_user: User | None = None) -> None:
        """Links `identity` to the account `user_id`, first adding `new_user` (whose id
        it is) when given, atomically; a taken username or email raises
        errors.AlreadyExists, an identity linked already errors.Aborted."""
        ...

    async def add_signin(self, state_hash: str, pending: PendingSignIn) -> None:
        """Records a sign-in begun, by the digest of its state."""
        ...

    async def take_signin(self, state_hash: str) -> PendingSignIn | None:
        """Removes and returns the sign-in with this state digest, atomically (of two
        concurrent takes one gets it); None when unknown, taken or expired."""
        ...


class InMemoryUserStore:
    """A `UserStore` in process memory: lost on restart, one process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._users: dict[str, User] = {}
        self._by_username: dict[str, str] = {}
        self._by_email: dict[str, str] = {}
        self._tokens: dict[str, RefreshToken] = {}
        self._spent: set[str] = set()
        self._families: dict[str, set[str]] = {}
        self._revoked: set[str] = set()
        self._devices: dict[str, Device] = {}
        """family id -> its device"""
        self._identities: dict[ProviderIdentity, str] = {}
        """provider identity -> user id"""
        self._signins: dict[str, PendingSignIn] = {}
        self._last_purge_s = clock()

    async def add_user(self, user: User) -> None:
        username, email = user.username.casefold(), user.email.casefold()
        if username in self._by_username:
            raise errors.AlreadyExists(f"username {user.username!r} is taken")
        if email in self._by_email:
            raise errors.AlreadyExists("email address is already registered")
        self._users[user.user_id] = user
        self._by_username[username] = user.user_id
        self._by_email[email] = user.user_id

    async def find_user(self, username: str) -> User | None:
        user_id = self._by_username.get(username.casefold())
        return None if user_id is None else self._users[user_id]

    async def get_user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    async def add_refresh_token(self, token: RefreshToken, seen: Sighting | None = None) -> None:
        seen = seen or Sighting(self._clock())
        self._purge_expired()
        self._tokens[token.token_hash] = token
        self._families.setdefault(token.family_id, set()).add(token.token_hash)
        device = self._devices.get(token.family_id)
        if device is None:
            self._devices[token.family_id] = Device(
                token.family_id, seen.device_name, seen.user_agent, seen.coarse_ip,
                seen.time_s, seen.time_s)
        else:
            self._devices[token.family_id] = dataclasses.replace(
                device, user_agent=seen.user_agent or device.user_agent,
                coarse_ip=seen.coarse_ip, last_seen_s=seen.time_s)

    async def get_refresh_token(self, token_hash: str) -> tuple[RefreshToken, TokenState] | None:
        token = self._tokens.get(token_hash)
        if token is None:
            return None
        return token, self._state(token)

    async def spend_refresh_token(self, token_hash: str) -> bool:
        token = self._tokens.get(token_hash)
        if token is None or self._state(token) is not TokenState.LIVE:
            return False
        self._spent.add(token_hash)
        return True

    async def revoke_family(self, family_id: str) -> None:
        if family_id in self._families:
            self._revoked.add(family_id)

    async def login_live(self, family_id: str, user_id: str) -> bool:
        tokens = self._families.get(family_id, ())
        return family_id not in self._revoked and any(
            self._tokens[t].user_id == user_id for t in tokens)

    async def list_devices(self, user_id: str) -> list[Device]:
        return sorted((self._devices[f] for f in self._families
                       if f not in self._revoked and self._owner(f) == user_id),
                      key=lambda d: d.last_seen_s, reverse=True)

    async def revoke_device(self, user_id: str, family_id: str) -> bool:
        if family_id not in self._families or family_id in self._revoked \
                or self._owner(family_id) != user_id:
            return False
        self._revoked.add(family_id)
        return True

    async def set_admin(self, username: str, admin: bool) -> User:
        user = await self.find_user(username)
        if user is None:
            raise errors.NotFound(f"no account named {username!r}")
        if not admin and ADMIN in user.roles and len(await self.list_admins()) == 1:
            raise errors.FailedPrecondition(LAST_ADMIN)
        roles = (USER, ADMIN) if admin else (USER,)
        self._users[user.user_id] = user = dataclasses.replace(user, roles=roles)
        return user

    async def list_admins(self) -> list[User]:
        return sorted((u for u in self._users.values() if ADMIN in u.roles),
                      key=lambda u: u.username.casefold())

    async def search_users(self, query: str, limit: int) -> list[User]:
        needle = query.casefold()
        found = (u for u in self._users.values()
                 if needle in u.username.casefold() or needle in u.email.casefold())
        return sorted(found, key=lambda u: u.username.casefold())[:limit]

    async def set_disabled(self, user_id: str, disabled: bool) -> User | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        if disabled and ADMIN in user.roles and not user.disabled \
                and not self._another_enabled_admin(user_id):
            raise errors.FailedPrecondition(LAST_ENABLED_ADMIN)
        if disabled:
            self._revoked.update(f for f in self._families if self._owner(f) == user_id)
        self._users[user_id] = user = dataclasses.replace(user, disabled=disabled)
        return user

    def _another_enabled_admin(self, user_id: str) -> bool:
        return any(ADMIN in u.roles and not u.disabled and u.user_id != user_id
                   for u in self._users.values())

    def _owner(self, family_id: str) -> str:
        return self._tokens[next(iter(self._families[family_id]))].user_id

    async def delete_user(self, user_id: str, keep_an_admin: bool = False) -> None:
        user = self._users.get(user_id)
        # no await between this check and the deletion: atomic on the event loop
        if keep_an_admin and user is not None and ADMIN in user.roles \
                and not self._another_enabled_admin(user_id):
            raise errors.FailedPrecondition(LAST_ADMIN)
        self._users.pop(user_id, None)
        if user is not None:
            del self._by_username[user.username.casefold()], self._by_email[user.email.casefold()]
        for token_hash, token in list(self._tokens.items()):
            if token.user_id == user_id:
                del self._tokens[token_hash]
                self._spent.discard(token_hash)
                self._drop_from_family(token)

    async def export_user(self, user_id: str) -> UserData | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        expiry: dict[str, float] = {}
        for token in self._tokens.values():
            if token.user_id == user_id:
                expiry[token.family_id] = max(expiry.get(token.family_id, 0.0), token.expire_time_s)
        logins = sorted(
            (Login(self._devices[f].first_seen_s, e, f in self._revoked, self._devices[f])
             for f, e in expiry.items()),
            key=lambda login: login.create_time_s)
        return UserData(user, logins)

    async def find_user_by_email(self, email: str) -> User | None:
        user_id = self._by_email.get(email.casefold())
        return None if user_id is None else self._users[user_id]

    async def find_identity(self, identity: ProviderIdentity) -> User | None:
        user_id = self._identities.get(identity)
        return None if user_id is None else self._users.get(user_id)

    async def link_identity(self, identity: ProviderIdentity, user_id: str,
                            new_user: User | None = None) -> None:
        if identity in self._identities and self._identities[identity] in self._users:
            raise errors.Aborted("this provider identity was linked meanwhile; sign in again")
        if new_user is not None:
            await self.add_user(new_user)
        self._identities[identity] = user_id

    async def add_signin(self, state_hash: str, pending: PendingSignIn) -> None:
        now = self._clock()
        for key in [k for k, p in self._signins.items() if p.expire_time_s <= now]:
            del self._signins[key]
        self._signins[state_hash] = pending

    async def take_signin(self, state_hash: str) -> PendingSignIn | None:
        pending = self._signins.pop(state_hash, None)
        if pending is None or pending.expire_time_s <= self._clock():
            return None
        return pending

    def _drop_from_family(self, token: RefreshToken) -> None:
        family = self._families[token.family_id]
        family.discard(token.token_hash)
        if not family:
            del self._families[token.family_id]
            self._revoked.discard(token.family_id)
            self._devices.pop(token.family_id, None)

    def _state(self, token: RefreshToken) -> TokenState:
        if token.family_id in self._revoked:
            return TokenState.REVOKED
        if token.token_hash in self._spent:
            return TokenState.SPENT
        return TokenState.LIVE

    def _purge_expired(self) -> None:
        """Drops expired tokens (spent ones are kept until then, for reuse detection)."""
        now = self._clock()
        if now - self._last_purge_s < PURGE_INTERVAL_S:
            return
        self._last_purge_s = now
        for token_hash, token in list(self._tokens.items()):
            if token.expire_time_s > now:
                continue
            del self._tokens[token_hash]
            self._spent.discard(token_hash)
            self._drop_from_family(token)
