"""Fixtures shared by every test package.

Tests run real grpc.aio servers on 127.0.0.1 port 0 with real stubs. Model
weights must be installed (`dragoman models install`); a test that needs
them fails with that instruction instead of being skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.private import Postgres
from dragoman import config, db, rpc
from dragoman.assertion import Assertions
from dragoman.db.testing import scratch_schema
from tests.mesh import mesh  # noqa: F401 - the shared in-process mesh fixture

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "tests" / "data"
"""Speech and sentence pairs shipped with the repo (tests/data/README.md)."""
IDENTITY_KEY = secrets.token_urlsafe(48)
"""This run's auth.identity_key, shared by its gateways and session_svcs."""
ASSERTIONS = Assertions(IDENTITY_KEY.encode())
"""What tests standing where a gateway stands sign with."""


@pytest.fixture(scope="session")
def settings() -> Iterator[config.Settings]:
    """This run's settings: a fresh schema in the test PostgreSQL, dropped afterwards;
    every test registers from loopback, so the per-address registration limit is lifted."""
    loaded = config.load()
    with scratch_schema(prefix="run") as database:
        # recorded speech goes in faster than real time (tests/session_svc/test_guards.py
        # checks the limit itself)
        yield dataclasses.replace(
            loaded, database=database,
            auth=dataclasses.replace(loaded.auth, identity_key=IDENTITY_KEY),
            limits=dataclasses.replace(loaded.limits, registrations_per_hour=1_000_000),
            session=dataclasses.replace(loaded.session, max_audio_speed=0.0))


@pytest.fixture(scope="session")
def models_dir(settings: config.Settings) -> Path:
    path = Path(settings.models_dir)
    if not (path / "whisper-base" / "model.bin").exists():
        pytest.fail(f"model weights missing in {path}: run `dragoman models install` first")
    return path


@pytest.fixture(scope="session")
def fleurs() -> Path:
    path = TESTDATA / "speech" / "fleurs"
    if not path.is_dir():
        pytest.fail(f"test speech missing: {path}")
    return path


@pytest.fixture(scope="session")
def tatoeba() -> Path:
    path = TESTDATA / "mt" / "tatoeba"
    if not path.is_dir():
        pytest.fail(f"test sentences missing: {path}")
    return path


@pytest.fixture
async def killable_database(
        monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Postgres, db.Database]]:
    """A database on a PostgreSQL of the test's own (bench.private), which the test may
    SIGKILL and start again; its pool waits 1 s for a connection, not 10."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 1.0)
    postgres = Postgres()
    try:
        await asyncio.to_thread(postgres.init)
        await postgres.start()
        with scratch_schema(postgres.url, prefix="killable") as settings:
            database = await db.open_database(settings)
            try:
                yield postgres, database
            finally:
                await database.close()
    finally:
        await postgres.stop()


async def started(service: rpc.Service) -> AsyncIterator[str]:
    """Starts `service` on a free loopback port, yields its address, stops it."""
    port = await service.start("127.0.0.1:0")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await service.stop(0)

