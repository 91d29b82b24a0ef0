"""The web client: generated TypeScript stubs match proto/, the sources type-check, and its
unit tests pass."""

from __future__ import annotations

import filecmp
import json
import subprocess
from pathlib import Path

from tests.browser.conftest import WEB
from tests.conftest import ROOT


def _files(root: Path) -> dict[Path, Path]:
    return {p.relative_to(root): p for p in root.rglob("*") if p.is_file()}


def test_typescript_stubs_match_protos(tmp_path: Path) -> None:
    buf = WEB / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "web toolchain missing: run `cd web && npm ci`"
    result = subprocess.run([str(buf), "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)],
                            cwd=WEB, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    fresh, checked_in = _files(tmp_path / "src" / "gen"), _files(WEB / "src" / "gen")
    assert fresh, "buf generated nothing"
    stale = sorted(str(p) for p in fresh.keys() ^ checked_in.keys())
    stale += sorted(str(p) for p in fresh.keys() & checked_in.keys()
                    if not filecmp.cmp(fresh[p], checked_in[p], shallow=False))
    assert not stale, f"web/src/gen is stale ({', '.join(stale)}): run `cd web && npm run gen`"
    # the admin console (admin.html) calls AdminService, which the edge routes when allowed; the
    # public API's stubs come with the SDK, and the internal services' APIs never go to browsers
    assert all(str(p).startswith("dragoman/admin/v1/") for p in fresh), "web/src/gen holds the admin API only"


def test_web_client_bundles_the_sdks_dependencies_at_its_versions() -> None:
    """web/scripts/sdk.mjs resolves the SDK's protobuf and connect imports to web/'s copies:
    both packages must pin the same versions, or the SDK would run on a runtime it was not
    built against."""
    web = json.loads((WEB / "package.json").read_text())["dependencies"]
    sdk = json.loads((ROOT / "clients" / "typescript" / "package.json").read_text())["dependencies"]
    assert sdk, "the SDK lists no dependencies"
    assert {name: web.get(name) for name in sdk} == sdk


def test_web_client_type_checks() -> None:
    tsc = str(WEB / "node_modules" / ".bin" / "tsc")
    for project in (".", "sw"):  # the page, and the service worker (WebWorker types)
        result = subprocess.run([tsc, "--noEmit", "-p", project], cwd=WEB, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, project + "\n" + result.stdout + result.stderr


def test_web_client_unit_tests() -> None:
    """web/test/*.test.mjs: roster, speech queue, offline cache, wake lock, under node's test runner."""
    result = subprocess.run(["node", "scripts/test.mjs"], cwd=WEB, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout[-2000:]
