"""The admin console (web/static/admin.html) in headless Chromium, through a
real Envoy with `admin_api` in front of the real mesh with `admin.enabled`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dragoman import config, db
from dragoman.v1 import auth_pb2, auth_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from dragoman_tools.envoy import Edge, EdgeConfig
from gateway.pgstore import PgUserStore
from tests.browser.conftest import WEB, drive
from tests.deploy.edge import Certs
from tests.mesh import MeshAddresses, serve_mesh

PASSWORD = "password-123"


@pytest.fixture(scope="module")
async def admin_mesh(settings: config.Settings, models_dir: object) -> AsyncIterator[MeshAddresses]:
    async with serve_mesh(dataclasses.replace(settings, admin=config.AdminSettings(enabled=True))) as mesh:
        yield mesh


@pytest.fixture(scope="module")
async def admin_edge(admin_mesh: MeshAddresses, web_dist: Path, browser_certs: Certs,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    edge = Edge(EdgeConfig(listen="127.0.0.1:0", gateways=(admin_mesh.gateway,), admin_api=True,
                           tls_cert=str(browser_certs.cert), tls_key=str(browser_certs.key),
                           access_log="", health_check_interval_s=1.0),
                tmp_path_factory.mktemp("admin-edge"), web_dir=web_dist)
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()


async def register(auth: auth_pb2_grpc.AuthServiceAsyncStub, name: str) -> auth_pb2.RegisterResponse:
    return await auth.Register(auth_pb2.RegisterRequest(
        username=name, email=f"{name}@example.org", password=PASSWORD, preferred_language_code="en"))


async def test_the_console_lists_charts_and_ends_a_live_session(
        admin_mesh: MeshAddresses, admin_edge: Edge, chromium: Path, artifacts: Path,
        tmp_path: Path) -> None:
    async with grpc.aio.insecure_channel(admin_mesh.gateway) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        host = await register(auth, "console-host")  # type: ignore[arg-type]
        await register(auth, "console-admin")  # type: ignore[arg-type]
        created = await sessions_pb2_grpc.SessionServiceStub(channel).CreateSession(
            sessions_pb2.CreateSessionRequest(language_code="en"),
            metadata=(("authorization", f"Bearer {host.tokens.access_token}"),))
    database = await db.open_database(admin_mesh.settings.database)
    try:
        await PgUserStore(database).set_admin("console-admin", True)
        async with database.pool.connection() as conn:  # today's logs: 6 en>pt and 2 pt>en
            await conn.execute(
                "INSERT INTO translation_logs (log_id, session_id, utterance_id, speaker_user_id, "
                "source_language_code, target_language_code, key_id, source_text, translated_text, "
                "endpointing_ms, recognition_ms, translation_ms, synthesis_first_chunk_ms, "
                "delivery_ms, total_ms) SELECT gen_random_uuid(), %s, 'u' || i, %s, "
                "CASE WHEN i <= 6 THEN 'en' ELSE 'pt' END, CASE WHEN i <= 6 THEN 'pt' ELSE 'en' END, "
                "'k', '\\x00', '\\x00', 100, 200, 50, 80, 10, 400 + 100 * i "
                "FROM generate_series(1, 8) i", (created.session.session_id, host.user_id))
    finally:
        await database.close()

    cfg = tmp_path / "drive_admin.json"
    cfg.write_text(json.dumps({
        "chromium": str(chromium), "webDir": str(WEB), "waitMs": 20_000, "artifacts": str(artifacts),
        "prefix": "admin-", "password": PASSWORD, "sessionId": created.session.session_id,
        "hostUsername": "console-host",
        "people": [{"name": "admin", "username": "console-admin", "url": admin_edge.url + "/admin.html",
                    "viewport": {"width": 1280, "height": 900}, "wav": str(tmp_path / "none.wav")}]}))
    result = await drive(Path(__file__).parent / "drive_admin.mjs", cfg, None)
    assert result["ok"], f"{result['error']}\n{json.dumps(result['people'], indent=1)[-3000:]}"
    state = result["people"]["admin"]["state"]
    assert state["signedIn"] and state["chartDays"] >= 1
    # uPlot's series, x included: sessions, minutes, and p50 and p95 of latency
    assert state["charts"] == {"chart": 2, "minutes-chart": 2, "latency-chart": 3}
    uses = {pair: int(n) for pair, n in (p.split() for p in state["pairs"])}
    assert uses["en>pt"] >= 6 and uses["pt>en"] >= 2  # other tests' logs may share the schema
    assert list(uses.values()) == sorted(uses.values(), reverse=True)
    assert result["people"]["admin"]["pairBars"] == len(state["pairs"])
    assert any(a.startswith("console-admin EndSession") for a in state["audit"])
    assert {"stt whisper-base READY", "mt en->pt READY", "tts en_US-joe-medium READY"} <= set(state["models"])
    assert result["people"]["admin"]["modelLists"] == 3  # stt, mt, tts
