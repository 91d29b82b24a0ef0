"""`dragoman up --envoy`: the mesh as processes with the edge in front of it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from dragoman.db.testing import scratch_schema
from dragoman.v1 import auth_pb2, auth_pb2_grpc
from tests.deploy.edge import grpc_web, request
from tests.helpers import free_ports

STARTUP_S = 240


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while line := (await stream.readline()).decode():
        seen.append(line)
        if line.startswith(marker):
            return
    raise AssertionError("`dragoman up` ended before it was ready:\n" + "".join(seen))


async def test_up_with_envoy_serves_api_page_and_health(site: Path, tmp_path: Path) -> None:
    edge_port, metrics_port, *ports = free_ports(7)
    addresses = {f"DRAGOMAN_ADDRESSES_{name}": f"127.0.0.1:{port}"
                 for name, port in zip(("GATEWAY", "SESSION", "STT", "MT", "TTS"), ports, strict=True)}
    with scratch_schema(prefix="up") as database:
        env = {
            **os.environ,
            **addresses,
            "DRAGOMAN_STT_ENGINE": "fake", "DRAGOMAN_MT_ENGINES": "fake", "DRAGOMAN_TTS_ENGINES": "fake",
            "DRAGOMAN_DATABASE_URL": database.url, "DRAGOMAN_DATABASE_SCHEMA": database.schema,
            "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": database.encryption_keys,
            "DRAGOMAN_METRICS_GATEWAY": f"127.0.0.1:{metrics_port}",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dragoman_tools.cli", "up", "--envoy", f"127.0.0.1:{edge_port}",
            "--web-dir", str(site), "--log-dir", str(tmp_path / "logs"),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            await asyncio.wait_for(_read_until(proc.stdout, "ready", seen), STARTUP_S)
            assert any(line.split()[:2] == ["envoy", f"http://127.0.0.1:{edge_port}"] for line in seen), seen

            page = await asyncio.to_thread(request, "127.0.0.1", edge_port, "GET", "/")
            assert page.status == 200 and b"web client" in page.body
            health = await asyncio.to_thread(request, "127.0.0.1", edge_port, "GET", "/healthz")
            assert health.status == 200
            web_call = await asyncio.to_thread(
                grpc_web, "127.0.0.1", edge_port, "/dragoman.v1.AuthService/Register",
                auth_pb2.RegisterRequest(username="up-web", email="up-web@example.org",
                                         password="password-123", preferred_language_code="en"))
            assert web_call.grpc_status == "0", web_call
            # native gRPC (what `dragoman demo --envoy` uses) through the same listener
            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as ch:
                reply = await auth_pb2_grpc.AuthServiceStub(ch).Login(
                    auth_pb2.LoginRequest(username="up-web", password="password-123"), timeout=20)
            assert reply.tokens.access_token
            # the gateway process serves Prometheus metrics where the settings say
            scraped = await asyncio.to_thread(request, "127.0.0.1", metrics_port, "GET", "/metrics")
            counted = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(scraped.body.decode()) for s in f.samples}
            for method in ("Register", "Login"):
                key = ("dragoman_rpc_requests_total", (("code", "OK"), ("method", method),
                                                       ("service", "dragoman.v1.AuthService")))
                assert counted.get(key) == 1, method

            proc.send_signal(signal.SIGINT)
            rest = await asyncio.wait_for(proc.stdout.read(), 60)
            assert await proc.wait() == 0, "".join(seen) + rest.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
