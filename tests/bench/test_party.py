"""The multi-party benchmarks: bench.load --participants and bench.party_latency, in smoke mode.

No timing assertions: the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import load, loadgen
from bench.common import STAGES, Participant
from tests.bench.test_benches import MACHINE, _run, _summary


def test_each_utterance_counts_once_per_listener_of_another_language() -> None:
    """A listener who speaks the speaker's language reads the transcript: no audio expected."""
    people = [Participant(client=None, language=lang)  # type: ignore[arg-type]  # no stream here
              for lang in ("en", "es", "pt", "en")]
    party = loadgen.Party("s", people, speech_end_sent={"1-1": 10.0, "2-1": 20.0})
    people[1].first_audio_s["1-1"] = 10.5
    people[2].first_audio_s["1-1"] = 10.75  # people[3] shares the host's English
    people[0].first_audio_s["2-1"] = 21.0  # people[2] and [3] never heard 2-1
    raw = loadgen._collect([party])
    assert raw["utterances_expected"] == 2 + 3 and raw["utterances_measured"] == 3
    assert sorted(raw["client_ms"]) == [500.0, 750.0, 1000.0]


def test_load_participants_names_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("1", "9", "2,x"):
        with pytest.raises(SystemExit) as refused:
            load.main(["--participants", value])
        assert refused.value.code == 2
        assert "argument --participants" in capsys.readouterr().err


def test_load_smoke_with_sessions_of_four(tmp_path: Path) -> None:
    """Four people (en, es, pt, en) in each of five sessions on session_svc alone: every
    listener of another language hears every utterance, and CPU is told per participant."""
    out = _run("bench.load", "--smoke", "--session-svc", "--participants", "4", "--out", str(tmp_path))
    assert "session mcore/person" in out
    data = json.loads((tmp_path / "multiparty_load_session_svc.json").read_text())
    assert data["command"] == f"python -m bench.load --smoke --session-svc --participants 4 --out {tmp_path}"
    assert data["languages"] == "en,es,pt"
    (step,) = data["steps"]
    assert step["participants"] == 4 and step["sessions_started"] == 5
    assert step["error_count"] == 0, step["error_samples"]
    assert step["utterances_measured"] > 0 and step["delivery_ratio"] >= 0.99
    # each utterance counts for the two or three listeners of another language
    assert step["utterances_expected"] > 2 * step["server_stages"]["total"]["n"] > 0
    cpu = step["cpu_per_participant_millicores"]["session_svc"]
    assert cpu > 0 and cpu == pytest.approx(step["cpu_per_session_millicores"]["session_svc"] / 4, rel=0.01)


def test_party_latency_smoke(tmp_path: Path) -> None:
    out = _run("bench.party_latency", "--smoke", "--out", str(tmp_path), timeout_s=300)
    assert "client p95" in out
    data = json.loads((tmp_path / "party_latency.json").read_text())
    assert {"benchmark", "machine", "engines", "method", "languages", "clips_per_person", "listeners",
            "all_listeners", "errors", "turns", "smoke", "command"} <= set(data)
    assert set(data["machine"]) == MACHINE
    assert data["languages"] == ["en", "es", "pt", "en"] and data["errors"] == []
    listeners = data["listeners"]
    assert set(listeners) == {"1:en", "2:es", "3:pt", "4:en"}
    # the two English speakers do not wait for each other's translation: they read it
    assert listeners["1:en"]["from"] == ["2:es", "3:pt"]
    assert listeners["2:es"]["from"] == ["1:en", "3:pt", "4:en"]
    for entry in listeners.values():
        assert entry["utterances"] >= len(entry["from"])
        assert set(entry["stages"]) == set(STAGES)
        for value in (*entry["stages"].values(), entry["client_last_chunk_to_first_audio"],
                      entry["listener_wait"]):
            _summary(value)
        assert entry["client_last_chunk_to_first_audio"]["n"] == entry["clips"] == len(entry["from"])
    assert len(data["turns"]) == 4 and all(t["completed"] for t in data["turns"])
    # the silence a listener sits through is never more than the whole end-to-end time
    for heard in (h for t in data["turns"] for h in t["listeners"].values()):
        assert len(heard["listener_wait_ms"]) == len(heard["stages"])
        for wait, stage in zip(heard["listener_wait_ms"], heard["stages"], strict=True):
            assert 0 <= wait <= stage["total"] + 1
