"""session_svc.routes: the cached inventory and the checks before a session."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from dragoman.coverage import Path
from dragoman.errors import FailedPrecondition, Unavailable
from dragoman.mt.v1 import mt_pb2
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2
from session_svc import routes
from tests.dragoman.test_coverage import default_like


class Lists:
    """Stands in for Downstream's three List* calls (plumbing only); counts them."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None

    async def _answer(self, reply: Any) -> Any:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return reply

    async def list_pairs(self) -> mt_pb2.ListLanguagePairsResponse:
        return await self._answer(mt_pb2.ListLanguagePairsResponse(pairs=[mt_pb2.LanguagePair(
            source_language_code="en", target_language_code="pt", engines=["bergamot"],
            installed=True)]))

    async def list_models(self) -> stt_pb2.ListModelsResponse:
        return await self._answer(stt_pb2.ListModelsResponse(models=[stt_pb2.ModelInfo(
            name="whisper-base", language_codes=["*"], translates_to_english=True)]))

    async def list_voices(self) -> tts_pb2.ListVoicesResponse:
        return await self._answer(tts_pb2.ListVoicesResponse(voices=[
            tts_pb2.Voice(name="joe", language_code="en-US"),
            tts_pb2.Voice(name="dora", language_code="pt")]))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_inventory_is_asked_once_per_ttl_and_kept_while_a_service_is_down() -> None:
    lists, clock = Lists(), Clock()
    coverage = routes.Coverage(lists, ttl_s=30.0, clock=clock)  # type: ignore[arg-type]
    lists.fail = Unavailable("translation is unavailable")
    with pytest.raises(Unavailable) as info:
        await coverage.inventory()
    assert info.value.message == (
        "cannot tell which languages this deployment serves: translation is unavailable")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    lists.fail, lists.calls = None, 0
    first = await coverage.inventory()
    assert first.recognises("de") and first.speaks("pt") and not first.speaks("de")
    clock.now += 29
    assert await coverage.inventory() is first and lists.calls == 3
    clock.now += 2
    lists.fail = Unavailable("speech synthesis is unavailable")
    assert await coverage.inventory() is first  # stale but known beats refusing every session
    lists.fail = None
    assert await coverage.inventory() is not first


def test_a_creator_needs_recognition_or_a_voice() -> None:
    inventory = default_like(recognizers=(), voices=[("en", "joe")])
    routes.check_speaker(inventory, "en")  # spoken, not recognised: may still listen
    with pytest.raises(FailedPrecondition) as info:
        routes.check_speaker(inventory, "ja")
    assert info.value.message == (
        "ja (Japanese) can be neither recognised nor spoken here: run `dragoman languages install ja`")


def test_pairs_both_ways_one_way_and_none() -> None:
    inventory = default_like()
    assert routes.check_pair(inventory, "en", "pt", allow_one_way=False).two_way
    pair = routes.check_pair(inventory, "en", "de", allow_one_way=True)
    assert pair.one_way and pair.back.path is Path.SPEECH
    with pytest.raises(FailedPrecondition) as info:
        routes.check_pair(inventory, "en", "de", allow_one_way=False)
    assert info.value.message == (
        "no translation from en to de: run `dragoman languages install en de`; only de -> en is "
        "translated here (speech): set allow_one_way to join a one-way session")
    with pytest.raises(FailedPrecondition) as info:
        routes.check_pair(inventory, "ja", "de", allow_one_way=True)
    assert info.value.message == (
        "no translation from ja to de: run `dragoman languages install ja de`; "
        "no translation from de to ja: run `dragoman languages install de ja`")
