"""`dragoman admin`: roles set in PostgreSQL directly, never through the public API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from dragoman import config, db
from dragoman.db.testing import scratch_schema
from dragoman_tools import cli
from gateway.pgstore import PgUserStore
from gateway.store import User


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[config.DbSettings]:
    with scratch_schema(prefix="admin") as settings:
        monkeypatch.setenv("DRAGOMAN_DATABASE_URL", settings.url)
        monkeypatch.setenv("DRAGOMAN_DATABASE_SCHEMA", settings.schema)
        monkeypatch.setenv("DRAGOMAN_DATABASE_ENCRYPTION_KEYS", settings.encryption_keys)
        monkeypatch.delenv("DRAGOMAN_CONFIG", raising=False)
        yield settings


async def _register(settings: config.DbSettings, *names: str) -> None:
    database = await db.open_database(settings)
    try:
        for name in names:
            await PgUserStore(database).add_user(User(
                f"id-{name}", name, f"{name}@example.org", "$argon2id$x", "en", time.time()))
    finally:
        await database.close()


def test_admins_are_created_listed_and_the_last_one_kept(
    database: config.DbSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_register(database, "ana", "bo"))
    assert cli.main(["admin", "list"]) == 0
    assert capsys.readouterr().out == ""

    assert cli.main(["admin", "create", "ANA"]) == 0
    assert capsys.readouterr().out == "ana is an admin\n"
    assert cli.main(["admin", "remove", "ana"]) == 1
    assert capsys.readouterr().err == (
        "dragoman: error: cannot remove the last admin: make another admin first\n")

    assert cli.main(["admin", "create", "bo"]) == 0
    assert cli.main(["admin", "list"]) == 0
    listed = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == [["ana", "id-ana"], ["bo", "id-bo"]]
    assert cli.main(["admin", "remove", "ana"]) == 0
    assert cli.main(["admin", "list"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()[-1:]] == ["bo"]

    assert cli.main(["admin", "create", "nobody"]) == 1
    assert capsys.readouterr().err == "dragoman: error: no account named 'nobody'\n"
