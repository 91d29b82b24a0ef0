"""Language codes, text framing and splitting, the apertium stream format, engine settings."""

from __future__ import annotations

import pytest

from dragoman import config
from dragoman.errors import InvalidArgument, Unavailable
from dragoman.languages import SUPPORTED, all_pairs, normalise
from mt_svc import engines
from mt_svc.engines.apertium import NullFlushPipeline, from_stream, mode_pair, to_stream
from mt_svc.engines.ct2 import DecodeOptions
from mt_svc.glossary import Masker, Term, mask_numbers, numbers
from mt_svc.text import Framed, chunks, sentences
from mt_svc.text import normalise as normalise_text


@pytest.mark.parametrize(
    ("code", "language"),
    [("pt-BR", "pt"), ("PT", "pt"), ("pt_br", "pt"), ("es-419", "es"), ("zh-Hant-TW", "zh"),
     (" en ", "en"), ("EN-us", "en"), ("sr-Latn", None), ("", None), ("english", None),
     ("pt--BR", None), ("p t", None), ("e", None), ("por", None), ("x-klingon", None)],
)
def test_normalise(code: str, language: str | None) -> None:
    if language is None:
        with pytest.raises(InvalidArgument, match="supported languages: en, es, fr, de, it, pt"):
            normalise(code, "source_language_code")
    else:
        assert normalise(code) == language


def test_fifteen_languages_and_210_pairs() -> None:
    assert len(SUPPORTED) == len(set(SUPPORTED)) == 15
    assert len(all_pairs()) == len(set(all_pairs())) == 210


@pytest.mark.parametrize(
    ("segment", "framed"),
    [("Hi.", ("", "Hi.", "")), ("  Hi there.\n", ("  ", "Hi there.", "\n")),
     (" \t", (" \t", "", "")), ("a", ("", "a", ""))],
)
def test_framed(segment: str, framed: tuple[str, str, str]) -> None:
    f = Framed.of(segment)
    assert (f.lead, f.core, f.trail) == framed
    assert f.wrap(f.core) == segment or not f.core


def test_chunks_keep_short_text_whole() -> None:
    text = "Mr. Smith arrived at 9 a.m. today. He left."
    assert chunks(text, 100) == [(text, "")]


def test_chunks_split_at_sentences_then_clauses_then_words() -> None:
    text = "One two three. Four five, six seven eight, nine.\nTen eleven twelve thirteen fourteen."
    pieces = chunks(text, 20)
    assert "".join(p + s for p, s in pieces) == text
    assert all(len(p) <= 20 for p, _ in pieces)
    assert pieces[0] == ("One two three.", " ")
    assert ("Four five,", " ") in pieces
    assert pieces[-1][1] == ""


def test_chunks_cut_an_overlong_word() -> None:
    pieces = chunks("x" * 45, 10)
    assert "".join(p for p, _ in pieces) == "x" * 45
    assert all(len(p) <= 10 for p, _ in pieces)


def test_chunks_with_a_custom_measure() -> None:
    words = " ".join(f"w{i}" for i in range(30)) + "."
    pieces = chunks(words, 8, measure=lambda t: len(t.split()))
    assert "".join(p + s for p, s in pieces) == words
    assert [len(p.split()) for p, _ in pieces] == [8, 8, 8, 6]


def test_apertium_stream_format() -> None:
    assert to_stream("a^b$ [c] x/y <z> {w} @ \\") == (
        b"a\\^b\\$ \\[c\\] x\\/y \\<z\\> \\{w\\} \\@ \\\\[]\0")
    assert to_stream("one\ntwo  three\0") == b"one[\n]two[  ]three []\0"
    assert from_stream(b"\\[Hola\\] \\^ \\\\ mundo.[  ]Bien[]") == "[Hola] ^ \\ mundo. Bien"
    assert from_stream(" Perdí mi  equipaje.[]".encode()) == "Perdí mi equipaje."


@pytest.mark.parametrize(
    ("mode", "pair"),
    [("eng-spa", ("en", "es")), ("spa-eng", ("es", "en")), ("es-pt", ("es", "pt")),
     ("fr-es", ("fr", "es")), ("spa-eng_US", None), ("eng-cat", None), ("en-gl", None),
     ("eng-spa-tagger", None)],
)
def test_apertium_mode_names(mode: str, pair: tuple[str, str] | None) -> None:
    assert mode_pair(mode) == pair


def test_configured_engines() -> None:
    assert engines.configured(" Bergamot, apertium,,bergamot ") == ["bergamot", "apertium"]
    with pytest.raises(InvalidArgument, match="engine.* marian; known: bergamot, apertium, fake, ct2"):
        engines.configured("bergamot,marian")
    names = engines.preference(engines.configured("bergamot,ct2,apertium"))
    assert names[0] == "bergamot" and names[-1] == "apertium"
    assert names[1:4] == ["opus-mt-en-es", "opus-mt-es-en", "opus-mt-en-fr"]
    assert "m2m100-418m" in names and "nllb-200-distilled-600m" in names


