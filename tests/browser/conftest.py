"""The browser path: the real mesh (in this process), real Envoy, the built web client,
and headless Debian Chromium driven by playwright-core (node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman_tools.envoy import Edge, EdgeConfig, StaticSite
from tests.browser.netcut import CuttableProxy
from tests.conftest import ROOT
from tests.deploy.edge import Certs, make_certs
from tests.mesh import MeshAddresses

WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("DRAGOMAN_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """web/dist, built from the current sources with the pinned toolchain."""
    if not (WEB / "node_modules" / ".bin" / "esbuild").exists():
        pytest.fail("web toolchain missing: run `cd web && npm ci` (./dev.sh test does)")
    result = subprocess.run(["npm", "run", "--silent", "build"], cwd=WEB, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"web build failed:\n{result.stdout}\n{result.stderr}"
    return WEB / "dist"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists() or shutil.which("node") is None:
        pytest.fail(f"needs node and Debian's chromium at {CHROMIUM}: apt-get install chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("browser-certs"))


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots: $DRAGOMAN_TEST_ARTIFACTS, else a pytest temporary directory."""
    chosen = os.environ.get("DRAGOMAN_TEST_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


class BrowserStack:
    """Where each browser loads the page: `edge_url` (page and API same-origin through
    Envoy over TLS) or `site_url` (page from another origin whose config.json sends
    its calls cross-origin, CORS, to the edge through `link`, a cuttable proxy)."""

    def __init__(self, edge: Edge, site: StaticSite, link: CuttableProxy) -> None:
        self.edge, self.site, self.link = edge, site, link

    @property
    def edge_url(self) -> str:
        return self.edge.url + "/"

    @property
    def site_url(self) -> str:
        return self.site.origin + "/"


@pytest.fixture(scope="session")
async def stack(mesh: MeshAddresses, web_dist: Path, browser_certs: Certs,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserStack]:
    site = StaticSite(web_dist)  # the page on its own origin; its config.json points at the edge
    site.start()
    work = tmp_path_factory.mktemp("browser-edge")
    edge = Edge(EdgeConfig(
        listen="127.0.0.1:0", gateways=(mesh.gateway,), allowed_origins=(site.origin,),
        tls_cert=str(browser_certs.cert), tls_key=str(browser_certs.key),
        access_log=str(work / "access.log"), health_check_interval_s=1.0), work, web_dir=web_dist)
    link = CuttableProxy("127.0.0.1", 0)
    try:
        await edge.start()
        link.target = ("127.0.0.1", edge.port)
        await link.start()
        api = f"https://127.0.0.1:{link.port}"  # the test certificate is for 127.0.0.1, any port
        site.extra_files["/config.json"] = json.dumps({"apiBaseUrl": api}).encode()
        yield BrowserStack(edge, site, link)
    finally:
        await link.stop()
        await edge.stop()
        site.stop()
