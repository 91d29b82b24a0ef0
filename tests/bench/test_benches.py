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

from bench import load, loadgen
from bench.common import STAGES, Participant, median_interval, percentile, summary
from dragoman import mux
from tests.conftest import ROOT

SUMMARY = {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"}
MACHINE = {"time", "host", "cpu_count", "cpu_model", "python", "load_average", "cpu_probe_ms",
           "cpu_probe_all_cores_ms"}


def _run(module: str, *args: str, timeout_s: float = 150.0) -> str:
    # this checkout's code, the SDK the benches talk through included, before any installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(ROOT / "gen" / "python"), str(ROOT / "clients" / "python" / "src")])}
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


def test_median_interval_takes_the_binomial_order_statistics() -> None:
    # 95 %: under 6 values no pair of order statistics covers the median often enough
    assert median_interval([3.0, 1.0, 2.0, 4.0, 5.0]) is None
    assert median_interval([6.0, 1.0, 5.0, 2.0, 4.0, 3.0]) == [1.0, 6.0]  # 1 - 2/64 >= 0.95
    assert median_interval([float(v) for v in range(10, 0, -1)]) == [2.0, 9.0]
    # n = 100: ranks 40 and 61, as the normal approximation 50 +- 1.96 * sqrt(100) / 2 has it
    assert median_interval([float(v) for v in range(1, 101)]) == [40.0, 61.0]
    assert median_interval([float(v) for v in range(1, 11)], confidence=0.5) == [4.0, 7.0]


def test_listener_wait_leaves_out_time_spent_hearing_the_previous_utterance() -> None:
    listener = Participant(client=None, language="es")  # type: ignore[arg-type]  # no stream here
    listener.first_audio_s = {"a": 10.0, "b": 12.0, "c": 14.0, "d": 20.0}
    listener.audio_s = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 1.0}
    # a: nothing playing, the whole second since the end of speech is silence
    assert listener.listener_wait_ms("a", 1000) == pytest.approx(1000)
    # b: spoken until 10.5, but a plays until 13 and b arrives at 12: no silence
    assert listener.listener_wait_ms("b", 1500) == pytest.approx(0)
    # c: b plays until 14 (queued behind a), c arrives at 14: no silence
    assert listener.listener_wait_ms("c", 2500) == pytest.approx(0)
    # d: c stopped at 16, d spoken until 19.2 and heard at 20: 0.8 s of silence
    assert listener.listener_wait_ms("d", 800) == pytest.approx(800)
    assert listener.listener_wait_ms("never-heard", 500) is None


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
    assert data["trunk_linger_ms"] == mux.LINGER_S * 1000
    assert set(data["machine"]) == MACHINE | {"cpu_probe_ms_before"}
    assert min(data["machine"][k] for k in (
        "cpu_probe_ms", "cpu_probe_ms_before", "cpu_probe_all_cores_ms")) > 0
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


