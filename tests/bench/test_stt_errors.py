"""The streamed-error classifier of `python -m bench.stt_bench --diagnose`, on hand-built cases."""

from __future__ import annotations

import argparse

import jiwer
import numpy as np
import pytest

from bench import stt_bench
from bench.stt_errors import CLASSES, Diagnosis, classify, forced_prefix_length
from dragoman import metrics


def _finals(*utterances: str) -> list[tuple[str, int]]:
    return [(w, u) for u, text in enumerate(utterances) for w in text.split()]


def _labels(diagnosis: Diagnosis) -> list[tuple[str | None, str | None, str | None]]:
    return [(a.label, a.ref, a.hyp) for a in diagnosis.alignment if a.label is not None]


REF = "the tiger's roar is not like the full roar of a lion".split()


def test_a_word_missing_at_a_cut_is_a_boundary_loss() -> None:
    d = classify(REF, _finals("the tiger's roar is", "like the full roar of a lion"), {}, REF)
    assert _labels(d) == [("boundary_loss", "not", None)]
    assert d.errors == 1 and d.whole_errors == 0 and d.reference_words == len(REF)


def test_words_read_on_both_sides_of_a_cut_are_a_boundary_duplicate() -> None:
    d = classify(REF, _finals("the tiger's roar is not", "is not like the full roar of a lion"), {}, REF)
    assert [label for label, _, _ in _labels(d)] == ["boundary_duplicate"] * 2
    assert d.counts["boundary_duplicate"] == 2


def test_an_error_in_the_agreed_prefix_is_forced_prefix() -> None:
    partials = {0: ["the tiger roar", "the tiger roar is not", "the tiger roar is not like the"]}
    final = "the tiger roar is not like the full roar of a lion"
    assert forced_prefix_length(partials[0]) == 5
    d = classify(REF, _finals(final), partials, REF)
    assert _labels(d) == [("forced_prefix", "tiger's", "tiger")]


def test_the_stable_prefix_sent_overrides_local_agreement_2() -> None:
    """stt_svc may agree by another rule (a word held back): the prefix it sent counts."""
    partials = {0: ["the tiger roar", "the tiger roar is not", "the tiger roar is not like the"]}
    final = "the tiger roar is not like the full roar of a lion"
    d = classify(REF, _finals(final), partials, REF, prefix_words={0: 0})
    (aligned,) = [a for a in d.alignment if a.label]
    assert (aligned.label, aligned.ref) == ("other", "tiger's")
    assert aligned.note == "substitution, no forced prefix"


def test_the_same_error_past_the_prefix_is_other() -> None:
    partials = {0: ["the tiger's roar", "the tiger's roar is not"]}
    final = "the tiger's roar is not like the full roar of a line"
    d = classify(REF, _finals(final), partials, REF)
    (aligned,) = [a for a in d.alignment if a.label]
    assert (aligned.label, aligned.note) == ("other", "substitution after a forced prefix")


def test_a_vanished_sentence_is_a_premature_end() -> None:
    ref = REF + "but more like a sentence of snarly shouted words".split()
    d = classify(ref, _finals(" ".join(REF)), {}, ref)
    assert d.counts["premature_end"] == 9 and d.errors == 9


def test_a_long_run_missing_before_a_cut_is_a_premature_end_not_a_boundary_loss() -> None:
    ref = REF + "but more like a sentence of snarly shouted words".split()
    d = classify(ref, _finals("the tiger's roar is not like", "snarly shouted words"), {}, ref)
    assert d.counts == {**dict.fromkeys(CLASSES, 0), "premature_end": 12}


def test_inserted_words_ending_a_final_are_a_tail_hallucination() -> None:
    d = classify(REF, _finals("the tiger's roar is not like the full roar of a lion thank you so"), {}, REF)
    assert d.counts["tail_hallucination"] == 3 and d.errors == 3


def test_an_error_the_whole_utterance_decode_makes_too_is_a_model_error() -> None:
    whole = "the tigers roar is not like the full roar of a lion".split()
    d = classify(REF, _finals("the tigers roar is", "not like the full roar of a lion"), {}, whole)
    assert _labels(d) == [("model_error", "tiger's", "tigers")]
    assert d.whole_errors == 1


def test_every_error_gets_exactly_one_class() -> None:
    ref = REF + "but more like a sentence of snarly shouted words".split()
    finals = _finals("the tiger roar is not", "not like full roar of a lion uh", "but more like a")
    whole = "the tiger's roar is not like the full roar of the lion but more like a".split()
    d = classify(ref, finals, {0: ["the tiger roar", "the tiger roar is"]}, whole)
    expected = jiwer.process_words(" ".join(ref), " ".join(w for w, _ in finals))
    assert d.errors == expected.substitutions + expected.deletions + expected.insertions
    assert set(d.counts) == set(CLASSES)
    assert all(a.label in CLASSES for a in d.alignment if a.op != "equal")
    assert d.to_json()["counts"] == d.counts


def test_the_rest_of_a_misreading_that_starts_in_the_prefix_is_forced_prefix() -> None:
    ref = "many people think of them as dinosaurs because they have feathers".split()
    partials = {0: ["many people think of them as a", "many people think of them as a nurse"]}
    final = "many people think of them as a nurse or as because they have feathers"
    d = classify(ref, _finals(final), partials, ref)
    assert d.counts["forced_prefix"] == d.errors == 4


def test_a_long_clip_is_decoded_whole_in_windows_cut_at_its_pauses() -> None:
    rate = stt_bench.RATE_HZ
    noise = np.random.default_rng(0).normal(0, 0.1, 45 * rate).astype(np.float32)
    noise[20 * rate : 20 * rate + rate // 2] = 0  # a half-second pause at 20 s
    pieces = stt_bench.whole_windows(noise, 30.0)
    assert [round(len(p) / rate) for p in pieces] == [20, 25]
    assert np.array_equal(np.concatenate(pieces), noise)
    assert len(stt_bench.whole_windows(noise[: 10 * rate], 30.0)) == 1


def test_the_diagnosis_counts_the_speech_left_without_words_since_it_started() -> None:
    before = stt_bench.unrecognised_speech()
    metrics.STT_UNRECOGNISED_SPEECH.labels("uncovered").inc(1.25)
    metrics.STT_UNRECOGNISED_SPEECH.labels("no_speech").inc(0.5)
    assert stt_bench.unrecognised_since(before) == {"uncovered": 1.25, "no_speech": 0.5}
    assert stt_bench.unrecognised_since(stt_bench.unrecognised_speech()) == {}


def test_a_clip_at_a_lower_level_is_the_same_audio_quieter() -> None:
    clip = stt_bench.Clip("fleurs-de-000", "de", "x", np.full(160, 0.5, np.float32))
    assert clip.at_level(0) is clip
    quieter = clip.at_level(-6)
    assert quieter.audio.dtype == np.float32 and (quieter.name, quieter.reference) == ("fleurs-de-000", "x")
    assert np.allclose(quieter.audio, 0.5 * 10 ** (-6 / 20))
    assert stt_bench._levels("0,-6,-12") == (0.0, -6.0, -12.0)
    for wrong in ("+6", "0,loud"):  # louder could clip
        with pytest.raises(argparse.ArgumentTypeError):
            stt_bench._levels(wrong)
