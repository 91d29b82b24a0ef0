"""The benchmark commands in smoke mode: each runs and its JSON has every field.

No timing assertions: the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen
from bench.common import STAGES, percentile, summary
from tests.conftest import ROOT

SUMMARY = {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"}
MACHINE = {"time", "host", "cpu_count", "cpu_model", "python", "load_average"}


def _run(module: str, *args: str, timeout_s: float = 150.0) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")])}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _summary(value: dict[str, Any]) -> None:
    assert set(value) == SUMMARY


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def load_smoke(results: Path) -> str:
    """Runs `python -m bench.load --smoke` once; its stdout."""
    return _run("bench.load", "--smoke", "--out", str(results))


@pytest.fixture(scope="module")
def e2e_smoke(results: Path) -> str:
    """Runs `python -m bench.e2e_latency --smoke` once; its stdout."""
    return _run("bench.e2e_latency", "--smoke", "--out", str(results))


def test_summary_and_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert summary([2.0, 4.0])["mean_ms"] == 3.0


def test_loadgen_refuses_remote_targets() -> None:
    with pytest.raises(SystemExit):
        loadgen.check_target("203.0.113.5:443", allow_remote=False)
    loadgen.check_target("127.0.0.1:50051", allow_remote=False)
    loadgen.check_target("203.0.113.5:443", allow_remote=True)


def test_load_smoke(results: Path, load_smoke: str) -> None:
    assert "added p99" in load_smoke
    data = json.loads((results / "load.json").read_text())
    assert {"benchmark", "machine", "note", "fake_delays_ms", "fake_delays_source",
            "added_latency_definition", "duration_s_per_step", "chunk_ms", "steps",
            "n_where_p99_added_exceeds_100ms", "goal", "max_sessions_within_goal_latency",
            "sessions_per_session_svc_core_at_that_n", "smoke"} <= set(data)
    assert set(data["machine"]) == MACHINE
    (step,) = data["steps"]
    assert step["sessions"] == 5 and step["sessions_started"] == 5
    assert step["utterances_measured"] > 0
    for key in ("added_latency", "server_added_latency", "client_latency", "client_send_lag"):
        _summary(step[key])
    assert set(step["server_stages"]) == set(STAGES)
    for key in ("cores", "cpu_per_session_millicores", "rss_mb_start", "rss_mb_steady",
                "rss_mb_peak", "memory_per_session_kb"):
        assert {"session_svc", "gateway", "fakes"} <= set(step[key])
    assert {"delivery_ratio", "error_count", "error_samples", "setup_s",
            "client_processes", "utterances_expected"} <= set(step)


def test_e2e_smoke(results: Path, e2e_smoke: str) -> None:
    assert "en<>es total" in e2e_smoke
    data = json.loads((results / "e2e.json").read_text())
    assert {"benchmark", "machine", "engines", "method", "clips_per_side", "pairs", "all_pairs",
            "goal", "goal_met", "errors", "turns", "smoke"} <= set(data)
    assert {"en<>es", "en-es", "es-en"} <= set(data["pairs"])
    for entry in (data["all_pairs"], *data["pairs"].values()):
        assert set(entry) == {"utterances", "clips", "clips_heard", "stages",
                              "client_last_chunk_to_first_audio"}
        assert set(entry["stages"]) == set(STAGES)
        for value in (*entry["stages"].values(), entry["client_last_chunk_to_first_audio"]):
            _summary(value)
    assert data["all_pairs"]["utterances"] >= 2
    assert all(set(t) == {"direction", "clip", "utterances", "completed", "client_ms", "stages"}
               for t in data["turns"])


def test_capacity_from_smoke_results(results: Path, load_smoke: str, e2e_smoke: str) -> None:
    doc = results / "CAPACITY.md"
    _run("bench.capacity", "--results", str(results), "--doc", str(doc), timeout_s=30)
    data = json.loads((results / "capacity.json").read_text())
    assert {"benchmark", "machine", "assumptions", "traffic", "services", "hpa", "total_gpus",
            "inputs", "latency"} <= set(data)
    assert data["inputs"]["load"] and data["inputs"]["e2e"]
    assert data["services"]["session_svc"]["replicas"] >= 2
    assert {"gateway", "session_svc"} <= set(data["hpa"])
    assert "## Autoscaling" in doc.read_text()
