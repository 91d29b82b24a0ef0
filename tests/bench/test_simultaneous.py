"""bench.simultaneous: the ear-voice span arithmetic on hand-made inputs, and a smoke run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench import simultaneous as sim
from bench.e2e_latency import CHUNK_SAMPLES, PAD_CHUNKS, RATE_HZ
from tests.bench.test_benches import _run


def chunk(arrived: float, utt: str, piece: int, index: int, duration: float, *, source: str = "",
          text: str = "", last: bool = False) -> sim.Chunk:
    return sim.Chunk(arrived, utt, piece, index, source, text, duration, last)


def test_playback_waits_for_the_chunk_before() -> None:
    chunks = [chunk(1.0, "1-1", 0, 0, 2.0), chunk(1.5, "1-1", 0, 1, 1.0), chunk(10.0, "1-2", 0, 0, 1.0)]
    # the second chunk arrived while the first played; the third after a silence
    assert sim.playback(chunks) == [1.0, 3.0, 10.0]


def test_units_group_pieces_and_fall_back_to_the_transcript() -> None:
    chunks = [
        chunk(1.0, "1-1", 0, 0, 1.0, text="Olá."),
        chunk(1.2, "1-1", 0, 1, 1.0, text="Olá.", last=True),  # TTS repeats its sentence's text
        chunk(5.0, "1-2", 1, 0, 2.0, source="the cat sat,", text="o gato sentou,"),
        chunk(9.0, "1-2", 2, 1, 1.0, source="on the mat", text="no tapete", last=True),
    ]
    heard = sim.units(chunks, {"1-1": "Hello.", "1-2": "never used for pieces"})
    assert [(u.utterance_id, u.piece_index, u.start_s) for u in heard] == [
        ("1-1", 0, 1.0), ("1-2", 1, 5.0), ("1-2", 2, 9.0)]
    assert [u.source_text for u in heard] == ["Hello.", "the cat sat,", "on the mat"]
    assert [u.text for u in heard] == ["Olá.", "o gato sentou,", "no tapete"]


def test_align_maps_left_out_words_to_the_next_aligned_one() -> None:
    heard = [sim.Unit("1-1", 1, 0.0, "The cat, sat", ""), sim.Unit("1-1", 2, 0.0, "on a mat.", "")]
    # "big" was never recognised: it takes the piece of "sat"; "today" follows nothing aligned
    words = ["the", "big", "cat", "sat", "on", "the", "mat", "today"]
    assert sim.align(words, heard, "en") == [0, 0, 0, 0, 1, 1, 1, None]


def test_evs_is_piece_start_minus_word_end() -> None:
    words = [sim.Word("one", 0.0, 0.5), sim.Word("two", 0.5, 1.0), sim.Word("three", 1.5, 2.0)]
    chunks = [chunk(2.0, "1-1", 1, 0, 1.5, source="one two"),
              chunk(2.5, "1-1", 2, 1, 1.0, source="three", last=True)]
    out = sim.evs(words, [0.5, 1.0, 2.0], [0.0, 0.5, 1.5], chunks, "en")
    # piece 1 plays at 2.0; piece 2 waits for it: 3.5
    assert round(out["evs"]["p50_ms"]) == 1500 and round(out["evs_p90_ms"]) == 1500
    assert out["evs"]["n"] == 3 and out["unmapped"] == 0 and out["pieces"] == 2
    assert round(out["evs"]["mean_ms"]) == round((1500 + 1000 + 1500) / 3)
    assert round(out["start_offset_ms"]) == 2000
    assert round(out["listener_lag_ms"]) == 2500  # speech ends at 4.5, the source at 2.0
    assert out["translated_speech_s"] == 2.5
    # "one" waits 0.5 s for "two"; piece 1 comes 1 s after "two", piece 2 0.5 s after
    # "three" and waits 1 s for piece 1 to play: the parts add up to each word's EVS
    means = {name: round(s["mean_ms"]) for name, s in out["evs_parts_ms"].items()}
    assert means == {"in_piece": round(500 / 3), "to_arrival": round(2500 / 3), "queued": round(1000 / 3)}
    # with no processing time piece 1 arrives as "two" ends (1.0) and plays to 2.5; piece 2,
    # ready at 2.0, waits for it: only the speech's length is left
    assert round(out["evs_instant"]["p50_ms"]) == 500
    assert round(out["evs_instant"]["mean_ms"]) == round((500 + 0 + 500) / 3)


def test_stream_times_are_the_send_times_of_the_chunks_holding_the_word() -> None:
    sent = [10.0 + i * 0.1 for i in range(PAD_CHUNKS + 20)]
    first = CHUNK_SAMPLES / RATE_HZ  # a word of the monologue's second chunk
    starts, ends = sim.stream_times([sim.Word("a", first, 2 * first)], sent)
    assert starts == [sent[PAD_CHUNKS + 1]]
    assert ends == [sent[PAD_CHUNKS + 1]]  # its last sample is the chunk's last


def test_monologue_joins_with_seeded_pauses() -> None:
    parts = [sim.Sentence(f"s{i}", np.ones(RATE_HZ, np.float32), "x", "y") for i in range(3)]
    a, b = sim.monologue("en", parts, 1), sim.monologue("en", parts, 1)
    assert a.starts == b.starts and a.starts[0] == 0
    gaps = [a.starts[i + 1] - a.starts[i] - RATE_HZ for i in range(2)]
    assert all(sim.PAUSE_S[0] * RATE_HZ <= g <= sim.PAUSE_S[1] * RATE_HZ for g in gaps)
    assert len(a.samples) == a.starts[-1] + RATE_HZ


@pytest.mark.parametrize("source,target", [("en", "pt"), ("pt", "en")])
def test_monologues_are_long_form(source: str, target: str) -> None:
    mono = sim.monologue(source, sim.sentences(source, target), 20)
    assert 60 <= mono.seconds <= 90
    assert any(s.name.startswith("gen-") for s in mono.sentences)  # FLEURS alone is under a minute
    assert all(s.reference for s in mono.sentences)


def test_env_settings() -> None:
    assert sim.env_settings(["session.piece_max_words=8"]) == {"DRAGOMAN_SESSION_PIECE_MAX_WORDS": "8"}
    with pytest.raises(SystemExit):
        sim.env_settings(["session.no_such_setting=1"])


LINE = re.compile(r"^en:pt simultaneous evs_p50_ms=(\d+) chrf=([\d.]+) "
                  r"utterance evs_p50_ms=(\d+) chrf=([\d.]+)$")


def test_smoke(tmp_path: Path) -> None:
    # pieces of two words, so that the fake engines' short utterances are spoken in pieces
    out = _run("bench.simultaneous", "--smoke", "--out", str(tmp_path), "--set",
               "session.piece_min_words=1", "--set", "session.piece_max_words=2", timeout_s=240.0)
    match = LINE.match(out.strip().splitlines()[-1])
    assert match, out
    data = json.loads((tmp_path / "simultaneous.json").read_text())
    by_mode = data["results"]["en-pt"]
    words = [sim.Word(**w) for w in data["monologues"]["en-pt"]["words"]]
    for mode, p50 in (("simultaneous", match[1]), ("utterance", match[3])):
        r = by_mode[mode]
        assert r["completed"] and r["evs"]["n"] > 0 and r["short_total_ms"]["n"] > 0
        # the reported numbers are those of the recorded arrivals
        again = sim.evs(words, r["word_end_s"], r["word_start_s"],
                        [sim.Chunk(**c) for c in r["chunks"]], "en", r["fallback"])
        assert int(p50) == round(again["evs"]["p50_ms"]) == round(r["evs"]["p50_ms"])
        assert "[fake:en>pt]" in r["speech"] and r["chrf_speech"] > 0
        assert r["wer_heard"] is not None and r["wer_heard"] >= 0.0
        assert "pcm" not in r["chunks"][0]
    assert by_mode["utterance"]["piece_counts"]["pieces"] == 0
    assert by_mode["simultaneous"]["piece_counts"]["pieces"] > 0
    assert data["settings"]["simultaneous"] == {"DRAGOMAN_SESSION_PIECE_MIN_WORDS": "1",
                                                "DRAGOMAN_SESSION_PIECE_MAX_WORDS": "2"}


class _Listening:
    """Hears a piece as the words its audio length stands for (one per 0.1 s at 16 kHz)."""

    def __init__(self, words: dict[int, str]) -> None:
        self.words = words
        self.lengths: list[int] = []

    def transcribe(self, samples: np.ndarray, options: object) -> object:
        self.lengths.append(len(samples))
        return SimpleNamespace(text=self.words[len(samples) // 1600])


def test_heard_wer_transcribes_each_piece_as_it_arrived() -> None:
    """Each piece's chunks are joined in chunk order and resampled to 16 kHz before the engine
    hears them; the WER is pooled over pieces against the text each was synthesised from (a
    chunk carries its sentence's text, repeated on every chunk of the sentence)."""
    silence = bytes(2 * 2400)  # 0.1 s at 24 kHz
    chunks = [
        sim.Chunk(0.0, "u-1", 0, 1, "x", "dois três", 0.1, True, silence * 2, 24_000),
        sim.Chunk(0.0, "u-1", 0, 0, "x", "um", 0.1, False, silence, 24_000),
        sim.Chunk(0.1, "u-1", 1, 2, "x", "quatro cinco", 0.1, False, silence, 24_000),
        sim.Chunk(0.1, "u-1", 1, 3, "x", "quatro cinco", 0.1, True, b"", 24_000),
        sim.Chunk(0.2, "u-2", 0, 0, "x", "", 0.0, True, b"", 24_000),  # an empty last chunk
    ]
    engine = _Listening({3: "um dois tres", 1: "quatro cinco"})
    assert sim.heard_wer(chunks, "pt", engine) == pytest.approx(1 / 5)
    assert engine.lengths == [4800, 1600]
    assert sim.heard_wer([], "pt", engine) is None
