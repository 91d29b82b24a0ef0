"""The request pipeline on fake engines: sentences, the phrase cache, glossary masking and its repair."""

from __future__ import annotations

import re

from mt_svc.cache import MemoryCache
from mt_svc.engines import OFFERS
from mt_svc.engines.fake import FakeEngine, tagged
from mt_svc.glossary import Term
from mt_svc.pipeline import Pipeline
from mt_svc.router import IDENTITY, Router


def _pipeline(*engines: FakeEngine, cache_entries: int = 100) -> Pipeline:
    return Pipeline(Router(engines, OFFERS, []), MemoryCache(cache_entries))


def _fake(name: str, *pairs: str, rewrite: object = None) -> FakeEngine:
    return FakeEngine({(p[:2], p[3:]) for p in pairs}, name=name, rewrite=rewrite)  # type: ignore[arg-type]


async def test_segments_are_framed_split_into_sentences_and_deduplicated() -> None:
    first, second = _fake("a", "es-en"), _fake("b", "en-pt")
    pipeline = _pipeline(first, second)
    result = await pipeline.translate("es", "pt", [" Hola.  ¿Qué tal? ", "\t", "Hola.\n"])
    assert (result.engine, result.pivoted, result.cached) == ("a>b", True, [False, False, False])

    def both(s: str) -> str:
        return tagged(tagged(s, "es", "en", "a"), "en", "pt", "b")

    assert result.texts == [f" {both('Hola.')}  {both('¿Qué tal?')} ", "\t", f"{both('Hola.')}\n"]
    # One call per hop with each distinct sentence once.
    assert [c.texts for c in first.calls] == [("Hola.", "¿Qué tal?")]
    assert len(second.calls) == 1


async def test_repeats_come_from_the_cache_per_sentence() -> None:
    engine = _fake("a", "en-pt")
    pipeline = _pipeline(engine)
    first = await pipeline.translate("en", "pt", ["Good morning. See you."])
    again = await pipeline.translate("en", "pt", ["Good   morning.  See you.", "See you. New one."])
    # Whitespace inside a sentence is normalised, the separators between sentences are kept.
    morning, see_you = (tagged(s, "en", "pt", "a") for s in ("Good morning.", "See you."))
    assert first.texts == [f"{morning} {see_you}"]
    assert again.texts[0] == f"{morning}  {see_you}"
    assert again.cached == [True, False]
    assert [c.texts for c in engine.calls] == [("Good morning.", "See you."), ("New one.",)]
    stats = pipeline.cache.stats
    assert (stats.hits, stats.misses) == (2, 3)


async def test_the_cache_key_holds_the_engine_version() -> None:
    cache = MemoryCache(10)
    old = Pipeline(Router([_fake("a", "en-pt")], OFFERS, []), cache)
    await old.translate("en", "pt", ["Hi."])
    newer = FakeEngine({("en", "pt")}, name="a")
    newer._capabilities = type(newer.capabilities)("a", "2", "MIT", frozenset({("en", "pt")}))
    result = await Pipeline(Router([newer], OFFERS, []), cache).translate("en", "pt", ["Hi."])
    assert (result.cached, len(newer.calls)) == ([False], 1)


async def test_same_language_is_identity_without_engines() -> None:
    result = await _pipeline().translate("pt", "pt", [" Olá ", ""], [Term("Olá", "Oi")])
    assert (result.texts, result.engine, result.pivoted) == ([" Olá ", ""], IDENTITY, False)


async def test_glossary_and_do_not_translate_terms_are_masked_and_restored() -> None:
    engine = _fake("a", "en-pt")
    pipeline = _pipeline(engine)
    terms = [Term("front desk", "receção"), Term("Dragoman"), Term("check-in", "registo")]
    result = await pipeline.translate(
        "en", "pt", ["Check-in at the Front  Desk of Dragoman. Ask the front desk."], terms)
    assert [c.texts for c in engine.calls] == [("XQ0Z at the XQ1Z of XQ2Z.", "Ask the XQ3Z.")]
    assert result.texts == [
        f"{tagged('Registo at the Receção of Dragoman.', 'en', 'pt', 'a')} "
        f"{tagged('Ask the receção.', 'en', 'pt', 'a')}"]
    # "Dragoman" has a capital: it does not match "dragoman"; the terms are whole words.
    result = await pipeline.translate("en", "pt", ["dragoman front desks"], terms)
    assert engine.calls[-1].texts == ("dragoman front desks",)


async def test_a_lost_placeholder_is_repaired_by_translating_around_the_terms() -> None:
    # This engine drops anything that looks like a placeholder, as a model might.
    engine = _fake("a", "en-pt", rewrite=lambda t: re.sub(r"XQ\d+Z ?", "", t))
    pipeline = _pipeline(engine)
    result = await pipeline.translate("en", "pt", ["Call Dragoman now. Bye."], [Term("Dragoman")])
    repaired = f"{tagged('Call', 'en', 'pt', 'a')} Dragoman {tagged('now.', 'en', 'pt', 'a')}"
    assert result.texts == [f"{repaired} {tagged('Bye.', 'en', 'pt', 'a')}"]
    assert [c.texts for c in engine.calls] == [("Call XQ0Z now.", "Bye."), ("Call", "now.")]
    # The repaired translation is what the cache keeps.
    again = await pipeline.translate("en", "pt", ["Call Dragoman now."], [Term("Dragoman")])
    assert (again.texts, again.cached, len(engine.calls)) == ([repaired], [True], 2)


async def test_a_dropped_number_is_repaired_by_masking_the_numbers() -> None:
    # This engine loses "214" unless it is hidden behind a placeholder, as Bergamot
    # does with "Is room 214 free?" ("O quarto é gratuito?").
    engine = _fake("a", "en-pt", rewrite=lambda t: t.replace(" 214", ""))
    pipeline = _pipeline(engine)
    result = await pipeline.translate(
        "en", "pt", ["Is room 214 free for Dragoman? It costs 1.250,50 at 7:45. Room 12."],
        [Term("Dragoman")])
    assert [c.texts for c in engine.calls] == [
        ("Is room 214 free for XQ0Z?", "It costs 1.250,50 at 7:45.", "Room 12."),
        ("Is room XQ1000Z free for XQ0Z?",),
    ]
    assert result.texts == [" ".join(tagged(s, "en", "pt", "a") for s in (
        "Is room 214 free for Dragoman?", "It costs 1.250,50 at 7:45.", "Room 12."))]
