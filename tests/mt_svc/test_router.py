"""The router on fake engines: route ranking, pivots, what-to-install messages, running routes."""

from __future__ import annotations

import pytest

from dragoman.errors import FailedPrecondition
from dragoman.languages import all_pairs
from mt_svc import engines as registry
from mt_svc.engines import OFFERS
from mt_svc.engines.base import Offer
from mt_svc.engines.fake import FakeEngine, tagged
from mt_svc.router import Router

CONFIGURED = registry.preference(["bergamot", "ct2", "apertium"])
"""The proposed default settings.mt.engines, with ct2 expanded into the catalogue."""


def _router(*engines: FakeEngine, preference: list[str] = CONFIGURED) -> Router:
    return Router(engines, OFFERS, preference)


def _fake(name: str, *pairs: str, license: str = "MIT") -> FakeEngine:
    return FakeEngine({(p[:2], p[3:]) for p in pairs}, name=name, license=license)


def _missing(router: Router, source: str, target: str) -> str:
    with pytest.raises(FailedPrecondition) as info:
        router.route(source, target)
    return info.value.message


def test_first_installed_engine_wins() -> None:
    router = _router(_fake("one", "en-pt"), _fake("two", "en-pt", "pt-en"))
    assert router.route("en", "pt").engine == "one"
    assert router.route("pt", "en").engine == "two"


def test_direct_route_wins_a_tie() -> None:
    router = _router(_fake("a", "es-en", "en-pt", "es-pt"))
    route = router.route("es", "pt")
    assert (route.engine, route.pivoted) == ("a", False)
    router = _router(_fake("a", "es-pt", "es-en"), _fake("b", "en-pt"))
    assert router.route("es", "pt").engine == "a"


def test_pivot_through_better_engines_beats_a_worse_direct_one() -> None:
    # e.g. OPUS-MT fr->en and en->es (neural) rather than Apertium fr->es (rule-based).
    router = _router(_fake("a", "es-en", "en-pt"), _fake("b", "es-pt"))
    route = router.route("es", "pt")
    assert (route.engine, route.pivoted) == ("a>a", True)


def test_pivot_through_english_uses_two_engines() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"), _fake("apertium", "en-es", "es-en",
                                                               license="GPL-2.0"))
    route = router.route("es", "pt")
    assert (route.engine, route.pivoted, route.installed) == ("apertium>bergamot", True, True)
    assert [(h.source, h.target) for h in route.hops] == [("es", "en"), ("en", "pt")]
    assert route.license == "GPL-2.0 AND MIT"
    assert route.version == "apertium@1>bergamot@1"
    assert route.install == ""
    assert router.route("pt", "es").engine == "bergamot>apertium"


def test_no_pivot_when_english_is_an_end() -> None:
    router = _router(_fake("x", "en-pt", "pt-en", "es-en"), preference=["x"])
    assert _missing(router, "en", "es").startswith("no engine installed for en->es;")


def test_missing_pair_names_the_model_to_pull() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"))
    assert _missing(router, "en", "de") == (
        "no engine installed for en->de; install opus-mt-en-de en->de: "
        "run `dragoman models pull opus-mt-en-de`")
    route = router.plan("en", "de")
    assert ([h.engine for h in route.hops], route.installed, route.license, route.install) == (
        ["opus-mt-en-de"], False, "CC-BY-4.0", "run `dragoman models pull opus-mt-en-de`")
    # OPUS-MT is preferred to Apertium, which is preferred to nothing.
    assert router.plan("en", "es").engine == "opus-mt-en-es"
    assert _router(preference=["bergamot", "apertium"]).plan("en", "es").engine == "apertium"


def test_pivot_through_two_models_to_pull() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"))
    assert _missing(router, "fr", "de") == (
        "no engine installed for fr->de (via English: opus-mt-fr-en>opus-mt-en-de); install "
        "opus-mt-fr-en fr->en: run `dragoman models pull opus-mt-fr-en`; "
        "opus-mt-en-de en->de: run `dragoman models pull opus-mt-en-de`")
    # Half installed: only the missing hop is named.
    assert _missing(router, "fr", "pt") == (
        "no engine installed for fr->pt (via English: opus-mt-fr-en>bergamot); install "
        "opus-mt-fr-en fr->en: run `dragoman models pull opus-mt-fr-en`")


