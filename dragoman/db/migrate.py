"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order.

`upgrade()` applies the pending ones in one transaction under an advisory
lock, and records each in `schema_migrations` with a checksum. Running it
again (or from two processes at once) applies nothing twice; a migration
edited after it was applied is refused. Migrations are never edited once
released: a change is a new file.

The schema is one, but each table belongs to one service (`TABLE_OWNERS`),
which alone reads and writes it; another service asks the owner over an
internal RPC (the gateway asks session_svc through
`dragoman.session.v1.SessionDataService`). A migration adding a table adds
it there too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from dragoman.errors import FailedPrecondition

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
LOCK_PREFIX = "dragoman-migrate:"
TABLE_OWNERS = {
    "users": "gateway",
    "login_families": "gateway",
    "refresh_tokens": "gateway",
    "oidc_identities": "gateway",
    "oidc_states": "gateway",
    "admin_audit_log": "gateway",
    "sessions": "session_svc",
    "session_participants": "session_svc",
    "translation_logs": "session_svc",
    "session_metrics": "session_svc",
    "session_participant_metrics": "session_svc",
    "session_owners": "session_svc",
    "vocabularies": "session_svc",
    "participant_logs": "session_svc",
    "recordings": "session_svc",
    "recording_consents": "session_svc",
    "recording_items": "session_svc",
    "session_state": "session_svc",
    "session_events": "session_svc",
}
"""The service that owns each table of the schema (schema_migrations is this module's)."""

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.fullmatch(path.name)
        if match is None:
            raise FailedPrecondition(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise FailedPrecondition(f"migration versions must run 1, 2, 3 ... without gaps: {versions}")
    return found


def check_schema(schema: str) -> str:
    if schema and not SCHEMA_NAME.fullmatch(schema):
        raise FailedPrecondition(
            f"database schema {schema!r} must be lower-case letters, digits and '_'")
    return schema


async def upgrade(
    conn: psycopg.AsyncConnection, schema: str = "", directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Applies the pending migrations to `schema` (default: the connection's
    current schema); returns those applied now."""
    wanted = migrations(directory)
    async with conn.transaction():
        lock = LOCK_PREFIX + (check_schema(schema) or "public")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
        if schema:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        await conn.execute(CREATE_LEDGER)
        cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
        applied: dict[int, str] = dict(await cursor.fetchall())
        pending = []
        for migration in wanted:
            if migration.version not in applied:
                pending.append(migration)
            elif applied[migration.version] != migration.checksum:
                raise FailedPrecondition(
                    f"migration {migration.version:04d}_{migration.name} changed after it was "
                    "applied; add a new migration instead")
        unknown = sorted(set(applied) - {m.version for m in wanted})
        if unknown:
            raise FailedPrecondition(
                f"the database has migrations this version does not know: {unknown}; upgrade dragoman")
        for migration in pending:
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum))
    return pending
