"""dragoman.db against the test PostgreSQL: migrations, encryption, the embedded server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from dragoman import config, db
from dragoman.db import crypto, migrate
from dragoman.db.testing import scratch_schema
from dragoman.errors import FailedPrecondition, NotFound

TABLES = {"users", "login_families", "refresh_tokens", "admin_audit_log", "sessions",
          "session_participants",
          "translation_logs", "session_metrics", "session_owners", "session_participant_metrics",
          "vocabularies", "participant_logs", "oidc_identities", "oidc_states",
          "recordings", "recording_consents", "recording_items", "session_state", "session_events",
          "schema_migrations"}


@pytest.fixture
def database() -> Iterator[config.DbSettings]:
    with scratch_schema(prefix="db") as settings:
        yield settings


async def tables(settings: config.DbSettings) -> set[str]:
    async with await db.connect(settings) as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (settings.schema,))
        return {row[0] for row in await cur.fetchall()}


async def test_migrations_apply_once_and_twice_is_a_no_op(database: config.DbSettings) -> None:
    applied = await db.upgrade(database)
    assert [m.version for m in applied] == [m.version for m in migrate.migrations()]
    assert await tables(database) == TABLES
    # every table has its one owning service
    assert set(migrate.TABLE_OWNERS) | {"schema_migrations"} == TABLES
    assert set(migrate.TABLE_OWNERS.values()) == {"gateway", "session_svc"}
    assert await db.upgrade(database) == []
    async with await db.connect(database) as conn:
        cur = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert await cur.fetchall() == [(1, "initial"), (2, "session_owner"), (3, "session_owners"),
                                        (4, "multi_party"), (5, "utterance_times"),
                                        (6, "low_confidence"), (7, "vocabularies"),
                                        (8, "devices_roles"), (9, "privacy_modes"),
                                        (10, "oidc"), (11, "admin"), (12, "recordings"),
                                        (13, "session_handover")]


async def test_concurrent_upgrades_apply_each_migration_once(database: config.DbSettings) -> None:
    results = await asyncio.gather(*(db.upgrade(database) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrate.migrations())]
    assert await tables(database) == TABLES


async def test_an_edited_migration_is_refused(database: config.DbSettings, tmp_path: Path) -> None:
    await db.upgrade(database)
    for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path)
    edited = tmp_path / "0001_initial.sql"
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    async with await db.connect(database) as conn:
        with pytest.raises(FailedPrecondition, match="0001_initial changed after it was applied"):
            await migrate.upgrade(conn, database.schema, tmp_path)
        (tmp_path / "0001_initial.sql").write_text(
            (migrate.MIGRATIONS_DIR / "0001_initial.sql").read_text())
        after = len(migrate.migrations()) + 1
        (tmp_path / f"{after:04d}_more.sql").write_text("CREATE TABLE more_things (id int);")
        assert [m.name for m in await migrate.upgrade(conn, database.schema, tmp_path)] == ["more"]
        with pytest.raises(FailedPrecondition, match="migrations this version does not know"):
            await migrate.upgrade(conn, database.schema)


def test_bad_schema_names_are_refused() -> None:
    with pytest.raises(FailedPrecondition, match="lower-case letters"):
        migrate.check_schema("x; DROP TABLE users")


def test_keyring_encrypts_with_the_first_key_and_binds_the_row() -> None:
    old, new = crypto.new_key_entry("old"), crypto.new_key_entry("new")
    rotated = crypto.Keyring.parse(f"{new},{old}")
    key_id, sealed = crypto.Keyring.parse(old).encrypt("olá, mundo", b"row-1")
    assert key_id == "old" and b"mundo" not in sealed
    assert rotated.decrypt(key_id, sealed, b"row-1") == "olá, mundo"
    assert rotated.encrypt("x", b"")[0] == "new"
    with pytest.raises(crypto.DecryptionError, match="does not decrypt"):
        rotated.decrypt(key_id, sealed, b"row-2")  # moved to another row
    with pytest.raises(crypto.DecryptionError, match="does not decrypt"):
        rotated.decrypt(key_id, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"row-1")
    with pytest.raises(crypto.DecryptionError, match="no encryption key with id 'old'"):
        crypto.Keyring.parse(new).decrypt(key_id, sealed, b"row-1")


@pytest.mark.parametrize(("text", "message"), [
    ("", "no encryption key configured"),
    ("k1", "each key must be `id:base64`"),
    ("k1:not base64!", "each key must be `id:base64`"),
    (f"k1:{base64.b64encode(b'short').decode()}", "has 5 bytes; AES-256 needs 32"),
    (f"{crypto.new_key_entry('k1')},{crypto.new_key_entry('k1')}", "listed twice"),
    (crypto.new_key_entry("bad id!"), "must be 1 to 32 letters"),
])
def test_bad_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(FailedPrecondition, match=message):
        crypto.Keyring.parse(text)


def test_keys_come_from_settings_or_a_file_and_an_external_database_needs_them(
    tmp_path: Path,
) -> None:
    entry = crypto.new_key_entry("filed")
    (tmp_path / "keys").write_text(f"# rotated 2026-01\n{entry}\n")
    from_file = db.load_keyring(config.DbSettings(
        url="postgresql://x", encryption_keys_file=str(tmp_path / "keys")))
    assert from_file.key_ids == ["filed"]
    with pytest.raises(FailedPrecondition, match="DRAGOMAN_DATABASE_ENCRYPTION_KEYS"):
        db.load_keyring(config.DbSettings(url="postgresql://x"))
    embedded = config.DbSettings(embedded_dir=str(tmp_path / "pgdata"))
    generated = db.load_keyring(embedded)
    key_file = db.generated_keys_file(embedded)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert db.load_keyring(embedded).key_ids == generated.key_ids  # the same key next time


def test_describe_masks_secrets() -> None:
    settings = config.load(env={
        "DRAGOMAN_DATABASE_URL": "postgresql://app:pw@db/dragoman",
        "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": crypto.new_key_entry("k1"),
        "DRAGOMAN_LIMITS_REDIS_URL": "redis://:pw@cache:6379",
    })
    shown = config.describe(settings)
    assert shown["database"]["url"] == shown["database"]["encryption_keys"] == "***"
    assert shown["limits"]["redis_url"] == "***"
    assert db.redact_url(settings.database.url) == "postgresql://app:***@db/dragoman"


EMBEDDED_CLIENT = """
import sys
from dragoman.db import embedded
import psycopg
url = embedded.start(__import__("pathlib").Path(sys.argv[1]))
with psycopg.connect(url) as conn:
    print(url, conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0])
