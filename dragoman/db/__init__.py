"""The one data layer: PostgreSQL through psycopg 3's async pool.

`open_database(settings.database)` gives a `Database` (pool + keyring)
after applying pending migrations. With `database.url` empty, an embedded
PostgreSQL (pgserver) serves the same schema from `database.embedded_dir`,
so there is no second dialect. `prepare()` starts that server once and
returns the environment that lets several processes share it (`dragoman up`).

    dragoman/db/migrations/*.sql  versioned schema, one for all services (see `migrate`)
    dragoman/db/crypto.py         AES-256-GCM with key ids (text at rest)
    dragoman/db/times.py          timestamptz <-> epoch seconds and proto Timestamps

Each table has one owning service (`migrate.TABLE_OWNERS`), the only one
that reads or writes it; the queries live in that service (gateway.pgstore,
session_svc.store). Others ask the owner over its internal RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from psycopg_pool import AsyncConnectionPool

from dragoman.config import DbSettings
from dragoman.db import crypto, embedded, migrate
from dragoman.errors import DragomanError, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
URL_ENV = "DRAGOMAN_DATABASE_URL"
KEYS_FILE_ENV = "DRAGOMAN_DATABASE_ENCRYPTION_KEYS_FILE"


class Unstorable(InvalidArgument):
    """A query was given text PostgreSQL cannot hold (a NUL character), so it was not
    sent. As it is, INVALID_ARGUMENT (a write); a lookup by such a key finds nothing,
    so lookups say so with `unstorable_as(NotFound(...))` or return None."""


def _refuse_nul(obj: str) -> None:
    if "\0" in obj:
        raise Unstorable("text with a NUL character (U+0000) cannot be stored")


class _TextDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        _refuse_nul(obj)
        return super().dump(obj)


class _BinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Buffer | None:
        _refuse_nul(obj)
        return super().dump(obj)


ADAPTERS = AdaptersMap(psycopg.adapters)
"""Every connection's adapters: str parameters are checked for NUL before any query
is sent (psycopg would raise a DataError, an INTERNAL), so no query can forget to."""
ADAPTERS.register_dumper(str, _TextDumper)
ADAPTERS.register_dumper(str, _BinaryDumper)


@contextlib.contextmanager
def unstorable_as(error: DragomanError) -> Iterator[None]:
    """Raises `error` in place of `Unstorable`: e.g. NotFound for a lookup by a key no
    row can have, or InvalidArgument naming the field the text came from."""
    try:
        yield
    except Unstorable:
        raise error from None


@dataclass
class Database:
    """A connection pool to the schema, and the keys for text at rest."""

    pool: AsyncConnectionPool
    keyring: crypto.Keyring
    schema: str

    async def close(self) -> None:
        await self.pool.close()


def generated_keys_file(settings: DbSettings) -> Path:
    """Where the embedded default keeps its generated key (beside its data)."""
    return _embedded_dir(settings).parent / "encryption.keys"


def _embedded_dir(settings: DbSettings) -> Path:
    return Path(settings.embedded_dir) if settings.embedded_dir else embedded.default_dir()


async def resolve_url(settings: DbSettings) -> str:
    """`settings.url`, or that of the embedded server (started if needed)."""
    if settings.url:
        return settings.url
    return await asyncio.to_thread(embedded.start, _embedded_dir(settings))


def load_keyring(settings: DbSettings) -> crypto.Keyring:
    generated = None if settings.url else generated_keys_file(settings)
    return crypto.load(settings.encryption_keys, settings.encryption_keys_file, generated)


def redact_url(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _connection_options(settings: DbSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"autocommit": True, "context": ADAPTERS}
    schema = migrate.check_schema(settings.schema)
    if schema:
        options["options"] = f"-c search_path={schema}"
    return options


async def connect(settings: DbSettings) -> psycopg.AsyncConnection:
    """One connection outside the pool (commands, migrations), in the schema."""
    url = await resolve_url(settings)
    try:
        return await psycopg.AsyncConnection.connect(
            url, connect_timeout=int(CONNECT_TIMEOUT_S), **_connection_options(settings))
    except psycopg.OperationalError as e:
        log.warning("cannot connect to %s: %s", redact_url(url), e)
        raise Unavailable("the database is unavailable") from None


async def upgrade(settings: DbSettings) -> list[migrate.Migration]:
    """Applies pending migrations (`dragoman db upgrade`)."""
    async with await connect(settings) as conn:
        return await migrate.upgrade(conn, migrate.check_schema(settings.schema))


async def open_database(settings: DbSettings) -> Database:
    """The pool for a service, migrations applied when `migrate_on_start`."""
    keyring = load_keyring(settings)
    kwargs = _connection_options(settings)
    if settings.migrate_on_start:
        applied = await upgrade(settings)
        if applied:
            log.info("applied migrations %s", [m.version for m in applied])
    url = await resolve_url(settings)
    # checked as lent: after a database restart every pooled connection is dead, and
    # unchecked each would fail one call (bench/results/chaos.md, the PostgreSQL fault)
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=max(1, settings.pool_max_size), kwargs=kwargs, open=False,
        timeout=CONNECT_TIMEOUT_S, name="dragoman", check=AsyncConnectionPool.check_connection)
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except psycopg.errors.Error as e:  # PoolTimeout, OperationalError
        await pool.close()
        log.warning("cannot open a pool to %s: %s", redact_url(url), e)
        raise Unavailable("the database is unavailable") from None
    return Database(pool, keyring, settings.schema)


async def prepare(settings: DbSettings) -> dict[str, str]:
    """For `dragoman up`: starts the embedded server once, migrates, makes the
    key file, and returns the environment under which every service uses
    them. Empty with an external database (the services read the settings)."""
    if settings.url:
        await upgrade(settings)
        return {}
    url = await resolve_url(settings)
    load_keyring(settings)
    env = {URL_ENV: url}
    if not (settings.encryption_keys or settings.encryption_keys_file):
        env[KEYS_FILE_ENV] = str(generated_keys_file(settings))
    await upgrade(settings)
    return env
