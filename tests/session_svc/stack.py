"""session_svc with fake model services and its data in a scratch schema
(for the persistence tests here and the authorization tests of the gateway)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import psycopg

from dragoman import config, logs
from dragoman.db.testing import scratch_schema
from mt_svc import server as mt_server
from mt_svc.cache import NoCache
from mt_svc.engines.fake import FakeEngine as FakeMt
from session_svc import server as session_server
from stt_svc import server as stt_server
from stt_svc.engines.fake import FakeEngine as FakeStt
from tts_svc import server as tts_server
from tts_svc.cache import AudioCache
from tts_svc.engines.fake import FakeEngine as FakeTts

LANGUAGES = ("en", "pt", "es")


@dataclass
class Stack:
    settings: config.Settings
    """With the addresses of the services below and the scratch database."""
    session: str
    """Address of session_svc."""
    mt: FakeMt
    tts: FakeTts
    stt: FakeStt | None = None
    """The recogniser session_svc's stt_svc runs (its calls carry the hotwords)."""

    def query(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Rows of a statement on the stack's schema (for checks on what is stored)."""
        database = self.settings.database
        with psycopg.connect(database.url, options=f"-c search_path={database.schema}") as conn:
            return conn.execute(statement.encode(), params).fetchall()


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record, DEBUG included, as the JSON lines a service writes."""
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logs.JsonFormatter("test"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def scratch_settings(settings: config.Settings, prefix: str) -> Iterator[config.Settings]:
    with scratch_schema(prefix=prefix) as database:
        yield dataclasses.replace(settings, database=database)


def same(role: str, settings: config.Settings) -> config.Settings:
    """Every service of a stack runs with the stack's settings."""
    return settings


@contextlib.asynccontextmanager
async def model_services(
    settings: config.Settings, mt: FakeMt, tts: FakeTts, tts_cache: AudioCache | None = None,
    own: Callable[[str, config.Settings], config.Settings] = same, stt: FakeStt | None = None,
) -> AsyncIterator[config.Addresses]:
    """stt_svc (fake engine), mt_svc (`mt`, no phrase cache) and tts_svc (`tts`) on loopback,
    each with `own(its role, settings)` (its certificate, say); `settings.addresses` with theirs."""
    services = []
    try:
        ports = {}
        for name, service in (
            ("stt", await stt_server.create(own("stt", settings), engine=stt or FakeStt())),
            ("mt", await mt_server.create(own("mt", settings), engines=[mt], cache=NoCache())),
            ("tts", await tts_server.create(own("tts", settings), engine=tts, cache=tts_cache)),
        ):
            services.append(service)
            ports[name] = await service.start("127.0.0.1:0")
        yield dataclasses.replace(
            settings.addresses, **{n: f"127.0.0.1:{p}" for n, p in ports.items()})
    finally:
        for service in reversed(services):
            await service.stop(0.5)


@contextlib.asynccontextmanager
async def session_stack(
    settings: config.Settings,
    own: Callable[[str, config.Settings], config.Settings] = same,
) -> AsyncIterator[Stack]:
    """Fake stt/mt/tts and a real session_svc on loopback, per `settings.database`;
    each service runs with `own(its role, settings)` (its certificate, say).

    The phrase cache is off so that every utterance reaches the (fake) MT engine."""
    mt_engine = FakeMt(pairs=[(a, b) for a in LANGUAGES for b in LANGUAGES if a != b])
    stt_engine, tts_engine = FakeStt(), FakeTts()
    async with model_services(settings, mt_engine, tts_engine, own=own, stt=stt_engine) as addresses:
        session = await session_server.create(
            own("session", dataclasses.replace(settings, addresses=addresses)))
        try:
            address = f"127.0.0.1:{await session.start('127.0.0.1:0')}"
            full = dataclasses.replace(
                settings, addresses=dataclasses.replace(addresses, session=address))
            yield Stack(full, address, mt_engine, tts_engine, stt_engine)
        finally:
            await session.stop(0.5)
