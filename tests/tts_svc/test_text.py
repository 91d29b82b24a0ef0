"""Unit tests of the text splitter (tts_svc.text)."""

from __future__ import annotations

import pytest

from tts_svc.text import (
    CLAUSE_PAUSE_MS,
    FORCED_PAUSE_MS,
    MAX_PIECE_CHARS,
    MAX_PIECE_WORDS,
    SENTENCE_PAUSE_MS,
    max_first_words,
    sentences,
    split,
)


def texts(text: str, language: str = "en", first_words: int = 6) -> list[str]:
    return [p.text for p in split(text, language, first_words=first_words)]


def test_short_sentence_is_one_piece() -> None:
    assert texts("Hello, how are you?") == ["Hello, how are you?"]


def test_long_first_sentence_is_cut_at_a_comma() -> None:
    assert texts("Good morning, I would like to book a table for two people tonight.") == [
        "Good morning,",
        "I would like to book a table for two people tonight.",
    ]


def test_the_latest_comma_within_six_words_is_taken() -> None:
    text = "Well, if you ask me, I think we should leave right now."
    assert texts(text) == ["Well, if you ask me,", "I think we should leave right now."]


def test_semicolon_and_dash_are_clause_boundaries() -> None:
    assert texts("The train was very late; we missed the start of the show.")[0] == (
        "The train was very late;"
    )
    assert texts("My brother and I — both of us tired — went home early.")[0] == ("My brother and I")


def test_without_punctuation_the_cut_goes_before_a_conjunction() -> None:
    assert texts("Yesterday I went to the store and bought bread, milk and eggs.") == [
        "Yesterday I went to the store",
        "and bought bread, milk and eggs.",
    ]


@pytest.mark.parametrize(
    ("language", "text", "first"),
    [
        ("es", "Yo creo que el tren de la mañana sale muy tarde hoy.", "Yo creo"),
        ("es", "Hola, me gustaría reservar una mesa para dos personas.", "Hola,"),
        ("pt", "Eu acho que o trem da manhã vai chegar atrasado hoje.", "Eu acho"),
        ("fr", "Je pense que le train du matin arrive en retard.", "Je pense"),
    ],
)
def test_conjunctions_and_commas_of_other_languages(language: str, text: str, first: str) -> None:
    assert texts(text, language)[0] == first


def test_conjunction_needs_two_words_before_it() -> None:
    # "que" after one word would leave a one-word first piece: the comma wins instead.
    assert texts("Creo que el tren de la mañana, dicen, sale tarde.", "es")[0] == (
        "Creo que el tren de la mañana,"
    )


def test_no_cut_that_leaves_a_lone_word_behind() -> None:
    assert texts("We walked for hours along the river bank, too.") == [
        "We walked for hours along the river bank, too."
    ]


def test_a_sentence_of_at_most_max_first_words_without_boundary_is_not_cut() -> None:
    assert max_first_words(6) == 10
    text = "The quick brown fox jumps over the lazy dog today."
    assert texts(text) == [text]


def test_a_longer_sentence_without_boundary_is_cut_before_an_article_near_first_words() -> None:
    text = "The quick brown fox jumps over the lazy dog near the river bank today."
    pieces = split(text, "en")
    assert [p.text for p in pieces] == [
        "The quick brown fox jumps over",
        "the lazy dog near the river bank today.",
    ]
    assert pieces[0].pause_after_ms == FORCED_PAUSE_MS


@pytest.mark.parametrize(
    ("language", "text", "first"),
    [
        # Kokoro asks for 3 words: max_first_words(3) == 5.
        (
            "es",
            "Buenos días me gustaría reservar una mesa para dos personas.",
            "Buenos días me gustaría reservar",
        ),
        ("es", "Quiero comprar dos billetes de tren para mañana.", "Quiero comprar dos billetes"),
        ("en", "I think the train from the city arrives late today.", "I think"),
        ("pt", "Eu gostaria de reservar uma mesa para duas pessoas.", "Eu gostaria"),
    ],
)
def test_a_slow_engine_gets_a_shorter_first_piece(language: str, text: str, first: str) -> None:
    assert texts(text, language, first_words=3)[0] == first