"""


async def test_the_embedded_server_runs_the_same_schema_for_several_processes(
    tmp_path: Path,
) -> None:
    settings = config.DbSettings(embedded_dir=str(tmp_path / "pgdata"))
    env = await db.prepare(settings)
    url = env[db.URL_ENV]
    assert "host=" in url and env[db.KEYS_FILE_ENV].endswith("encryption.keys")
    database = await db.open_database(settings)
    try:
        async with database.pool.connection() as conn:
            cur = await conn.execute("SELECT current_setting('server_version_num')::int")
            assert (await cur.fetchone())[0] >= 160000  # type: ignore[index]
        # another process finds the running server and the migrated schema
        other = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", EMBEDDED_CLIENT, settings.embedded_dir],
            capture_output=True, text=True, timeout=60)
        assert other.returncode == 0, other.stderr
        assert other.stdout.split() == [url, str(len(migrate.migrations()))]
        # and the server still serves this one after the other process left
        async with database.pool.connection() as conn:
            await conn.execute("SELECT 1 FROM users LIMIT 1")
    finally:
        await database.close()


async def test_an_unreachable_database_is_unavailable() -> None:
    from dragoman.errors import Unavailable

    settings = dataclasses.replace(
        config.DbSettings(), url="postgresql://postgres@127.0.0.1:1/none",
        encryption_keys=crypto.new_key_entry())
    with pytest.raises(Unavailable, match="the database is unavailable"):
        await db.open_database(settings)


def test_the_commands_upgrade_generate_and_rotate(
    database: config.DbSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dragoman_tools import cli

    monkeypatch.setenv("DRAGOMAN_DATABASE_URL", database.url)
    monkeypatch.setenv("DRAGOMAN_DATABASE_SCHEMA", database.schema)
    monkeypatch.delenv("DRAGOMAN_DATABASE_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("DRAGOMAN_DATABASE_ENCRYPTION_KEYS_FILE", raising=False)
    monkeypatch.delenv("DRAGOMAN_CONFIG", raising=False)
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "applied 0001_initial, 0002_session_owner, 0003_session_owners, 0004_multi_party, "
        "0005_utterance_times, 0006_low_confidence, 0007_vocabularies, 0008_devices_roles, "
        "0009_privacy_modes, 0010_oidc, 0011_admin, 0012_recordings, 0013_session_handover",
        "the schema is up to date"]

    assert cli.main(["keys", "generate", "--id", "k2"]) == 0
    new_key = capsys.readouterr().out.strip()
    assert crypto.Keyring.parse(new_key).key_ids == ["k2"]
    assert cli.main(["keys", "rotate"]) == 1  # an external database needs its keys given
    assert "DRAGOMAN_DATABASE_ENCRYPTION_KEYS" in capsys.readouterr().err
    monkeypatch.setenv("DRAGOMAN_DATABASE_ENCRYPTION_KEYS", f"{new_key},{database.encryption_keys}")
    assert cli.main(["keys", "rotate"]) == 0
    assert capsys.readouterr().out.strip() == (
        "re-encrypted 0 translation logs and 0 recording items under key 'k2'")


async def test_text_with_a_nul_is_refused_before_any_query_is_sent(
        database: config.DbSettings) -> None:
    """PostgreSQL text holds no NUL (psycopg would raise DataError: INTERNAL). Every
    connection's adapters refuse it with db.Unstorable, in any parameter format."""
    pool = await db.open_database(database)
    try:
        async with await db.connect(database) as conn, pool.pool.connection() as pooled:
            for c in (conn, pooled):
                for query, params in (("SELECT %s", ("a\0b",)), ("SELECT %b", ("\0",)),
                                      ("SELECT %t", ("\0",)), ("SELECT %s", (["ok", "a\0"],))):
                    with pytest.raises(db.Unstorable) as refused:
                        await c.execute(query, params)
                    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
                    assert "NUL" in str(refused.value)
                async with c.transaction():  # nothing was sent: the connection is still good
                    cur = await c.execute("SELECT %s, %b", ("text", "binary"))
                    assert await cur.fetchone() == ("text", "binary")
    finally:
        await pool.close()