@pytest.mark.parametrize("main", [load.main, loadgen.main], ids=["load", "loadgen"])
@pytest.mark.parametrize("value", ["150", "-1", "nan", "soon"])
def test_load_refuses_a_linger_the_services_would_refuse(
        main: Any, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--trunk-linger-ms", value])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "argument --trunk-linger-ms" in err
    assert ("not a number of milliseconds" if value == "soon" else "must be 0 to 100 ms") in err


def test_loadgen_names_a_bad_linger_setting(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRAGOMAN_TRUNK_LINGER_MS", "500")
    with pytest.raises(SystemExit) as refused:
        loadgen.main(["--session-svc", "127.0.0.1:1"])
    assert refused.value.code == 2
    assert "setting trunk_linger_ms must be 0 to 100 ms, got 500" in capsys.readouterr().err


def test_load_smoke_on_session_svc_alone(results: Path) -> None:
    """--session-svc: no gateway; the load generator calls session_svc as a
    gateway replica does (identity in metadata, calls on trunks, here with no
    linger on them)."""
    out = _run("bench.load", "--smoke", "--session-svc", "--trunk-linger-ms", "0",
               "--out", str(results))
    assert "no gateway" in out and "audio lingers up to 0 ms on trunks" in out
    data = json.loads((results / "load_session_svc.json").read_text())
    assert data["target"] == "session_svc" and data["trunk_linger_ms"] == 0
    (step,) = data["steps"]
    assert step["sessions_started"] == 5 and step["utterances_measured"] > 0
    assert step["error_count"] == 0, step["error_samples"]
    assert set(step["cores"]) == {"session_svc", "fakes", "machine_busy", "other_processes"}
    assert step["cores"]["session_svc"] > 0


def test_e2e_smoke(results: Path, e2e_smoke: str) -> None:
    assert "en<>es total" in e2e_smoke
    data = json.loads((results / "e2e.json").read_text())
    assert {"benchmark", "machine", "engines", "method", "clips_per_side", "pairs", "all_pairs",
            "goal", "goal_met", "errors", "turns", "smoke"} <= set(data)
    assert {"en<>es", "en-es", "es-en"} <= set(data["pairs"])
    for entry in (data["all_pairs"], *data["pairs"].values()):
        assert set(entry) == {"utterances", "clips", "clips_heard", "stages",
                              "client_last_chunk_to_first_audio", "listener_wait"}
        assert set(entry["stages"]) == set(STAGES)
        for value in (*entry["stages"].values(), entry["client_last_chunk_to_first_audio"],
                      entry["listener_wait"]):
            _summary(value)
    assert data["all_pairs"]["utterances"] >= 2
    assert all(set(t) == {"direction", "clip", "utterances", "completed", "client_ms", "stages",
                          "listener_wait_ms"} for t in data["turns"])
    # the silence a listener sits through is never more than the whole end-to-end time
    for t in data["turns"]:
        assert len(t["listener_wait_ms"]) == len(t["stages"])
        for wait, stage in zip(t["listener_wait_ms"], t["stages"], strict=True):
            assert 0 <= wait <= stage["total"] + 1


def test_capacity_from_smoke_results(results: Path, load_smoke: str, e2e_smoke: str) -> None:
    doc = results / "CAPACITY.md"
    _run("bench.capacity", "--results", str(results), "--doc", str(doc),
         "--hpa", str(results / "hpa.yaml"), timeout_s=30)
    data = json.loads((results / "capacity.json").read_text())
    assert {"benchmark", "machine", "assumptions", "traffic", "services", "hpa", "total_gpus",
            "inputs", "latency"} <= set(data)
    assert data["inputs"]["load"] and data["inputs"]["e2e"]
    assert data["services"]["session_svc"]["replicas"] >= 2
    assert {"gateway", "session_svc"} <= set(data["hpa"])
    assert "## Autoscaling" in doc.read_text()


def test_grpc_floor_smoke_sits_beside_the_load_smoke(results: Path, load_smoke: str) -> None:
    out = _run("bench.grpc_floor", "--smoke", "--out", str(results), timeout_s=60)
    assert "relay us/chunk" in out
    data = json.loads((results / "grpc_floor.json").read_text())
    assert {"duration_s", "chunk_ms", "steps", "load_json_time", "machine", "smoke"} <= set(data)
    steps = {step["via"]: step for step in data["steps"]}
    assert set(steps) == {"plain", "trunk"} and len(data["steps"]) == 2
    for step in steps.values():
        assert step["sessions"] == 5 and step["streams"] == 10 and step["chunks"] > 0
        assert step["relay_us_per_chunk"] > 0
        # the load smoke ran N=5 too, so session_svc's cost sits beside the relay's
        assert step["session_svc_us_per_chunk"] > 0 and step["session_svc_times_the_floor"] > 0


def test_loadgen_chunks_hold_the_audio_of_their_length() -> None:
    for ms in (100, 200):
        speech, silence = loadgen._chunk(True, ms), loadgen._chunk(False, ms)
        assert len(speech) == len(silence) == 2 * loadgen.RATE_HZ * ms // 1000
        assert speech.strip(b"\0") and not silence.strip(b"\0")


def test_capacity_compares_chunk_sizes_only_where_both_runs_delivered_everything() -> None:
    from bench.capacity import _chunk_size_effect

    def step(n: int, mcore: float, delivered: float = 1.0) -> dict[str, Any]:
        return {"sessions": n, "delivery_ratio": delivered,
                "cpu_per_session_millicores": {"session_svc": mcore}}

    small = {"steps": [step(10, 12.0), step(50, 10.0), step(200, 3.0, delivered=0.4)]}
    big = {"steps": [step(10, 9.0), step(50, 7.0), step(200, 2.0)]}
    assert _chunk_size_effect(small, big) == [
        {"sessions": 10, "mcore_100ms": 12.0, "mcore_200ms": 9.0, "ratio": 0.75},
        {"sessions": 50, "mcore_100ms": 10.0, "mcore_200ms": 7.0, "ratio": 0.7},
    ]
    assert _chunk_size_effect(small, None) == []


def test_an_n_past_one_that_missed_counts_for_neither_the_goal_nor_the_limit() -> None:
    """Noise can let N=400 do better than N=300; the largest N that holds is
    the one below the first N that missed."""
    from bench.capacity import _load_numbers

    def step(n: int, p99: float) -> dict[str, Any]:
        return {"sessions": n, "sessions_started": n, "delivery_ratio": 1.0,
                "added_latency": {"p99_ms": p99}, "cores": {"session_svc": n / 600},
                "cpu_per_session_millicores": {"session_svc": 1.5},
                "memory_per_session_kb": {"session_svc": 1200}}

    steps = [step(100, 22), step(200, 30), step(300, 180), step(400, 45)]
    result = load._result(steps, load.DEFAULT_DELAYS, "test", 700, 20)
    assert result["max_sessions_within_goal_latency"] == 200
    assert result["n_where_p99_added_exceeds_100ms"] == 300
    numbers = _load_numbers(result)
    assert numbers["n"] == numbers["healthy_n"] == 200


def test_load_beyond_the_admission_limit_refuses_the_rest_and_serves_the_admitted(
        tmp_path: Path) -> None:
    """A full session_svc refuses new sessions with RESOURCE_EXHAUSTED; those it holds
    are still heard, and the step counts as past the limit."""
    out = _run("bench.load", "--smoke", "--session-svc", "--max-live-sessions", "3",
               "--out", str(tmp_path))
    assert "admission limit: 3 live sessions" in out
    data = json.loads((tmp_path / "load_session_svc.json").read_text())
    assert data["session_admission_limit"] == 3
    (step,) = data["steps"]
    assert step["sessions"] == 5 and step["sessions_started"] == 3
    assert step["utterances_measured"] > 0 and step["delivery_ratio"] >= 0.99
    assert step["error_count"] == 2
    assert all("RESOURCE_EXHAUSTED" in e and "limit of 3 live sessions" in e
               for e in step["error_samples"])
    assert data["n_where_p99_added_exceeds_100ms"] == 5
    assert data["max_sessions_within_goal_latency"] is None


def test_mt_bench_smoke_scores_the_embedded_engines_on_the_shipped_sentences(tmp_path: Path) -> None:
    """Only the embedded engines and tests/data: what a fresh clone has."""
    out = tmp_path / "mt.json"
    _run("bench.mt_bench", "--smoke", "--engines", "bergamot", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["smoke"] is True
    pairs = {(r["source"], r["target"]): r for r in result["results"] if r["engine"] == "bergamot"}
    assert set(pairs) == {("en", "pt"), ("pt", "en")}
    for r in pairs.values():
        assert r["sentences"] == 20 and 30 < r["chrf"] <= 100  # Tatoeba EN<>PT reads well, not word by word
