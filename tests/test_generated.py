"""The checked-in stubs match proto/ (regenerating changes nothing)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_generated_stubs_match_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genproto.py"), "--check"],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