def test_load_skips_nothing_it_can_build(tmp_path: object) -> None:
    loaded = engines.load(["fake", "ct2"], models_dir=str(tmp_path))  # nothing pulled there
    assert [e.capabilities.name for e in loaded] == ["fake"]


async def test_pipeline_answers_block_by_block_and_restarts_after_failures() -> None:
    # `cat` echoes each NUL-terminated block: a stand-in for an apertium mode.
    echo = NullFlushPipeline("echo", "cat", timeout_s=5)
    try:
        assert await echo.translate(["a [b] ^c$", "two\nlines"]) == ["a [b] ^c$", "two\nlines"]
    finally:
        await echo.close()
    stalled = NullFlushPipeline("stall", "sleep 30", timeout_s=0.2)
    with pytest.raises(Unavailable, match="apertium stall failed or stalled; it restarts"):
        await stalled.translate(["x"])
    dead = NullFlushPipeline("dead", "exit 3", timeout_s=5)
    with pytest.raises(Unavailable, match="apertium dead failed or stalled"):
        await dead.translate(["x"])
    flaky = NullFlushPipeline("flaky", 'read -r -d "" x; exit 1', timeout_s=5)
    for _ in range(2):  # each call starts a fresh process after the last one died
        with pytest.raises(Unavailable):
            await flaky.translate(["x"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith arrived at 9 a.m. today. He left.", ["Mr. Smith arrived at 9 a.m. today.", "He left."]),
        ("It costs 3.5 euros. Then 1.000 people came! Why? Yes...",
         ["It costs 3.5 euros.", "Then 1.000 people came!", "Why?", "Yes..."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("See e.g. this. And J. Doe came. Item no. 5 is here.",
         ["See e.g. this.", "And J. Doe came.", "Item no. 5 is here."]),
        ("¿Qué? ¡Nada! Bien.", ["¿Qué?", "¡Nada!", "Bien."]),
        ("你好。我很好！谢谢", ["你好。", "我很好！", "谢谢"]),
        ("One\n\nTwo.  Three", ["One", "Two.", "Three"]),
        ("no end", ["no end"]),
    ],
)
def test_sentences(text: str, expected: list[str]) -> None:
    split = sentences(text)
    assert [s for s, _ in split] == expected
    assert "".join(s + sep for s, sep in split) == text


def test_normalise_collapses_whitespace_and_composes() -> None:
    assert normalise_text(" Ol\u0061\u0301  mundo\t!\n") == "Olá mundo !"


@pytest.mark.parametrize(
    ("text", "masked", "restored"),
    [
        ("Check-in at the Front  Desk.", "XQ0Z at the XQ1Z.", "Registo at the Receção."),
        ("the front desk, the front desks", "the XQ0Z, the front desks", "the receção, the front desks"),
        ("Apple and apple", "XQ0Z and apple", "Apple and apple"),
        ("东京站很大", "XQ0Z很大", "东京站很大"),
        ("nothing here", "nothing here", "nothing here"),
    ],
)
def test_masker(text: str, masked: str, restored: str) -> None:
    terms = [Term("check-in", "registo"), Term("front desk", "receção"), Term("Apple"), Term("东京站")]
    m = Masker(terms).mask(text)
    assert m.text == masked
    assert m.restore(m.text) == restored
    assert m.restore(m.text.replace("XQ0Z", "x q0z")) == restored  # found leniently
    if m.slots:
        assert m.restore(m.text.replace("XQ0Z", "")) is None  # lost
        assert m.restore(m.text + " XQ0Z") is None  # doubled


def test_numbers_are_masked_around_existing_placeholders() -> None:
    m = mask_numbers("Room 214 for XQ0Z at 7:45, 1.250,50 euros")
    assert m.text == "Room XQ1000Z for XQ0Z at XQ1001Z, XQ1002Z euros"
    assert m.slots == ("214", "7:45", "1.250,50")
    assert m.restore("Quarto XQ1000Z para XQ0Z às XQ1001Z, XQ1002Z euros") == (
        "Quarto 214 para XQ0Z às 7:45, 1.250,50 euros")
    assert numbers("Room 214 at 7:45 for XQ12Z") == numbers("às 7:45, quarto ٢١٤") == {214: 1, 7: 1, 45: 1}


def test_decode_options_are_the_mt_settings() -> None:
    assert DecodeOptions() == DecodeOptions.of(config.MtSettings())
    options = DecodeOptions.of(config.MtSettings(beam_size=4, max_output_tokens=99))
    assert (options.beam_size, options.max_output_tokens) == (4, 99)
