"""`python -m bench.mt_bench --smoke` runs on the real engines and writes every JSON field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.mt_bench import add_baselines
from tests.conftest import ROOT

ROW_FIELDS = {"engine", "version", "license", "source", "target", "sentences", "bleu", "chrf",
              "single_ms", "batched_ms", "sentences_per_s", "sentences_per_s_per_core", "baseline"}


def test_smoke_run_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "mt.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.mt_bench", "--smoke", "--engines", "bergamot,apertium,ct2",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result) == {"benchmark", "created", "smoke", "machine", "settings", "metrics", "results"}
    assert (result["benchmark"], result["smoke"]) == ("mt", True)
    assert result["machine"]["cores"] >= 1 and len(result["machine"]["load_average"]) == 3
    assert result["settings"] | {"data": ""} == {
        "engines": ["bergamot", "apertium", "ct2"], "sentences": 20, "single": 5, "batch_size": 8,
        "smoke": True, "beam_size": 2, "compute_type": "int8", "data": ""}
    assert result["metrics"]["bleu"].startswith("sacrebleu ")
    rows = {(r["engine"], r["source"], r["target"]): r for r in result["results"]}
    assert set(rows) >= {("bergamot", "en", "pt"), ("bergamot", "pt", "en"),
                         ("apertium", "en", "es"), ("apertium", "es", "en")}
    for row in rows.values():
        assert set(row) == ROW_FIELDS
        assert row["sentences"] == 20 and row["license"] and row["version"]
        assert 0 < row["bleu"] <= 100 and 0 < row["chrf"] <= 100
        assert 0 < row["single_ms"]["p50"] <= row["single_ms"]["p95"] and row["single_ms"]["calls"] == 5
        assert 0 < row["batched_ms"]["p50"] <= row["batched_ms"]["p95"]
        assert row["batched_ms"]["batch_size"] == 8
        per_core = row["sentences_per_s"] / result["machine"]["cores"]
        assert row["sentences_per_s"] > 0 and abs(row["sentences_per_s_per_core"] - per_core) <= 0.01
        baseline = row["baseline"]
        if baseline is not None:  # only where Apertium serves the same pair
            assert baseline["engine"] == "apertium" and row["engine"] != "apertium"
            assert set(baseline) == {"engine", "bleu", "chrf", "bleu_delta", "chrf_delta", "single_ms_p50"}
    assert rows[("bergamot", "en", "pt")]["chrf"] > 60  # the real model, not a broken one
    printed = done.stdout.splitlines()
    assert printed[0].split()[:5] == ["engine", "pair", "n", "BLEU", "chrF"]
    assert any(line.startswith("bergamot ") and "en->pt" in line for line in printed)
    assert printed[-1] == f"wrote {out}"


def test_apertium_is_the_baseline_of_the_same_pair() -> None:
    def row(engine: str, target: str, bleu: float, chrf: float) -> dict[str, object]:
        return {"engine": engine, "source": "en", "target": target, "bleu": bleu, "chrf": chrf,
                "single_ms": {"p50": 2.0}, "baseline": None}

    rows = [row("apertium", "es", 29.0, 51.6), row("opus-mt-en-es", "es", 45.5, 68.0),
            row("bergamot", "pt", 48.2, 73.4)]
    add_baselines(rows)
    assert [r["baseline"] for r in rows] == [None, {
        "engine": "apertium", "bleu": 29.0, "chrf": 51.6, "bleu_delta": 16.5, "chrf_delta": 16.4,
        "single_ms_p50": 2.0}, None]


async def test_mt_confidence_groups_each_sentence_of_a_pair(tmp_path: Path) -> None:
    from bench.mt_bench import tatoeba, tatoeba_dir
    from bench.mt_confidence import GROUPS, markdown, measure
    from mt_svc.engines.ct2 import Ct2Engine, DecodeOptions
    from tests.mt_svc.test_ct2 import _model
    from tests.mt_svc.tiny import write_ct2

    write_ct2(tmp_path, ("__en__", "__pt__"))
    engine = Ct2Engine(_model("m2m100"), tmp_path, DecodeOptions(beam_size=1, max_output_tokens=8))
    data = tatoeba(tatoeba_dir(), "en", "pt")
    assert data is not None
    sources, references = (lines[:12] for lines in data)
    try:
        row = await measure(engine, "en", "pt", sources, references)
    finally:
        await engine.close()
    groups = row["groups"]
    assert set(groups) == set(GROUPS)
    # a random model's gibberish is never good; every sentence lands in one group
    assert sum(groups[g]["n"] for g in ("good", "fair", "bad")) == 12 and groups["good"]["n"] == 0
    assert groups["wrong_language"]["n"] == 12 and 0 < groups["wrong_language"]["mean"] < 1
    assert groups["bad"]["under"]["0.6"] >= 0 and "tiny-m2m100  en->pt" in markdown({"rows": [row]})
