"""`python -m bench.chaos --smoke`: model services, a gateway, PostgreSQL and Redis
killed and restarted under live sessions, then one of two session_svc replicas
killed for good. No timing assertions: the numbers of a
smoke run mean nothing; what a client must never see (duplicates, gaps, a session
ended by a crash, a translation log lost) is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.bench.test_benches import _run

LINE = re.compile(r"lost=\d+ duplicated=\d+ sessions_ended=\d+ recovery_p95_ms=(\d+|none)")


def test_chaos_smoke(tmp_path: Path) -> None:
    out = _run("bench.chaos", "--smoke", "--out", str(tmp_path), timeout_s=480.0)
    assert LINE.fullmatch(out.strip().splitlines()[-1])
    result = json.loads((tmp_path / "chaos.json").read_text())
    assert (tmp_path / "chaos.md").read_text().count(result["command"]) == 1
    assert [f["fault"].split()[0] for f in result["faults"]] == [
        "stt", "mt", "tts", "gateway", "PostgreSQL", "Redis", "session_svc"]
    assert result["not_run"] == []
    # the killed replica's sessions were taken over: their streams resumed
    assert result["faults"][-1]["sessions_without_recovery"] == 0
    for fault in result["faults"]:
        assert fault["heard"] + fault["reported"] + fault["lost"] == fault["utterances"]
        assert set(fault["recovery"]) == {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"}
    totals = result["totals"]
    assert totals["duplicated"] == 0 and totals["out_of_order"] == 0
    assert totals["sessions_ended"] == 0
    assert totals["failovers"] >= 1  # the killed gateway's streams moved to the other one
    logs = totals["translation_logs"]
    # but for utterances the killed replica cut off (reported lost), every translation
    # heard is logged
    assert logs["missing"] == [], logs
    assert logs["heard"] - logs["cut_off"] <= logs["stored"]
    assert result["baseline"]["heard"] > 0


def test_a_database_outage_moves_no_session_between_replicas(tmp_path: Path) -> None:
    """PostgreSQL down longer than session.handover_after_ms silences every replica's
    lease: the first to renew must not take the other's live sessions over."""
    out = _run("bench.chaos", "--smoke", "--faults", "PostgreSQL", "--down-s", "4",
               "--out", str(tmp_path), timeout_s=300.0)
    assert LINE.fullmatch(out.strip().splitlines()[-1])
    result = json.loads((tmp_path / "chaos.json").read_text())
    assert "ERROR_CODE_REPLICA_LOST" not in result["status_codes"]
    totals = result["totals"]
    assert totals["lost"] == 0 and totals["sessions_ended"] == 0
    assert totals["duplicated"] == 0 and totals["out_of_order"] == 0
