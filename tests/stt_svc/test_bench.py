"""The streaming benchmark runs end to end (`--smoke`: one short clip, one stream).

Its numbers are not checked here (speed belongs to the benchmark); only that
every field the report promises is there.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.stt_bench import CHUNK_S, Clip, StreamRun, Utterance
from bench.stt_errors import CLASSES
from tests.conftest import ROOT

SUMMARY = {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"}
LANGUAGE = {
    "model", "clips", "audio_s", "utterances", "wer", "rtf", "cpu_rtf", "first_partial_ms",
    "speech_end_to_final_ms", "endpoint_to_final_ms", "endpoint_to_final_le10s_ms", "transcripts",
    "speech_s", "partials_per_speech_s", "cost", "final_paths",
}
LEVEL = {
    "streams", "languages", "audio_s", "keeps_up", "endpoint_to_final_ms", "speech_end_to_final_ms",
    "max_lag_ms", "drain_ms",
    "first_partial_ms", "cpu_rtf", "model_calls", "decodes", "wer", "final_paths",
}


async def test_stt_bench_smoke(tmp_path: Path, models_dir: Path, fleurs: Path) -> None:
    out = tmp_path / "stt.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.stt_bench", "--smoke", "--out", str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0, stdout.decode()[-3000:]
    assert "WER normaliser: basic" in stdout.decode()
    result = json.loads(out.read_text())
    assert set(result) == {
        "benchmark", "smoke", "machine", "settings", "normaliser", "targets", "languages",
        "concurrency", "lag_limit_ms", "cores", "streams_sustained", "streams_per_core",
    }
    assert result["smoke"] is True and len(result["machine"]["load_average"]) == 3
    (english,) = result["languages"].values()
    assert set(english) == LANGUAGE and english["model"] == "whisper-base"
    assert english["clips"] == 1 and english["utterances"] >= 1 and 0.0 <= english["wer"] <= 1.0
    (transcript,) = english["transcripts"]
    assert transcript["hypothesis"] and transcript["reference"]
    for key in ("first_partial_ms", "speech_end_to_final_ms", "endpoint_to_final_ms",
                "endpoint_to_final_le10s_ms"):
        assert set(english[key]) == SUMMARY
    assert english["endpoint_to_final_ms"]["n"] >= 1 and english["first_partial_ms"]["n"] == 1
    # the same finals, timed from the speech's end: the endpoint wait comes on top
    assert english["speech_end_to_final_ms"]["n"] == english["endpoint_to_final_ms"]["n"]
    assert english["speech_end_to_final_ms"]["p50_ms"] > english["endpoint_to_final_ms"]["p50_ms"]
    # the cost proxies: the finals' decodes and windows were counted, partials' too
    cost = english["cost"]
    assert cost["decodes_per_utterance"]["final"] >= 1 and cost["totals"]["decodes"]["partial"] >= 1
    assert cost["encoder_s_per_speech_s"]["final"] >= 1  # a window is at least its audio
    assert cost["decoder_tokens_per_utterance"]["final"] >= 1
    (level,) = result["concurrency"]
    assert set(level) == LEVEL and level["streams"] == 1
    assert level["decodes"] >= level["model_calls"] >= 1
    assert isinstance(level["keeps_up"], bool) and result["cores"] >= 1
    # greedy finals by default; every final of the level counted once, its WER scored
    assert level["final_paths"]["fixed"] >= 1 and level["final_paths"]["idle_beam"] == 0
    assert english["final_paths"]["fixed"] == english["utterances"]
    assert 0.0 <= level["wer"]["en"] <= 1.0


async def test_stt_bench_diagnose_smoke(tmp_path: Path, models_dir: Path, fleurs: Path) -> None:
    """--diagnose --smoke --passes 2 --levels 0,-12: one short clip streamed twice at each
    level and decoded whole once a level, every error classified."""
    out = tmp_path / "stt_diagnostic.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.stt_bench", "--diagnose", "--smoke", "--passes", "2",
        "--levels", "0,-12", "--out", str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0, stdout.decode()[-3000:]
    assert "whole WER %" in stdout.decode()
    result = json.loads(out.read_text())
    assert result["benchmark"] == "stt_diagnostic" and result["smoke"] is True
    assert result["classes"] == list(CLASSES)
    (english,) = result["languages"].values()
    (fleurs_set,) = english.values()
    assert fleurs_set["clips"] == 1 and set(fleurs_set["counts"]) == set(CLASSES)
    clip, again, quieter, quieter_again = fleurs_set["clip_details"]
    assert (fleurs_set["passes"], clip["pass"], again["pass"]) == (2, 1, 2)
    assert fleurs_set["levels_db"] == [0, -12]
    assert [d["level_db"] for d in fleurs_set["clip_details"]] == [0, 0, -12, -12]
    assert again["clip"] == clip["clip"] and again["whole"] == clip["whole"]
    assert again["whole_decode_s"] == clip["whole_decode_s"]  # decoded whole once a level
    assert quieter_again["whole_decode_s"] == quieter["whole_decode_s"] != clip["whole_decode_s"]
    # every pass's words and errors are pooled, at both levels
    assert fleurs_set["reference_words"] == 4 * clip["reference_words"]
    assert fleurs_set["speech_end_to_final_ms"]["n"] >= 4
    assert isinstance(fleurs_set["unrecognised_speech_s"], dict)  # by reason, often none
    assert "unrec. s" in stdout.decode()
    assert clip["whole"] and clip["streamed"] and clip["finals"] and clip["partials"]
    assert clip["reference_words"] > 0 and clip["errors"] == sum(clip["counts"].values())
    labels = [a.get("label") for a in clip["alignment"] if a["op"] != "equal"]
    assert len(labels) == clip["errors"] and set(labels) <= set(CLASSES)
    assert sum(fleurs_set["counts"].values()) == round(
        fleurs_set["streamed_wer"] * fleurs_set["reference_words"])


def test_speech_end_to_final_includes_the_endpoint_wait() -> None:
    """A stream whose audio starts at 10 s and whose speech ends 1.25 s into it: the speaker
    stopped at 11.25 s. Its 300 ms endpoint completes in chunk 15 (due at 11.6 s), sent 0.1 s
    late (the loop was busy); a final received at 11.9 s is 650 ms after the speech and 200 ms
    after the endpoint chunk."""
    clip = Clip("fleurs-en-000", "en", "x", np.zeros(16_000, np.float32))
    run = StreamRun("en", [clip], [0], endpoint_s=0.3, t0=10.0)
    run.send_times = [10.0 + (k + 1) * CHUNK_S + 0.1 for k in range(30)]
    run.utterances[0] = Utterance(0, start_s=0.5, started_at=10.7, end_s=1.25, ended_at=11.6,
                                  final_at=11.9)
    assert run.speech_end_to_final_ms() == pytest.approx([650.0])
    assert run.endpoint_to_final_ms() == pytest.approx([200.0])
    # cut for length: its end and the next utterance's start come at once, so there is no
    # end of speech to time from, even where the cut leaves a gap after the last speech
    run.utterances[1] = Utterance(1, start_s=1.7, started_at=11.9, end_s=2.0, ended_at=12.3,
                                  final_at=12.5)
    run.utterances[2] = Utterance(2, start_s=2.15, started_at=12.3)
    assert len(run.speech_end_to_final_ms()) == len(run.endpoint_to_final_ms()) == 1
    assert run.cut(run.utterances[1]) and not run.cut(run.utterances[0])
