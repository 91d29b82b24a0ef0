"""`python -m bench.soak --smoke`: the mesh under a few sessions, its memory sampled. No
timing or memory assertions: a smoke run is too short to mean anything; that every
process is sampled, judged and reported is checked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bench import soak
from tests.bench.test_benches import _run

LINE = re.compile(r"soak minutes=[\d.]+ sessions=\d+ rss_growth_mb=-?[\d.]+ \(.*\) "
                  r"verdict=(flat|growing|too short)")
PROCESSES = {"fake_stt", "fake_mt", "fake_tts", "session_svc", "gateway", "loadgen"}


def test_soak_smoke(tmp_path: Path) -> None:
    out = _run("bench.soak", "--smoke", "--out", str(tmp_path), timeout_s=240.0)
    assert LINE.fullmatch(out.strip().splitlines()[-1])
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["smoke"] and result["sessions"] == 3
    assert len(result["samples"]) >= 5
    assert all(set(s["rss_mb"]) == PROCESSES for s in result["samples"])
    assert set(result["processes"]) == PROCESSES
    assert not result["processes"]["loadgen"]["judged"]
    assert all(p["verdict"] in ("flat", "growing") for n, p in result["processes"].items()
               if n != "loadgen")
    assert result["load"]["utterances_heard"] > 0
    assert (tmp_path / "soak.md").read_text().count(result["command"]) == 1


def test_the_slope_and_verdict_of_a_curve() -> None:
    flat = [{"t_s": t, "rss_mb": {"a": 100.0 + (50 if t >= 60 else t / 2), "loadgen": t}}
            for t in range(0, 600, 30)]
    judged = soak.analyse(flat, warmup_s=60, flat=1.0, judged=["a"])
    assert judged["a"]["slope_after_warmup_mb_per_min"] == 0 and judged["a"]["verdict"] == "flat"
    assert judged["a"]["start_mb"] == 100 and judged["a"]["after_warmup_mb"] == 150
    assert "verdict" not in judged["loadgen"] and judged["loadgen"]["at_10_min_mb"] is None
    leak = [{"t_s": t, "rss_mb": {"a": 100.0 + t / 30}} for t in range(0, 700, 30)]
    grown = soak.analyse(leak, warmup_s=60, flat=1.0, judged=["a"])["a"]
    assert grown["slope_after_warmup_mb_per_min"] == 2 and grown["verdict"] == "growing"
    assert grown["at_10_min_mb"] == 120


def test_rss_of_a_process_and_of_none() -> None:
    assert (soak.rss_mb(os.getpid()) or 0) > 1
    assert soak.rss_mb(2**22 + 12345) is None
