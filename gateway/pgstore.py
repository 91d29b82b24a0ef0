"""`UserStore` in PostgreSQL: the gateway's tables (users, login_families,
refresh_tokens in dragoman/db/migrations), the only ones it reads.

A refresh token's state is derived: REVOKED when its login family has
`revoked_at`, SPENT when it has `spent_at`, else LIVE. Spending is one
conditional UPDATE, so of two concurrent uses exactly one wins. Expired
tokens are purged now and then; spent ones stay until they expire, for
reuse detection.

Revoking a login or deleting a user also sends a NOTIFY on
`REVOKED_CHANNEL`, which `watch_revocations` passes to every gateway's
cache of standing logins (gateway.auth.Revocations).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row

from dragoman import errors
from dragoman.db import Database
from dragoman.db.times import to_datetime
from gateway.store import (
    ADMIN,
    LAST_ADMIN,
    LAST_ENABLED_ADMIN,
    PURGE_INTERVAL_S,
    USER,
    Device,
    Login,
    PendingSignIn,
    ProviderIdentity,
    RefreshToken,
    Sighting,
    TokenState,
    User,
    UserData,
)

log = logging.getLogger(__name__)

REVOKED_CHANNEL = "dragoman_logins_revoked"
"""NOTIFY channel; payloads `login:<family id>` and `user:<user id>`."""
LOGIN_LIVE_WAIT_S = 1.0
"""Longest wait for a pooled connection to check a login (every call, once a second per
login): past it a recent answer stands in (gateway.auth.STALE_WHILE_DOWN_S)."""
RELISTEN_S = 1.0
"""Wait before listening again after the connection was lost."""

_NEW_USER_COLUMNS = ("user_id, username, email, password_hash, preferred_language_code, "
                     "created_at, roles")
_USER_COLUMNS = f"{_NEW_USER_COLUMNS}, disabled_at IS NOT NULL AS disabled"
_DEVICE_COLUMNS = "family_id, device_name, user_agent, coarse_ip, created_at, last_seen_at"


def _user(row: dict[str, object]) -> User:
    created = row.pop("created_at")
    roles = tuple(row.pop("roles"))  # type: ignore[call-overload]
    return User(**row, create_time_s=created.timestamp(), roles=roles)  # type: ignore[arg-type, attr-defined]


def _device(family_id: str, name: str, user_agent: str, coarse_ip: str,
            created: datetime.datetime, last_seen: datetime.datetime) -> Device:
    return Device(family_id, name, user_agent, coarse_ip, created.timestamp(), last_seen.timestamp())


async def _insert_user(conn: psycopg.AsyncConnection, user: User) -> None:
    try:
        await conn.execute(
            f"INSERT INTO users ({_NEW_USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (user.user_id, user.username, user.email, user.password_hash,
             user.preferred_language_code, to_datetime(user.create_time_s), list(user.roles)))
    except psycopg.errors.UniqueViolation as e:
        if e.diag.constraint_name == "users_email_key":
            raise errors.AlreadyExists("email address is already registered") from None
        raise errors.AlreadyExists(f"username {user.username!r} is taken") from None


class PgUserStore:
    """Accounts and refresh tokens in PostgreSQL."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = database
        self._clock = clock
        self._last_purge_s = 0.0

    async def add_user(self, user: User) -> None:
        async with self._db.pool.connection() as conn:
            await _insert_user(conn, user)

    async def _one_user(self, condition: str, value: str) -> User | None:
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE {condition}", (value,))
            row = await cur.fetchone()
        return None if row is None else _user(row)

    async def find_user(self, username: str) -> User | None:
        return await self._one_user("lower(username) = lower(%s)", username)

    async def get_user(self, user_id: str) -> User | None:
        return await self._one_user("user_id = %s", user_id)

    async def add_refresh_token(self, token: RefreshToken, seen: Sighting | None = None) -> None:
        seen = seen or Sighting(self._clock())
        seen_at = to_datetime(seen.time_s)
        async with self._db.pool.connection() as conn:
            await self._purge_expired(conn)
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO login_families (family_id, user_id, created_at, last_seen_at, "
                    "device_name, user_agent, coarse_ip) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (family_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
                    "coarse_ip = excluded.coarse_ip, user_agent = coalesce(nullif("
                    "excluded.user_agent, ''), login_families.user_agent)",
                    (token.family_id, token.user_id, seen_at, seen_at, seen.device_name,
                     seen.user_agent, seen.coarse_ip))
                await conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (token.token_hash, token.family_id, token.user_id,
                     to_datetime(token.expire_time_s)))

    async def get_refresh_token(self, token_hash: str) -> tuple[RefreshToken, TokenState] | None:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT t.user_id, t.family_id, t.expires_at, t.spent_at IS NOT NULL, "
                "f.revoked_at IS NOT NULL FROM refresh_tokens t JOIN login_families f "
                "USING (family_id) WHERE t.token_hash = %s", (token_hash,))
            row = await cur.fetchone()
        if row is None:
            return None
        user_id, family_id, expires_at, spent, revoked = row
        state = TokenState.REVOKED if revoked else TokenState.SPENT if spent else TokenState.LIVE
        return RefreshToken(token_hash, user_id, family_id, expires_at.timestamp()), state

    async def spend_refresh_token(self, token_hash: str) -> bool:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE refresh_tokens t SET spent_at = now() "
                "WHERE t.token_hash = %s AND t.spent_at IS NULL AND NOT EXISTS ("
                "  SELECT 1 FROM login_families f "
                "  WHERE f.family_id = t.family_id AND f.revoked_at IS NOT NULL) "
                "RETURNING 1", (token_hash,))
            return await cur.fetchone() is not None

    async def revoke_family(self, family_id: str) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "UPDATE login_families SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE family_id = %s", (family_id,))
            await conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, f"login:{family_id}"))

    async def login_live(self, family_id: str, user_id: str) -> bool:
        """Unavailable when the database cannot be asked within LOGIN_LIVE_WAIT_S: the
        caller may have a recent answer to go on (gateway.auth.Revocations)."""
        try:
            async with self._db.pool.connection(timeout=LOGIN_LIVE_WAIT_S) as conn:
                cur = await conn.execute(
                    "SELECT 1 FROM login_families WHERE family_id = %s AND user_id = %s "
                    "AND revoked_at IS NULL", (family_id, user_id))
                return await cur.fetchone() is not None
        except psycopg.OperationalError as e:
            log.warning("login not checked: database unavailable (%s)", type(e).__name__)
            raise errors.Unavailable("the database is unavailable; retry shortly") from None

    async def list_devices(self, user_id: str) -> list[Device]:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM login_families WHERE user_id = %s "
                "AND revoked_at IS NULL ORDER BY last_seen_at DESC", (user_id,))
            return [_device(*row) for row in await cur.fetchall()]

    async def revoke_device(self, user_id: str, family_id: str) -> bool:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE login_families SET revoked_at = now() WHERE family_id = %s "
                "AND user_id = %s AND revoked_at IS NULL RETURNING 1", (family_id, user_id))
            if await cur.fetchone() is None:
                return False
            await conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, f"login:{family_id}"))
            return True

    async def set_admin(self, username: str, admin: bool) -> User:
        async with self._db.pool.connection() as conn, conn.transaction():
            # the admins' rows locked: of two concurrent removals the second sees the first
            cur = await conn.execute(
                "SELECT lower(username) FROM users WHERE %s = ANY (roles) FOR UPDATE", (ADMIN,))
            admins = {row[0] for row in await cur.fetchall()}
            if not admin and admins == {username.lower()}:
                raise errors.FailedPrecondition(LAST_ADMIN)
            async with conn.cursor(row_factory=dict_row) as dcur:
                await dcur.execute(
                    f"UPDATE users SET roles = %s WHERE lower(username) = lower(%s) "
                    f"RETURNING {_USER_COLUMNS}",
                    ([USER, ADMIN] if admin else [USER], username))
                row = await dcur.fetchone()
        if row is None:
            raise errors.NotFound(f"no account named {username!r}")
        return _user(row)

    async def list_admins(self) -> list[User]:
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE %s = ANY (roles) "
                              "ORDER BY lower(username)", (ADMIN,))
            return [_user(row) for row in await cur.fetchall()]

    async def search_users(self, query: str, limit: int) -> list[User]:
        # LIKE's own characters in the query match themselves
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE username ILIKE %s OR email ILIKE %s "
                "ORDER BY lower(username) LIMIT %s", (pattern, pattern, limit))
            return [_user(row) for row in await cur.fetchall()]

    async def set_disabled(self, user_id: str, disabled: bool) -> User | None:
        async with self._db.pool.connection() as conn, conn.transaction():
            if disabled and await _lock_enabled_admins(conn) == [user_id]:
                raise errors.FailedPrecondition(LAST_ENABLED_ADMIN)
            async with conn.cursor(row_factory=dict_row) as dcur:
                await dcur.execute(
                    "UPDATE users SET disabled_at = CASE WHEN %s THEN coalesce(disabled_at, now()) "
                    f"END WHERE user_id = %s RETURNING {_USER_COLUMNS}", (disabled, user_id))
                row = await dcur.fetchone()
            if row is not None and disabled:
                await conn.execute(
                    "UPDATE login_families SET revoked_at = coalesce(revoked_at, now()) "
                    "WHERE user_id = %s", (user_id,))
                await conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, f"user:{user_id}"))
        return None if row is None else _user(row)

    async def delete_user(self, user_id: str, keep_an_admin: bool = False) -> None:
        async with self._db.pool.connection() as conn, conn.transaction():
            if keep_an_admin:
                if not [a for a in await _lock_enabled_admins(conn) if a != user_id]:
                    cur = await conn.execute(
                        "SELECT 1 FROM users WHERE user_id = %s AND %s = ANY (roles)", (user_id, ADMIN))
                    if await cur.fetchone() is not None:
                        raise errors.FailedPrecondition(LAST_ADMIN)
            await conn.execute("DELETE FROM users WHERE user_id = %s", (user_id,))  # tokens cascade
            await conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, f"user:{user_id}"))

    async def export_user(self, user_id: str) -> UserData | None:
        user = await self.get_user(user_id)
        if user is None:
            return None
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT max(t.expires_at), f.revoked_at IS NOT NULL, "
                + ", ".join(f"f.{c}" for c in _DEVICE_COLUMNS.split(", ")) +
                " FROM login_families f LEFT JOIN refresh_tokens t USING (family_id) "
                "WHERE f.user_id = %s GROUP BY f.family_id ORDER BY f.created_at", (user_id,))
            logins = [Login(device[4].timestamp(), expires.timestamp() if expires else 0.0,
                            revoked, _device(*device))
                      for expires, revoked, *device in await cur.fetchall()]
        return UserData(user, logins)

    async def find_user_by_email(self, email: str) -> User | None:
        return await self._one_user("lower(email) = lower(%s)", email)

    async def find_identity(self, identity: ProviderIdentity) -> User | None:
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {', '.join('u.' + c for c in _USER_COLUMNS.split(', '))} "
                "FROM oidc_identities i JOIN users u USING (user_id) "
                "WHERE i.issuer = %s AND i.subject = %s", (identity.issuer, identity.subject))
            row = await cur.fetchone()
        return None if row is None else _user(row)

    async def link_identity(self, identity: ProviderIdentity, user_id: str,
                            new_user: User | None = None) -> None:
        async with self._db.pool.connection() as conn, conn.transaction():
            if new_user is not None:
                await _insert_user(conn, new_user)
            try:
                await conn.execute(
                    "INSERT INTO oidc_identities (issuer, subject, user_id) VALUES (%s, %s, %s)",
                    (identity.issuer, identity.subject, user_id))
            except psycopg.errors.UniqueViolation:
                raise errors.Aborted(
                    "this provider identity was linked meanwhile; sign in again") from None

    async def add_signin(self, state_hash: str, pending: PendingSignIn) -> None:
        link = pending.link
        async with self._db.pool.connection() as conn:
            await conn.execute("DELETE FROM oidc_states WHERE expires_at <= now()")
            await conn.execute(
                "INSERT INTO oidc_states (state_hash, provider, nonce, code_verifier, "
                "redirect_uri, expires_at, link_user_id, link_issuer, link_subject) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (state_hash, pending.provider, pending.nonce, pending.code_verifier,
                 pending.redirect_uri, to_datetime(pending.expire_time_s),
                 pending.link_user_id or None, link.issuer if link else None,
                 link.subject if link else None))

    async def take_signin(self, state_hash: str) -> PendingSignIn | None:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM oidc_states WHERE state_hash = %s RETURNING provider, nonce, "
                "code_verifier, redirect_uri, expires_at, link_user_id, link_issuer, "
                "link_subject", (state_hash,))
            row = await cur.fetchone()
        if row is None:
            return None
        provider, nonce, verifier, redirect_uri, expires_at, user_id, issuer, subject = row
        if expires_at.timestamp() <= self._clock():
            return None
        return PendingSignIn(provider, nonce, verifier, redirect_uri, expires_at.timestamp(),
                             user_id or "", ProviderIdentity(issuer, subject) if issuer else None)

    async def watch_revocations(self, login_revoked: Callable[[str], None],
                                user_deleted: Callable[[str], None]) -> None:
        """Calls `login_revoked` / `user_deleted` for what any gateway revokes, until
        cancelled. A lost connection is made again; what was revoked meanwhile is
        missed, so callers still recheck what they cache."""
        conninfo, kwargs = self._db.pool.conninfo, self._db.pool.kwargs
        assert isinstance(conninfo, str) and isinstance(kwargs, dict)  # as db.open_database sets
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
                    await conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    async for notify in conn.notifies():
                        kind, _, key = notify.payload.partition(":")
                        (login_revoked if kind == "login" else user_deleted)(key)
            except psycopg.Error as e:
                log.warning("revocations not heard (%s): logins are rechecked instead",
                            type(e).__name__)
            await asyncio.sleep(RELISTEN_S)

    async def _purge_expired(self, conn: psycopg.AsyncConnection) -> None:
        """Drops expired tokens and the logins left without any."""
        now = self._clock()
        if now - self._last_purge_s < PURGE_INTERVAL_S:
            return
        self._last_purge_s = now
        async with conn.transaction():
            await conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= %s", (to_datetime(now),))
            await conn.execute(
                "DELETE FROM login_families f WHERE NOT EXISTS "
                "(SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.family_id)")


async def _lock_enabled_admins(conn: psycopg.AsyncConnection) -> list[str]:
    """The enabled admins' user ids, their rows locked until the transaction ends:
    of two concurrent disables or deletions of admins, the second sees the first."""
    cur = await conn.execute(
        "SELECT user_id FROM users WHERE %s = ANY (roles) AND disabled_at IS NULL FOR UPDATE",
        (ADMIN,))
    return [row[0] for row in await cur.fetchall()]
