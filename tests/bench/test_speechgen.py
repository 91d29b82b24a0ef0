"""bench.speechgen: the joining of sentences, and the generated clips it committed."""

from __future__ import annotations

import json

import numpy as np

from bench import speechgen
from dragoman import audio
from tests.conftest import TESTDATA


def test_sentences_are_trimmed_and_joined_with_one_short_pause() -> None:
    rate = speechgen.RATE_HZ
    tone = np.sin(np.arange(rate) / 5).astype(np.float32)  # 1 s of sound
    padded = np.concatenate([np.zeros(rate // 2, np.float32), tone, np.zeros(rate, np.float32)])
    trimmed = speechgen.trim(padded)
    assert abs(len(trimmed) / rate - (1 + 2 * speechgen.EDGE_S)) <= 0.01  # 10 ms frames
    samples, spans = speechgen.join([(f"s{i}", trimmed) for i in range(4)], seed=0)
    pauses = [s.pause_before_s for s in spans]
    assert pauses[0] == 0.0
    low, high = speechgen.SHORT_PAUSE_S
    assert low <= pauses[speechgen.SHORT_PAUSE_AFTER + 1] <= high
    assert all(speechgen.PAUSE_S[0] <= p <= speechgen.PAUSE_S[1] for p in (pauses[1], pauses[3]))
    assert len(samples) == round(spans[-1].end_s * rate)


def test_the_generated_clips_hold_their_reference_sentences() -> None:
    clips = sorted((TESTDATA / "speech" / "generated").glob("gen-*.ogg"))
    assert {c.stem.split("-")[1] for c in clips} >= {"en", "es", "pt", "fr"}
    for clip in clips:
        meta = json.loads(clip.with_suffix(".json").read_text(encoding="utf-8"))
        lines = clip.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
        assert lines == [s["text"] for s in meta["sentences"]] and len(lines) >= 4
        seconds = len(audio.decode_file(clip, speechgen.RATE_HZ)) / speechgen.RATE_HZ
        assert 30 <= seconds <= 45 and abs(seconds - meta["seconds"]) < 0.1
        assert any(0.15 <= s["pause_before_s"] <= 0.25 for s in meta["sentences"])
