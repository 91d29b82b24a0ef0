"""Internal mutual TLS (issue 21, part 4; docs/tls.md): the whole mesh with
`tls.enabled`, each service with its own certificate from a dev CA made by
`dragoman keys tls`, on real loopback gRPC. The model services run fake
engines (plumbing only): what is tested is the transport.

- A conversation crosses gateway -> session_svc -> stt/mt/tts, every hop
  on a trunk over mTLS, while clients reach the gateway's public port as before.
- A peer without a certificate, with one from another CA, or in plain text
  cannot connect to an internal port at all.
- A valid identity assertion counts only from a gateway's certificate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dragoman import config, mux, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tls import MeshTls
from dragoman.v1 import sessions_pb2
from dragoman_tools import cli
from gateway import server as gateway_server
from session_svc.identity import GATEWAY_ONLY
from stt_svc import server as stt_server
from stt_svc.engines.fake import FakeEngine as FakeStt
from tests.mesh import MeshAddresses, one_way
from tests.session_svc.conftest import Caller, answers
from tests.session_svc.stack import Stack, session_stack

CLIP = "fleurs-en-004.ogg"


def tls_settings(pki: Path, role: str, ca: Path | None = None) -> config.TlsSettings:
    return config.TlsSettings(enabled=True, ca_file=str(ca or pki / "ca.crt"),
                              cert_file=str(pki / f"{role}.crt"), key_file=str(pki / f"{role}.key"))


def credentials(pki: Path, role: str) -> MeshTls:
    mesh = MeshTls.from_settings(tls_settings(pki, role))
    assert mesh is not None
    return mesh


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev CA and every role's certificate, as `dragoman keys tls` writes them."""
    out = tmp_path_factory.mktemp("pki")
    assert cli.main(["keys", "tls", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA's certificates, with the same role names."""
    out = tmp_path_factory.mktemp("other-pki")
    assert cli.main(["keys", "tls", "--out", str(out), "--role", "gateway"]) == 0
    return out


@dataclasses.dataclass
class TlsMesh:
    stack: Stack
    gateway: str


@pytest.fixture(scope="module")
async def tls_mesh(settings: config.Settings, pki: Path) -> AsyncIterator[TlsMesh]:
    def own(role: str, s: config.Settings) -> config.Settings:
        return dataclasses.replace(s, tls=tls_settings(pki, role))

    async with session_stack(settings, own) as stack:
        gateway = await gateway_server.create(own("gateway", stack.settings))
        port = await gateway.start("127.0.0.1:0")  # the public port: plain text, as before
        try:
            yield TlsMesh(stack, f"127.0.0.1:{port}")
        finally:
            await gateway.stop(0.5)


async def test_a_conversation_crosses_every_internal_hop_over_mtls(
    tls_mesh: TlsMesh, settings: config.Settings, fleurs: Path
) -> None:
    addresses = tls_mesh.stack.settings.addresses
    heard = await one_way(MeshAddresses(settings, tls_mesh.gateway, addresses.stt, addresses.mt,
                                        addresses.tts), fleurs / CLIP, "en", "pt")
    # stt (transcription), mt (translation), tts (audio): each reached over mTLS trunks
    assert heard.heard("transcription") and heard.heard("speech_audio")
    assert any(t.text.endswith("[fake:en>pt]") for t in heard.heard("translation"))


async def _health(address: str, credentials: grpc.ChannelCredentials | None,
                  options: list[tuple[str, str]] | None = None) -> grpc.StatusCode:
    channel = (grpc.aio.insecure_channel(address) if credentials is None
               else grpc.aio.secure_channel(address, credentials, options=options))
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def test_only_peers_with_a_certificate_from_the_mesh_ca_connect(
    tls_mesh: TlsMesh, pki: Path, other_pki: Path
) -> None:
    ca = (pki / "ca.crt").read_bytes()
    session = credentials(pki, "gateway").channel_options("session")
    for address in (tls_mesh.stack.session, tls_mesh.stack.settings.addresses.stt):
        assert await _health(address, credentials(pki, "gateway").channel_credentials(),
                             session if address == tls_mesh.stack.session
                             else [("grpc.ssl_target_name_override", "stt")]) == grpc.StatusCode.OK
        # plain text; TLS without a client certificate; a certificate of another CA
        assert await _health(address, None) == grpc.StatusCode.UNAVAILABLE
        assert await _health(address, grpc.ssl_channel_credentials(ca), session) == (
            grpc.StatusCode.UNAVAILABLE)
        stranger = grpc.ssl_channel_credentials(
            ca, (other_pki / "gateway.key").read_bytes(), (other_pki / "gateway.crt").read_bytes())
        assert await _health(address, stranger, session) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_checks_that_its_server_holds_the_role_it_expects(
    tls_mesh: TlsMesh, pki: Path
) -> None:
    gateway = credentials(pki, "gateway")
    # session_svc's certificate does not name stt: the handshake fails before any call
    assert await _health(tls_mesh.stack.session, gateway.channel_credentials(),
                         gateway.channel_options("stt")) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(TimeoutError):
        await rpc.wait_serving(tls_mesh.stack.session, timeout_s=0.5, tls=gateway, server_role="mt")
    await rpc.wait_serving(tls_mesh.stack.session, timeout_s=10, tls=gateway, server_role="session")


@pytest.mark.parametrize("trunk", [False, True], ids=["grpc", "trunk"])
async def test_an_assertion_counts_only_from_a_gateway_certificate(
    tls_mesh: TlsMesh, pki: Path, trunk: bool
) -> None:
    address = tls_mesh.stack.session
    owner = Caller(address, "mtls-owner", trunk=trunk, tls=credentials(pki, "gateway"))
    # a service of the mesh with a valid assertion (the key leaked, say) is still refused
    impostor = Caller(address, "mtls-owner", trunk=trunk, tls=credentials(pki, "stt"))
    try:
        session = await owner.create("en")
        got = await owner.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=owner.metadata)
        assert got.session.participants[0].user_id == "mtls-owner"
        assert not (trunk and owner.channel.plain), "the calls went on a trunk over mTLS"
        assert await answers(impostor.channel, session.session_id, impostor.metadata) == {
            ("PERMISSION_DENIED", GATEWAY_ONLY)}
        await owner.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=session.session_id), metadata=owner.metadata)
    finally:
        await impostor.close()
        await owner.close()


async def test_probes_without_a_certificate_see_health_alone(
    settings: config.Settings, pki: Path
) -> None:
    service = await stt_server.create(dataclasses.replace(settings, tls=tls_settings(pki, "stt")),
                                      engine=FakeStt())
    service.health_address = "127.0.0.1:0"
    await service.start("127.0.0.1:0")
    try:
        health_port = service.health_port
        assert await _health(f"127.0.0.1:{health_port}", None) == grpc.StatusCode.OK
        channel = mux.channel(f"127.0.0.1:{health_port}", trunk=False)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
                    stt_pb2.ListModelsRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await channel.close()
    finally:
        await service.stop(0)
