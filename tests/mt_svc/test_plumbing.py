"""mt_svc over real gRPC with fake engines: routing, framing, queueing, failures."""

from __future__ import annotations

import asyncio

import grpc

from dragoman.errors import Unavailable
from dragoman.mt.v1 import mt_pb2
from mt_svc.engines.fake import tagged
from tests.mt_svc.conftest import FakeService, request, rpc_error


async def _until(condition: object) -> None:
    """Waits (without a deadline of its own: pytest-timeout bounds it) until `condition()`."""
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.005)


async def test_direct_and_pivot_routes(fake: FakeService) -> None:
    reply = await fake.stub.Translate(request("pt-BR", "en", "Olá."))
    assert [(t.text, t.engine, t.pivoted) for t in reply.translations] == [
        (tagged("Olá.", "pt", "en", "alpha"), "alpha", False)]
    reply = await fake.stub.Translate(request("es", "pt", "Hola.", "Adiós."))
    assert [(t.text, t.engine, t.pivoted) for t in reply.translations] == [
        (tagged(tagged(s, "es", "en", "beta"), "en", "pt", "alpha"), "beta>alpha", True)
        for s in ("Hola.", "Adiós.")]
    # One call per hop, carrying the whole batch.
    assert [(c.source, c.target, len(c.texts)) for e in fake.engines for c in e.calls] == [
        ("pt", "en", 1), ("en", "pt", 2), ("es", "en", 2)]


async def test_engines_see_stripped_text_and_whitespace_is_kept(fake: FakeService) -> None:
    reply = await fake.stub.Translate(request("en", "pt", "  Hi.\n", "   ", "Bye. "))
    assert [t.text for t in reply.translations] == [
        f"  {tagged('Hi.', 'en', 'pt', 'alpha')}\n", "   ", f"{tagged('Bye.', 'en', 'pt', 'alpha')} "]
    assert [c.texts for c in fake.engines[0].calls] == [("Hi.", "Bye.")]
    reply = await fake.stub.Translate(request("en", "pt", " ", "\n"))
    assert [t.text for t in reply.translations] == [" ", "\n"]
    assert len(fake.engines[0].calls) == 1  # nothing to translate: no engine call


async def test_full_queue_is_resource_exhausted_then_drains(fake: FakeService) -> None:
    fake.gate.clear()
    running = asyncio.ensure_future(fake.stub.Translate(request("en", "pt", "one")))
    await _until(lambda: fake.admission.active == 1)
    queued = asyncio.ensure_future(fake.stub.Translate(request("en", "es", "two")))
    await _until(lambda: fake.admission.queued == 1)

    error = await rpc_error(fake.stub.Translate(request("pt", "en", "three")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "translation queue is full (1 batches running, 1 waiting); retry in 0.5 s")
    assert ("retry-after", "0.500") in tuple(error.trailing_metadata() or ())
    # Identity needs no engine, so it is not queued.
    same = await fake.stub.Translate(request("en", "en", "four"))
    assert same.translations[0].text == "four"

    fake.gate.set()
    assert (await running).translations[0].text == tagged("one", "en", "pt", "alpha")
    assert (await queued).translations[0].text == tagged("two", "en", "es", "beta")
    assert (fake.admission.active, fake.admission.queued) == (0, 0)


async def test_cancelled_call_frees_its_slot(fake: FakeService) -> None:
    fake.gate.clear()
    call = fake.stub.Translate(request("en", "pt", "never"))
    await _until(lambda: fake.admission.active == 1)
    call.cancel()
    await _until(lambda: fake.admission.active == 0)
    fake.gate.set()
    reply = await fake.stub.Translate(request("en", "pt", "again"))
    assert reply.translations[0].text == tagged("again", "en", "pt", "alpha")


async def test_engine_failures_map_to_statuses_and_serving_goes_on(fake: FakeService) -> None:
    alpha = fake.engines[0]
    alpha.fail_with = Unavailable("alpha crashed; it restarts on the next call")
    error = await rpc_error(fake.stub.Translate(request("en", "pt", "Hi.")))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAVAILABLE, "alpha crashed; it restarts on the next call")

    alpha.fail_with = RuntimeError("model exploded")
    error = await rpc_error(fake.stub.Translate(request("es", "pt", "Hola.")))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details().startswith("internal error (ref ")
    assert "exploded" not in error.details()

    alpha.fail_with = None
    reply = await fake.stub.Translate(request("en", "pt", "Hi."))
    assert reply.translations[0].text == tagged("Hi.", "en", "pt", "alpha")
    assert (fake.admission.active, fake.admission.queued) == (0, 0)


async def test_list_language_pairs_on_fakes(fake: FakeService) -> None:
    reply = await fake.stub.ListLanguagePairs(mt_pb2.ListLanguagePairsRequest())
    assert len(reply.pairs) == 210
    pairs = {(p.source_language_code, p.target_language_code): p for p in reply.pairs}
    es_pt = pairs[("es", "pt")]
    assert (list(es_pt.engines), es_pt.pivot, es_pt.installed, es_pt.license) == (
        ["beta", "alpha"], True, True, "GPL-2.0 AND MIT")
    assert sum(p.installed for p in reply.pairs) == 6
    assert not any(p.installed for (s, t), p in pairs.items() if "de" in (s, t))
