"""`python -m bench.handover`: a short run stores every event and measures the wait."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.bench.test_benches import _run


def test_handover_bench_stores_every_event(tmp_path: Path) -> None:
    out = _run("bench.handover", "--sessions", "2", "--seconds", "2", "--out", str(tmp_path))
    assert re.fullmatch(r"extra_cpu_us_per_event=-?[\d.]+", out.strip().splitlines()[-1])
    plain, stored = json.loads((tmp_path / "handover.json").read_text())["runs"]
    assert plain["tail_rows_kept"] == 0 and plain["wait_ms"] is None
    assert stored["events"] == stored["tail_rows_kept"] > 0  # under the bound: all kept
    assert stored["failed_rows"] == 0 and stored["wait_ms"]["p50"] >= 0
