"""deploy/prometheus and deploy/grafana: valid rules and queries, on metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dragoman.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def _check_as_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool parses PromQL when it checks rules: each expression as a recording rule."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dragoman:dashboard_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return _promtool("check", "rules", str(path))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    done = _check_as_rules(exprs, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = _check_as_rules(["sum by (stage (rate(dragoman_pipeline_errors_total[5m]))"], tmp_path)
    assert broken.returncode != 0  # the check can fail


def test_every_metric_the_dashboard_plots_is_exported() -> None:
    used = {name for e in _dashboard_exprs()
            for name in re.findall(r"\b(dragoman_[a-z_]+?)(?=[{\[\s)]|$)", e)}
    assert used and used <= metrics.series_names(), sorted(used - metrics.series_names())