def test_unstorable_as_maps_only_unstorable() -> None:
    with pytest.raises(NotFound, match="no such row"):
        with db.unstorable_as(NotFound("no such row")):
            raise db.Unstorable("NUL")
    with pytest.raises(ValueError):
        with db.unstorable_as(NotFound("no such row")):
            raise ValueError("other")


async def test_0008_gives_existing_accounts_the_user_role_and_logins_a_last_seen(
    database: config.DbSettings, tmp_path: Path,
) -> None:
    for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < 8:
            shutil.copy(path, tmp_path)
    async with await db.connect(database) as conn:
        await migrate.upgrade(conn, database.schema, tmp_path)  # up to 0007
        await conn.execute(
            "INSERT INTO users VALUES ('u1', 'old', 'old@example.org', 'h', 'en', "
            "'2025-01-01T00:00:00Z')")
        await conn.execute("INSERT INTO login_families (family_id, user_id, created_at) "
                           "VALUES ('f1', 'u1', '2025-01-02T00:00:00Z')")
        applied = await migrate.upgrade(conn, database.schema)
        assert [m.name for m in applied][:1] == ["devices_roles"]  # then those after it
        cur = await conn.execute("SELECT roles FROM users")
        assert await cur.fetchall() == [(["user"],)]
        cur = await conn.execute("SELECT last_seen_at = created_at, device_name, user_agent, "
                                 "coarse_ip FROM login_families")
        assert await cur.fetchall() == [(True, "", "", "")]
        for roles in ("{root}", "{admin}", "{}"):  # unknown roles, and no account without `user`
            with pytest.raises(psycopg.errors.CheckViolation):
                async with conn.transaction():
                    await conn.execute("UPDATE users SET roles = %s::text[]", (roles,))
