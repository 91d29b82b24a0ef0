"""bench.mesh_chrf in smoke mode (fake engines): it runs and its JSON has every field."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.test_benches import _run

SCORE = {"clips", "incomplete", "clean", "clean_normalised", "streamed_transcript_translation",
         "speech", "gap", "recognition_loss", "fragment_loss", "utterances", "held", "to_translation",
         "held_to_translation", "total"}


def test_mesh_chrf_smoke(tmp_path: Path) -> None:
    out = _run("bench.mesh_chrf", "--smoke", "--waits", "0,1500", "--out", str(tmp_path))
    assert "en-pt fleurs" in out
    data = json.loads((tmp_path / "mesh_chrf.json").read_text())
    assert set(data["variants"]) == {"0", "1500"}
    for variant in data["variants"].values():
        assert set(variant["scores"]["en-pt fleurs"]) == SCORE
        (row,) = variant["rows"]
        assert row["completed"] and row["speech"] and row["reference"] and row["clean"]
        assert "[fake:en>pt]" in row["speech"]  # the partner's translations were heard
