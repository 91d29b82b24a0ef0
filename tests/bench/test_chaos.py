"""`python -m bench.chaos --smoke`: model services, a gateway, PostgreSQL and Redis
killed and restarted under live sessions, then one of two session_svc replicas
killed for good. No timing assertions: the numbers of a
smoke run mean nothing; what a client must never see (duplicates, gaps, a session
ended by a crash, a translation log lost) is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.chaos import Fault, Person, journaled
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


def test_translation_logs_are_matched_to_what_was_heard_by_id() -> None:
    """One log per translation heard (one covering two utterances counts once); one cut
    off is not missing; one heard, not cut off and not stored is, with the nearest kill."""
    a, b = Person(client=None, language="en"), Person(client=None, language="es")  # type: ignore[arg-type]
    a.session_id = b.session_id = "s1"
    b.heard_at = {"u1": 1.0, "u3": 3.0, "u4": 9.0, "u5": 9.5}
    b.heard_until = {"u1": 1.5, "u3": 3.5, "u4": 9.8, "u5": 9.9}
    b.covered = {"u2": "u3"}  # u3's translation covers u2 too: one row
    a.failed = {"u5": 10.0}  # heard, then reported: cut off
    faults = [Fault("stt", killed=5.0), Fault("session_svc replica", killed=10.0)]
    logs = journaled([(a, b)], {("s1", "u1"), ("s1", "u3")}, faults)
    assert (logs["heard"], logs["stored"], logs["cut_off"], logs["not_heard"]) == (4, 2, 1, 0)
    assert logs["missing"] == [{"utterance_id": "u4", "fault": "session_svc replica",
                                "last_audio_before_kill_ms": 200}]