def test_without_a_phrase_start_the_forced_cut_is_after_first_words() -> None:
    text = "Zwölf Boxkämpfer jagen Viktor quer durch Sylt heute Abend sehr schnell."
    assert texts(text, "de", first_words=3)[0] == "Zwölf Boxkämpfer jagen"


def test_only_the_first_sentence_is_cut() -> None:
    text = "Hi. Good morning, I would like to book a table for two people tonight."
    assert texts(text) == ["Hi.", "Good morning, I would like to book a table for two people tonight."]


def test_no_piece_is_longer_than_the_limits() -> None:
    """A 5000-character sentence was one piece, and took tts_svc to 10.5 GB
    (bench/results/tts_memory.md)."""
    sentence = " ".join(f"the lantern {n} and the harbour" for n in range(200)) + "."
    pieces = split(sentence, "en")
    assert max(len(p.text.split()) for p in pieces) <= MAX_PIECE_WORDS
    assert " ".join(p.text for p in pieces) == sentence  # nothing lost or added
    assert pieces[1].text.startswith("and ")  # long sentences are cut before a conjunction too
    glued = split("x" * 5000, "en")
    assert [len(p.text) for p in glued] == [MAX_PIECE_CHARS] * 16 + [200]
    assert {p.pause_after_ms for p in glued[:-1]} == {FORCED_PAUSE_MS}


def test_sentences_split_on_terminal_marks() -> None:
    assert texts("Is it possible? Yes! Thank you. ¿De verdad?", "es") == [
        "Is it possible?",
        "Yes!",
        "Thank you.",
        "¿De verdad?",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "It costs 3.5 euros today.",
        "Tiene 3,5 kilos de arroz.",
        "They paid 1,500 dollars.",
        "Dr. Smith is here.",
        "Mr. and Mrs. Brown are here.",
        "Bring fruit, e.g. apples.",
        "I live in the U.S. and like it.",
        "J. R. Smith wrote it.",
        "Wait... what is that?",
    ],
)
def test_numbers_abbreviations_and_initials_do_not_end_sentences(text: str) -> None:
    assert sentences(text) == [text]


def test_lines_are_sentences_and_whitespace_collapses() -> None:
    assert sentences("First line\n  second   line\tend\n\nThird.") == [
        "First line",
        "second line end",
        "Third.",
    ]


def test_unspeakable_fragments_join_the_sentence_before() -> None:
    assert sentences("Really? ... !!!") == ["Really? ... !!!"]
    assert sentences("... Hello.") == ["Hello."]


def test_nothing_speakable_gives_no_piece() -> None:
    assert split("  ... !!! — ", "en") == []
    assert split("", "en") == []


def test_pauses_follow_the_kind_of_boundary() -> None:
    pieces = split("Good morning, I would like a table for two. Thanks.", "en")
    assert [p.pause_after_ms for p in pieces] == [CLAUSE_PAUSE_MS, SENTENCE_PAUSE_MS, 0]


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("es", "El Sr. García y la Dra. Pérez viven en Madrid."),
        ("es", "Por ej. esto, p. ej. aquello."),
        ("pt", "A Sra. Costa e o Dr. Pedro chegaram."),
        ("fr", "M. Dupont et Mme Martin sont là."),
        ("de", "Das ist z. B. ein Haus, ca. hundert Jahre alt."),
        ("de", "Wir treffen uns am 3. Mai in Berlin."),
        ("it", "Il Sig. Rossi e il Dott. Bianchi sono qui."),
    ],
)
def test_abbreviations_of_each_language_do_not_end_sentences(language: str, text: str) -> None:
    assert sentences(text, language) == [text]


def test_a_final_abbreviation_may_end_a_sentence() -> None:
    assert sentences("Viven en EE. UU. Tienen dos hijos.", "es") == ["Viven en EE. UU.", "Tienen dos hijos."]
    assert sentences("Wir kaufen Brot, Milch usw. Dann gehen wir.", "de") == [
        "Wir kaufen Brot, Milch usw.",
        "Dann gehen wir.",
    ]


def test_devanagari_danda_ends_a_sentence() -> None:
    assert sentences("नमस्ते। आप कैसे हैं?") == ["नमस्ते।", "आप कैसे हैं?"]
