"""deploy/prometheus: the alert rules are valid, do what their tests say, and use real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dragoman import metrics
from tests.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (./dev.sh setup does)"
    return subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60, check=False)


def referenced_names(path: Path) -> set[str]:
    return set(re.findall(r"\b(dragoman_[a-z_]+?)(?=[{\[\s)]|$)", path.read_text(), re.MULTILINE))


def test_the_rules_are_valid() -> None:
    done = _promtool("check", "rules", "alerts.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = _promtool("test", "rules", "alerts_test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["alerts.yaml", "alerts_test.yaml"])
def test_every_metric_a_rule_uses_is_one_the_services_expose(name: str) -> None:
    used = referenced_names(PROMETHEUS / name)
    assert used, f"{name} names no dragoman metric"
    assert used <= metrics.series_names(), sorted(used - metrics.series_names())


def test_the_name_check_can_fail() -> None:
    assert "dragoman_rpc_requests_total" in metrics.series_names()
    assert "dragoman_rpc_requests" not in metrics.series_names()  # a counter is exposed as *_total
    assert "dragoman_utterance_stage_seconds_bucket" in metrics.series_names()
