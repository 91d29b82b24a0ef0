"""Route decisions of dragoman.coverage on inventories shaped like real meshes."""

from __future__ import annotations

from dragoman import coverage
from dragoman.coverage import Inventory, Path, Recognizer, TextRoute
from dragoman.languages import SUPPORTED

WHISPER_BASE = Recognizer("whisper-base", frozenset({"*"}), translates=True)
TINY_EN = Recognizer("whisper-tiny.en", frozenset({"en"}))
VOICES = [(lang, f"voice-{lang}") for lang in SUPPORTED]


def default_like(recognizers: tuple[Recognizer, ...] = (WHISPER_BASE, TINY_EN),
                 voices: list[tuple[str, str]] = VOICES) -> Inventory:
    """The embedded default: Bergamot en<->pt, Apertium en<->es, es<->pt through English;
    every other pair known to mt_svc but not installed."""
    installed = {
        ("en", "pt"): ("bergamot",), ("pt", "en"): ("bergamot",),
        ("en", "es"): ("apertium",), ("es", "en"): ("apertium",),
    }
    routes = []
    for s in SUPPORTED:
        for t in SUPPORTED:
            if s == t:
                continue
            if (s, t) in installed:
                routes.append(TextRoute(s, t, installed[s, t]))
            elif {s, t} == {"es", "pt"}:
                routes.append(TextRoute(s, t, (installed[s, "en"][0], installed["en", t][0]), pivot=True))
            else:
                routes.append(TextRoute(s, t, ("ct2",), installed=False,
                                        install=f"run `dragoman models pull opus-mt-{s}-{t}`"))
    return Inventory.of(routes, recognizers, voices)


def test_installed_direct_route_wins() -> None:
    r = coverage.route(default_like(), "en", "pt")
    assert (r.path, r.engines, r.available, r.missing) == (Path.DIRECT, ("bergamot",), True, ())


def test_pivot_through_english() -> None:
    r = coverage.route(default_like(), "es", "pt")
    assert (r.path, r.engines) == (Path.PIVOT, ("apertium", "bergamot"))


def test_speech_translation_when_no_text_route_to_english() -> None:
    r = coverage.route(default_like(), "de", "en")
    assert (r.path, r.speech_model, r.engines, r.then_text) == (
        Path.SPEECH, "whisper-base", ("whisper-base:translate",), False)


def test_speech_translation_then_text_from_english() -> None:
    r = coverage.route(default_like(), "de", "pt")
    assert (r.path, r.engines, r.then_text) == (
        Path.SPEECH, ("whisper-base:translate", "bergamot"), True)


def test_text_route_beats_speech_translation() -> None:
    """pt -> en has Bergamot: the cascade, not Whisper's translation."""
    assert coverage.route(default_like(), "pt", "en").path is Path.DIRECT


def test_none_names_what_is_missing_and_the_command() -> None:
    r = coverage.route(default_like(), "de", "ja")
    assert r.path is Path.NONE and not r.available
    assert r.missing == ("no translation from de to ja",)
    assert r.install == "dragoman languages install de ja"
    assert r.problem == "no translation from de to ja: run `dragoman languages install de ja`"


def test_english_speech_is_never_speech_translated() -> None:
    """en -> ja: Whisper only translates into English, and en -> ja has no MT here."""
    r = coverage.route(default_like(), "en", "ja")
    assert r.path is Path.NONE and r.missing == ("no translation from en to ja",)


def test_english_only_models_cannot_speech_translate() -> None:
    inventory = default_like(recognizers=(TINY_EN,))
    r = coverage.route(inventory, "de", "en")
    assert r.path is Path.NONE
    assert r.missing == ("no speech recognition for de (German)", "no translation from de to en")


def test_missing_voice_makes_a_pair_unservable() -> None:
    inventory = default_like(voices=[v for v in VOICES if v[0] != "pt"])
    r = coverage.route(inventory, "en", "pt")
    assert r.path is Path.NONE and r.missing == ("no voice for pt (Portuguese)",)


def test_same_language_needs_no_translation() -> None:
    r = coverage.route(default_like(), "de", "de")
    assert (r.path, r.engines) == (Path.DIRECT, ("identity",))


def test_one_way_conversation() -> None:
    """de <-> en: Whisper translates German speech into English; nothing goes en -> de."""
    c = coverage.conversation(default_like(), "de", "en")
    assert c.there.path is Path.SPEECH and not c.back.available
    assert c.one_way and not c.two_way
    assert c.problem == "no translation from en to de: run `dragoman languages install en de`"
    both = coverage.conversation(default_like(), "en", "pt")
    assert both.two_way and not both.one_way and both.problem == ""


def test_matrix_of_the_default() -> None:
    routes = coverage.matrix(default_like())
    assert len(routes) == 15 * 14
    paths: dict[Path, int] = {}
    for r in routes.values():
        paths[r.path] = paths.get(r.path, 0) + 1
    # direct: en<->pt, en<->es; pivot: es<->pt; speech: 12 others -> en, and each of them -> es, pt
    assert paths == {Path.DIRECT: 4, Path.PIVOT: 2, Path.SPEECH: 36, Path.NONE: 168}


def test_inventory_from_the_services_replies() -> None:
    from dragoman.mt.v1 import mt_pb2
    from dragoman.stt.v1 import stt_pb2
    from dragoman.tts.v1 import tts_pb2

    inventory = Inventory.from_replies(
        mt_pb2.ListLanguagePairsResponse(pairs=[
            mt_pb2.LanguagePair(source_language_code="en", target_language_code="pt",
                                engines=["bergamot"], installed=True),
            mt_pb2.LanguagePair(source_language_code="de", target_language_code="en",
                                engines=["ct2"], install="run `x`"),
        ]),
        stt_pb2.ListModelsResponse(models=[
            stt_pb2.ModelInfo(name="whisper-base", language_codes=["*"], translates_to_english=True),
            stt_pb2.ModelInfo(name="whisper-tiny.en", language_codes=["en"]),
        ]),
        tts_pb2.ListVoicesResponse(voices=[
            tts_pb2.Voice(name="en_US-joe-medium", language_code="en-US"),
            tts_pb2.Voice(name="pf_dora", language_code="pt-BR"),
        ]),
    )
    assert coverage.route(inventory, "en", "pt").path is Path.DIRECT
    assert coverage.route(inventory, "de", "en").engines == ("whisper-base:translate",)
    assert coverage.route(inventory, "pt", "de").missing == (
        "no voice for de (German)", "no translation from pt to de")
