"""The browser path: the real mesh (in this process), real Envoy, the built web client,
and headless Debian Chromium driven by playwright-core (node)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dragoman import audio
from dragoman_tools.envoy import Edge, EdgeConfig, StaticSite
from tests.browser.netcut import CuttableProxy
from tests.conftest import ROOT
from tests.deploy.edge import Certs, make_certs
from tests.mesh import MeshAddresses

WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("DRAGOMAN_CHROMIUM", "/usr/bin/chromium"))
FAKE_MIC_RATE_HZ = 48_000


def npm_build(package: Path, tool: str) -> None:
    """`npm run build` in `package` with its pinned toolchain (`tool` is one of its binaries)."""
    if not (package / "node_modules" / ".bin" / tool).exists():
        pytest.fail(f"{package.name} toolchain missing: run `npm ci` in {package} (./dev.sh test does)")
    result = subprocess.run(["npm", "run", "--silent", "build"], cwd=package, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{package.name} build failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """web/dist, built from the current sources with the pinned toolchain."""
    npm_build(WEB, "esbuild")
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


@contextlib.asynccontextmanager
async def open_stack(mesh: MeshAddresses, web_dist: Path, browser_certs: Certs,
                     work: Path) -> AsyncIterator[BrowserStack]:
    """The edge and the page's other origin in front of `mesh`, stopped on exit."""
    site = StaticSite(web_dist)  # the page on its own origin; its config.json points at the edge
    site.start()
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


@pytest.fixture(scope="session")
async def stack(mesh: MeshAddresses, web_dist: Path, browser_certs: Certs,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserStack]:
    async with open_stack(mesh, web_dist, browser_certs, tmp_path_factory.mktemp("browser-edge")) as opened:
        yield opened


def fake_microphone(clip: Path, out: Path) -> Path:
    """The clip as 16-bit mono WAV with silence around it (the fake device plays it once)."""
    samples = audio.decode_file(clip, FAKE_MIC_RATE_HZ)
    pad = np.zeros(FAKE_MIC_RATE_HZ, np.float32)
    tail = np.zeros(3 * FAKE_MIC_RATE_HZ, np.float32)
    return audio.write_wav(out, audio.float_to_pcm16(np.concatenate([pad, samples, tail])), FAKE_MIC_RATE_HZ)


def person(name: str, language: str, url: str, viewport: dict[str, int], clip: Path, tmp: Path) -> dict:
    """One person of a driver's config: their page, language, a fresh username, and `clip` as
    their microphone."""
    return {"name": name, "language": language, "url": url, "viewport": viewport,
            "username": f"{name}-{secrets.token_hex(3)}",
            "wav": str(fake_microphone(clip, tmp / f"{name}.wav"))}


async def drive(driver: Path, config: Path, stack: BrowserStack | None) -> dict:
    """Runs the node `driver` on `config`, cutting and restoring the cuttable link when it asks
    (a driver without a `stack` never does); returns its result."""
    errors = config.with_suffix(".stderr")
    with open(errors, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "node", str(driver), str(config), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, limit=16 * 1024 * 1024)
    assert proc.stdin is not None and proc.stdout is not None
    actions = {"cut": stack.link.cut, "restore": stack.link.restore} if stack else {}
    try:
        async for line in proc.stdout:
            message = json.loads(line)
            if "result" in message:
                return message["result"]
            actions[message["control"]]()
            proc.stdin.write(b"ok\n")
            await proc.stdin.drain()
        await proc.wait()
        raise AssertionError(f"the driver ended without a result:\n{errors.read_text()[-3000:]}")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


Browsers = Callable[..., Awaitable[dict]]
"""`await browsers(driver, people, wait_ms=…, drive_s=…, **more_config)` → the driver's result."""


@pytest.fixture
def browsers(stack: BrowserStack, chromium: Path, artifacts: Path, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Browsers:
    """Runs a node driver on `people` (see `person`) through the stack, for at most `drive_s`;
    saves its result next to the screenshots and fails with the driver's error."""

    async def run(driver: Path, people: list[dict], *, wait_ms: int, drive_s: float, **more: Any) -> dict:
        config = tmp_path / f"{driver.stem}.json"
        config.write_text(json.dumps({"chromium": str(chromium), "webDir": str(WEB), "waitMs": wait_ms,
                                      "artifacts": str(artifacts), "people": people, **more}))
        result = await asyncio.wait_for(drive(driver, config, stack), timeout=drive_s)
        with capsys.disabled():
            print(f"\nbrowser screenshots: {artifacts}")
        saved = artifacts / f"{driver.stem}-result.json"
        saved.write_text(json.dumps(result, indent=1))
        assert result["ok"], (f"at {result.get('phase', '?')}: {result['error']}\n"
                              f"(pages' state and console: {saved})")
        return result

    return run
