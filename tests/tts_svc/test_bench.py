"""`python -m bench.tts_bench --smoke` runs on the real engines and writes every JSON field.

No timing assertions: the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.tts_bench import TARGETS, targets
from tests.conftest import ROOT

ROW_FIELDS = {"language", "engine", "voice", "quality", "default", "short", "long", "round_trip"}
LATENCY_FIELDS = {"words", "requests", "chunks", "audio_s", "first_chunk_ms", "rtf"}


def test_smoke_run_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "tts.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.tts_bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result) == {
        "benchmark", "created", "smoke", "machine", "settings", "targets", "results", "kokoro_variants"
    }  # fmt: skip
    assert (result["benchmark"], result["smoke"]) == ("tts", True)
    assert len(result["machine"]["load_average"]) == 3
    assert result["settings"] | {"engines": ""} == {
        "repeats": 1, "sentences": 2, "languages": ["en", "es", "de"], "default_voices_only": True,
        "smoke": True, "engines": "", "stt": "whisper-base",
    }  # fmt: skip
    rows = {r["language"]: r for r in result["results"]}
    assert {(r["language"], r["engine"], r["voice"]) for r in rows.values()} == {
        ("en", "piper", "en_US-joe-medium"),
        ("es", "kokoro", "ef_dora"),
        ("de", "espeak", "espeak-de"),
    }
    for row in rows.values():
        assert set(row) == ROW_FIELDS and row["default"]
        for text in ("short", "long"):
            latency = row[text]
            assert set(latency) == LATENCY_FIELDS and latency["requests"] == 1
            assert 0 < latency["first_chunk_ms"]["p50"] <= latency["first_chunk_ms"]["p95"]
            assert latency["rtf"] > 0 and latency["audio_s"] > 0.5
        assert row["short"]["words"] <= 12 and row["long"]["chunks"] >= 3
        trip = row["round_trip"]
        assert trip["sentences"] == 2 and 0 <= trip["wer"] and len(trip["examples"]) == 2
        assert all(e["heard"] for e in trip["examples"])
    assert rows["es"]["round_trip"]["wer"] < 0.5  # the real voice, heard by the real Whisper
    assert set(result["targets"]) == {
        "en_first_chunk_p50_ms", "es_first_chunk_p50_ms", "wer_en_en_US-joe-medium", "wer_es_ef_dora"
    }  # fmt: skip
    variants = result["kokoro_variants"]["variants"]
    assert set(variants) == {
        "2 words, 2 threads", "3 words, 2 threads", "4 words, 2 threads", "6 words, 2 threads",
        "10 words, 2 threads", "3 words, 1 thread",
    }  # fmt: skip
    assert variants["10 words, 2 threads"]["ratio_to_whole_sentence"] == 1.0
    printed = done.stdout.splitlines()
    assert printed[0].split()[:3] == ["language", "engine", "voice"]
    assert any(line.startswith("target es_first_chunk_p50_ms: ") for line in printed)
    assert printed[-1] == f"wrote {out}"


def test_targets_judge_the_default_voices_and_every_neural_one() -> None:
    def row(
        language: str, voice: str, quality: str, default: bool, p50: float, wer: float
    ) -> dict[str, object]:
        return {
            "language": language, "voice": voice, "quality": quality, "default": default,
            "short": {"first_chunk_ms": {"p50": p50}}, "round_trip": {"wer": wer},
        }  # fmt: skip

    judged = targets(
        [
            row("en", "joe", "neural", True, 150.0, 0.05),
            row("en", "espeak-en", "formant", False, 5.0, 0.4),
            row("es", "dora", "neural", True, 450.0, 0.2),
        ]
    )
    assert judged == {
        "en_first_chunk_p50_ms": {"voice": "joe", "value": 150.0, "target": 200.0, "met": True},
        "es_first_chunk_p50_ms": {"voice": "dora", "value": 450.0, "target": 400.0, "met": False},
        "wer_en_joe": {"value": 0.05, "target": TARGETS["neural_wer"], "met": True},
        "wer_es_dora": {"value": 0.2, "target": 0.15, "met": False},
    }
