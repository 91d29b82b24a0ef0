"""bench.st_bench on one clip per language: both paths scored where the mesh has them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import st_bench

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_speech_translation_is_scored_beside_the_cascade_where_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--languages", "pt,de", "--beams", "1", "--clips", "1", "--out", str(tmp_path)]
    assert st_bench.main(args) == 0
    assert "no text route" in capsys.readouterr().out
    data = json.loads((tmp_path / "speech_translation.json").read_text())
    rows = {r["language"]: r for r in data["quality"]["rows"]}
    assert rows["pt"]["cascade"]["engine"] == "bergamot" and rows["pt"]["cascade"]["chrf"] > 20
    assert rows["de"]["cascade"]["chrf"] is None and rows["de"]["speech_translation"]["chrf"] > 20
    assert "interpret" not in data  # a part not run is left out
