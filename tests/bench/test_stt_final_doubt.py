"""bench.stt_final_doubt: the errors of a diagnose run attributed to the finals whose
confidence is under each threshold (how stt.final_beam_when_doubtful's 0.7 was chosen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import stt_final_doubt

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def _run(finals: list[tuple[int, float]], errors_in: list[int]) -> dict[str, Any]:
    alignment = [{"op": "equal", "utterance": 0}] + [
        {"op": "replace", "utterance": u} for u in errors_in]
    clip = {"finals": [{"utterance": u, "confidence": c} for u, c in finals],
            "alignment": alignment}
    return {"languages": {"fr": {"fleurs": {"clip_details": [clip]}}}}


def test_errors_count_against_the_final_of_their_utterance() -> None:
    run = _run([(0, 0.62), (1, 0.91), (2, 0.55)], errors_in=[0, 0, 1, 1, 1])
    assert stt_final_doubt.finals(run) == [("fr", 0.62, 2), ("fr", 0.91, 3), ("fr", 0.55, 0)]
    by_threshold = {row[0]: row for row in stt_final_doubt.rows(stt_final_doubt.finals(run))}
    assert by_threshold[0.6][1:] == [1, "0.33", 0, "0.00"]
    assert by_threshold[0.7][1:] == [2, "0.67", 2, "0.40"]
    assert by_threshold[0.85][1:] == [2, "0.67", 2, "0.40"]


def test_the_kept_runs_report(capsys: pytest.CaptureFixture[str]) -> None:
    stt_final_doubt.main([str(RESULTS / "stt_final_doubt.json")])
    out = capsys.readouterr().out
    assert "diagnose_B2" in out and "finals," in out
    assert out.count("\nfr:") == 1