def test_gaps_are_filled_by_a_many_to_many_model() -> None:
    router = _router()
    # No OPUS-MT en->ja, and opus-mt-tc-big-en-ko is known to be broken: M2M-100.
    assert router.plan("en", "ja").engine == "m2m100-418m"
    assert router.plan("en", "ko").engine == "m2m100-418m"
    assert router.plan("ja", "en").engine == "opus-mt-ja-en"
    # ja->ko: the pivot would need M2M-100 anyway, so the direct route wins.
    assert router.plan("ja", "ko").engine == "m2m100-418m"
    assert _missing(router, "en", "ko") == (
        "no engine installed for en->ko; install m2m100-418m en->ko: "
        "run `dragoman models pull m2m100-418m`")


def test_non_commercial_model_is_never_suggested_but_used_once_pulled() -> None:
    routes = [_router().plan(s, t) for s, t in all_pairs()]
    assert not any("nllb" in r.engine or "NC" in r.license for r in routes)
    nllb = FakeEngine(set(all_pairs()), name="nllb-200-distilled-600m", license="CC-BY-NC-4.0")
    route = _router(_fake("bergamot", "en-pt", "pt-en"), nllb).route("en", "de")
    assert (route.engine, route.license) == ("nllb-200-distilled-600m", "CC-BY-NC-4.0")


def test_half_installed_pivot_names_the_missing_hop() -> None:
    offers = {"apertium": Offer("apertium", "GPL-2.0", {("es", "en"): "apt-get install x"})}
    router = Router([_fake("bergamot", "en-pt")], offers, ["bergamot", "apertium"])
    assert _missing(router, "es", "pt") == (
        "no engine installed for es->pt (via English: apertium>bergamot); "
        "install apertium es->en: run `apt-get install x`")
    assert _missing(router, "it", "pt").startswith("no engine installed for it->pt: no known engine")
    assert _missing(router, "fr", "en") == (
        "no engine installed for fr->en: no known engine translates it, directly or through "
        "English (installed here: en->pt)")


def test_engine_not_configured_is_suggested_with_the_setting() -> None:
    router = _router(_fake("bergamot", "en-pt", "pt-en"), preference=["bergamot"])
    assert _missing(router, "es", "en") == (
        "no engine installed for es->en; install apertium es->en: add apertium to settings "
        "mt.engines (DRAGOMAN_MT_ENGINES) and run `apt-get install -y apertium apertium-eng-spa`")
    assert _missing(router, "en", "de") == (
        "no engine installed for en->de; install opus-mt-en-de en->de: add ct2 to settings "
        "mt.engines (DRAGOMAN_MT_ENGINES) and run `dragoman models pull opus-mt-en-de`")


def test_every_pair_has_a_plan_without_engines() -> None:
    routes = [_router().plan(s, t) for s, t in all_pairs()]
    assert len(routes) == 210
    assert all(r.hops and not r.installed and r.install for r in routes)
    # OPUS-MT from every language to English, and from English to all but ja and ko;
    # Bergamot (configured first) for en<->pt.
    direct = [r for r in routes if not r.pivoted]
    assert sum(r.engine.startswith("opus-mt-") for r in direct) == 14 + 12 - 2
    assert {r.engine for r in direct if {r.source, r.target} == {"en", "pt"}} == {"bergamot"}
    assert {r.target for r in direct if r.engine == "m2m100-418m"} == {"ja", "ko"}


async def test_run_sends_the_whole_batch_through_each_hop_once() -> None:
    first, second = _fake("a", "es-en"), _fake("b", "en-pt")
    router = _router(first, second)
    route = router.route("es", "pt")
    assert await router.run(route, ["Hola.", "Adiós."]) == [
        tagged(tagged(s, "es", "en", "a"), "en", "pt", "b") for s in ("Hola.", "Adiós.")]
    assert [c.texts for c in first.calls] == [("Hola.", "Adiós.")]
    assert len(second.calls) == 1


async def test_close_closes_every_engine() -> None:
    engines = [_fake("a", "en-pt"), _fake("b", "en-es")]
    await _router(*engines).close()
    assert all(e.closed for e in engines)
