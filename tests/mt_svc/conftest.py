"""Fixtures of the mt_svc tests: one real service per session, fakes per test."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest

from dragoman import config, rpc
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from mt_svc import server
from mt_svc.admission import Admission
from mt_svc.cache import NoCache
from mt_svc.engines.apertium import ApertiumEngine
from mt_svc.engines.base import MtEngine
from mt_svc.engines.bergamot import BergamotEngine
from mt_svc.engines.fake import FakeEngine
from tests.conftest import started

if TYPE_CHECKING:
    from dragoman.mt.v1.mt_pb2_grpc import TranslationServiceAsyncStub as Stub

# The apt packages CI installs: apertium + apertium-eng-spa. The engine is held
# to the English-Spanish modes so that es->pt is the pivot apertium>bergamot
# even on a machine that also has apertium-es-pt.
APERTIUM_MODES = ("eng-spa", "spa-eng")
ENGINES = "bergamot,ct2,apertium"
"""settings.mt.engines of these tests (the proposed default)."""


def with_mt(settings: config.Settings, **changes: Any) -> config.Settings:
    """`settings` with engines = ENGINES and the given settings.mt fields changed."""
    mt = dataclasses.replace(settings.mt, **{"engines": ENGINES, **changes})
    return dataclasses.replace(settings, mt=mt)


@pytest.fixture(scope="session")
async def mt(settings: config.Settings) -> AsyncIterator[Stub]:
    """A stub to one real mt_svc (Bergamot + Apertium, warmed up, in-process phrase cache)
    for the whole session."""
    engines: list[MtEngine] = [BergamotEngine(), ApertiumEngine(modes=APERTIUM_MODES)]
    service = await server.create(with_mt(settings), engines=engines)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield stub_of(channel)


@dataclasses.dataclass
class FakeService:
    """An mt_svc on fake engines, with the gate that holds their calls."""

    stub: Stub
    engines: list[FakeEngine]
    gate: asyncio.Event
    admission: Admission


@pytest.fixture
async def fake(settings: config.Settings) -> AsyncIterator[FakeService]:
    """mt_svc on two fake engines ("alpha" en<->pt, "beta" en<->es) that wait for `gate`
    (set at start), with one batch running and one waiting at most."""
    gate = asyncio.Event()
    gate.set()
    engines = [
        FakeEngine({("en", "pt"), ("pt", "en")}, name="alpha", license="MIT", gate=gate),
        FakeEngine({("en", "es"), ("es", "en")}, name="beta", license="GPL-2.0", gate=gate),
    ]
    admission = Admission(max_active=1, max_queued=1)
    service = await server.create(with_mt(settings), engines=engines, admission=admission,
                                  cache=NoCache())
    for engine in engines:
        engine.calls.clear()  # forget the warm-up
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield FakeService(stub_of(channel), engines, gate, admission)


def stub_of(channel: grpc.aio.Channel) -> Stub:
    return cast("Stub", mt_pb2_grpc.TranslationServiceStub(channel))


def request(
    source: str, target: str, *segments: str, glossary: dict[str, str] | None = None,
    keep: list[str] | None = None,
) -> mt_pb2.TranslateRequest:
    return mt_pb2.TranslateRequest(
        source_language_code=source, target_language_code=target, segments=list(segments),
        glossary=[mt_pb2.GlossaryEntry(source=s, target=t) for s, t in (glossary or {}).items()],
        do_not_translate=keep or [],
    )


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """Awaits a unary call that must fail; returns its error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value
