"""dragoman.packs: the strongest installed model per language and device."""

from __future__ import annotations

import dataclasses

from dragoman.packs import best, entries, stt_choice

NOTHING = entries("/nonexistent")


def _installed(*names: str) -> list:
    return [dataclasses.replace(e, installed=True) if e.name in names else e for e in NOTHING]


def test_the_device_bounds_the_choice() -> None:
    found = _installed("whisper-base", "whisper-small", "whisper-large-v3", "distil-whisper-large-v3")
    cpu = stt_choice(found, "cpu", "auto", "auto")
    cuda = stt_choice(found, "cuda:0", "auto", "auto")
    assert cpu.default == "whisper-base" and set(cpu.models.values()) == {"whisper-base"}
    assert cuda.default == "whisper-large-v3" and cuda.for_language("en") == "whisper-large-v3"
    assert cuda.for_language("sw") == "whisper-large-v3"  # any other language: the default


def test_a_specialised_model_wins_a_tie_and_uninstalled_ones_never_count() -> None:
    found = _installed("whisper-base", "whisper-tiny.en")
    tied = [dataclasses.replace(e, rank=20) if e.name == "whisper-tiny.en" else e for e in found]
    assert best(tied, "stt", "en", "cpu").name == "whisper-tiny.en"
    assert best(found, "stt", "en", "cpu").name == "whisper-base"
    assert best(found, "stt", "en", "cuda").name == "whisper-base"  # large-v3 is not installed
    assert best(found, "stt", "en", "cuda", installed_only=False).name == "whisper-large-v3"


def test_an_english_model_that_is_not_installed_is_passed_over() -> None:
    found = _installed("whisper-base")
    choice = stt_choice(found, "cpu", "auto", "whisper-tiny.en")
    assert choice.for_language("en") == "whisper-base" and choice.names == ["whisper-base"]


def test_an_english_model_placed_by_hand_is_used_when_present() -> None:
    found = _installed("whisper-base")
    choice = stt_choice(found, "cpu", "auto", "my-whisper.en", english_present=True)
    assert choice.for_language("en") == "my-whisper.en" and choice.names == ["whisper-base", "my-whisper.en"]
    assert choice.reasons["my-whisper.en"] == "setting stt.english_model"
