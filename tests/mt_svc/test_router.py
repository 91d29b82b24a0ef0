"""The router on fake engines: route choice, pivots, what-to-install messages, running routes."""

from __future__ import annotations

import pytest

from dragoman.errors import FailedPrecondition
from mt_svc.engines import OFFERS
from mt_svc.engines.base import Offer
from mt_svc.engines.fake import FakeEngine, tagged
from mt_svc.languages import all_pairs
from mt_svc.router import IDENTITY, Router

CONFIGURED = ["bergamot", "apertium"]


def _router(*engines: FakeEngine, preference: list[str] = CONFIGURED) -> Router:
    return Router(engines, OFFERS, preference)


def _fake(name: str, *pairs: str, license: str = "MIT") -> FakeEngine:
    return FakeEngine({(p[:2], p[3:]) for p in pairs}, name=name, license=license)


def test_first_installed_engine_wins() -> None:
    router = _router(_fake("one", "en-pt"), _fake("two", "en-pt", "pt-en"))
    assert router.route("en", "pt").engine == "one"
    assert router.route("pt", "en").engine == "two"


def test_direct_route_beats_pivot() -> None:
    router = _router(_fake("a", "es-en", "en-pt"), _fake("b", "es-pt"))
    route = router.route("es", "pt")
    assert (route.engine, route.pivoted) == ("b", False)


def test_pivot_through_english_uses_two_engines() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"), _fake("apertium", "en-es", "es-en",
                                                               license="GPL-2.0"))
    route = router.route("es", "pt")
    assert (route.engine, route.pivoted, route.installed) == ("apertium>bergamot", True, True)
    assert [(h.source, h.target) for h in route.hops] == [("es", "en"), ("en", "pt")]
    assert route.license == "GPL-2.0 AND MIT"
    assert router.route("pt", "es").engine == "bergamot>apertium"


def test_no_pivot_when_english_is_an_end() -> None:
    router = _router(_fake("x", "en-pt", "pt-en", "es-en"))
    with pytest.raises(FailedPrecondition, match="no engine installed for en->es"):
        router.route("en", "es")


def test_missing_pair_names_the_package_to_install() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"))
    with pytest.raises(FailedPrecondition) as info:
        router.route("en", "es")
    assert info.value.message == (
        "no engine installed for en->es; install apertium en->es: "
        "apt-get install -y apertium apertium-eng-spa")
    route = router.plan("en", "es")
    assert ([h.engine for h in route.hops], route.installed, route.license) == (
        ["apertium"], False, "GPL-2.0")


def test_half_installed_pivot_names_the_missing_hop() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"))
    with pytest.raises(FailedPrecondition) as info:
        router.route("it", "pt")  # it->en: nothing offers it; it->pt neither
    assert info.value.message.startswith("no engine installed for it->pt: no known engine")
    with pytest.raises(FailedPrecondition) as info:
        router.route("fr", "en")
    assert info.value.message == (
        "no engine installed for fr->en: no known engine translates it, directly or through "
        "English (installed here: en->pt, pt->en)")


def test_pivot_hint_when_one_hop_is_missing() -> None:
    # es->pt: apertium-es-pt (direct) is the simplest thing to install.
    router = _router(_fake("bergamot", "en-pt", "pt-en"))
    with pytest.raises(FailedPrecondition) as info:
        router.route("es", "pt")
    assert info.value.message == (
        "no engine installed for es->pt; install apertium es->pt: "
        "apt-get install -y apertium apertium-es-pt")
    # With no engine offering es->pt directly, the pivot's missing hop is named.
    offers = {"apertium": Offer("apertium", "GPL-2.0", {("es", "en"): "apt-get install x"})}
    router = Router([_fake("bergamot", "en-pt")], offers, CONFIGURED)
    with pytest.raises(FailedPrecondition) as info:
        router.route("es", "pt")
    assert info.value.message == (
        "no engine installed for es->pt (via English: apertium>bergamot); "
        "install apertium es->en: apt-get install x")


def test_engine_not_configured_is_suggested_with_the_setting() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"), preference=["bergamot"])
    with pytest.raises(FailedPrecondition) as info:
        router.route("es", "en")
    assert info.value.message == (
        "no engine installed for es->en; install apertium es->en: add apertium to settings "
        "mt.engines (DRAGOMAN_MT_ENGINES) and apt-get install -y apertium apertium-eng-spa")


def test_every_pair_has_a_plan_without_engines() -> None:
    router = _router()
    routes = [router.plan(s, t) for s, t in all_pairs()]
    assert len(routes) == 210
    assert not any(r.installed for r in routes)
    offered = {(r.source, r.target) for r in routes if r.hops}
    assert ("en", "pt") in offered and ("en", "de") not in offered


async def test_translate_frames_segments_and_runs_each_hop_once() -> None:
    first, second = _fake("a", "es-en"), _fake("b", "en-pt")
    router = _router(first, second)
    result = await router.translate("es", "pt", [" Hola. ", "\t", "Adiós.\n"])
    assert (result.engine, result.pivoted) == ("a>b", True)
    assert result.texts == [
        f" {tagged(tagged('Hola.', 'es', 'en', 'a'), 'en', 'pt', 'b')} ",
        "\t",
        f"{tagged(tagged('Adiós.', 'es', 'en', 'a'), 'en', 'pt', 'b')}\n",
    ]
    assert [c.texts for c in first.calls] == [("Hola.", "Adiós.")]
    assert len(second.calls) == 1


async def test_same_language_is_identity_without_engines() -> None:
    result = await _router().translate("pt", "pt", [" Olá ", ""])
    assert (result.texts, result.engine, result.pivoted) == ([" Olá ", ""], IDENTITY, False)


async def test_close_closes_every_engine() -> None:
    engines = [_fake("a", "en-pt"), _fake("b", "en-es")]
    await _router(*engines).close()
    assert all(e.closed for e in engines)
