"""dragoman.tls: the dev CA's certificates and the settings that load them
(the mesh over mTLS is tested in tests/e2e/test_mtls.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from dragoman import config, tls
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.triton_client import TritonClient
from dragoman_tools import cli


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_dev_ca_issues_each_role_a_certificate_naming_it(tmp_path: Path) -> None:
    written = tls.issue_mesh(tmp_path, namespace="speech", dns_names=["mesh.example"])
    assert {p.name for p in written} == {"ca.crt", "ca.key"} | {
        f"{role}.{ext}" for role in tls.ROLES for ext in ("crt", "key")}
    ca = _cert(tmp_path / "ca.crt")
    for role in tls.ROLES:
        cert = _cert(tmp_path / f"{role}.crt")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == role
        assert tls.certificate_roles(cert) == [role]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {
            role, f"{role}.speech", f"{role}.speech.svc", f"{role}.speech.svc.cluster.local",
            "mesh.example", "localhost"}
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
        assert (tmp_path / f"{role}.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0


def test_issuing_again_keeps_the_ca_so_older_certificates_stay_valid(tmp_path: Path) -> None:
    tls.issue_mesh(tmp_path, roles=["gateway"])
    ca = (tmp_path / "ca.crt").read_bytes()
    first = (tmp_path / "gateway.crt").read_bytes()
    written = tls.issue_mesh(tmp_path, roles=["gateway", "session"])
    assert tmp_path / "ca.crt" not in written and (tmp_path / "ca.crt").read_bytes() == ca
    assert (tmp_path / "gateway.crt").read_bytes() != first
    _cert(tmp_path / "session.crt").verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


def test_the_command_writes_the_roles_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "tls", "--out", str(tmp_path / "pki"), "--role", "mt",
                     "--days", "30"]) == 0
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == ["ca.crt", "ca.key", "mt.crt", "mt.key"]
    assert str(tmp_path / "pki" / "mt.crt") in capsys.readouterr().out
    cert = _cert(tmp_path / "pki" / "mt.crt")
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert cli.main(["keys", "tls", "--out", str(tmp_path / "x"), "--days", "0"]) == 1
    with pytest.raises(SystemExit):
        cli.main(["keys", "tls", "--out", str(tmp_path), "--role", "intruder"])


def test_settings_come_from_the_environment_and_tls_is_off_unless_enabled(tmp_path: Path) -> None:
    tls.issue_mesh(tmp_path, roles=["stt"])
    env = {"DRAGOMAN_TLS_ENABLED": "true", "DRAGOMAN_TLS_CA_FILE": str(tmp_path / "ca.crt"),
           "DRAGOMAN_TLS_CERT_FILE": str(tmp_path / "stt.crt"),
           "DRAGOMAN_TLS_KEY_FILE": str(tmp_path / "stt.key"),
           "DRAGOMAN_TLS_HEALTH_ADDRESS": "0.0.0.0:50061"}
    settings = config.load(env=env)
    assert settings.tls.health_address == "0.0.0.0:50061"
    mesh = tls.MeshTls.from_settings(settings.tls)
    assert mesh is not None and mesh.role() == "stt"
    assert mesh.cert == (tmp_path / "stt.crt").read_bytes()
    assert tls.MeshTls.from_settings(config.load(env={}).tls) is None
    assert config.env_names() >= set(env)


def test_a_missing_or_wrong_file_is_named(tmp_path: Path) -> None:
    tls.issue_mesh(tmp_path, roles=["stt"])
    good = config.TlsSettings(enabled=True, ca_file=str(tmp_path / "ca.crt"),
                              cert_file=str(tmp_path / "stt.crt"), key_file=str(tmp_path / "stt.key"))
    with pytest.raises(FailedPrecondition, match=r"tls.cert_file is empty \(DRAGOMAN_TLS_CERT_FILE\)"):
        tls.MeshTls.from_settings(config.TlsSettings(enabled=True, ca_file=good.ca_file))
    with pytest.raises(FailedPrecondition, match="tls.key_file .*nowhere.key: No such file"):
        tls.MeshTls.from_settings(config.TlsSettings(
            enabled=True, ca_file=good.ca_file, cert_file=good.cert_file,
            key_file=str(tmp_path / "nowhere.key")))
    with pytest.raises(FailedPrecondition, match="tls.ca_file holds no PEM certificate"):
        tls.MeshTls.from_settings(config.TlsSettings(
            enabled=True, ca_file=good.key_file, cert_file=good.cert_file, key_file=good.key_file))
    mesh = tls.MeshTls.from_settings(good)
    assert mesh is not None
    with pytest.raises(InvalidArgument, match="unknown role 'db'"):
        mesh.channel_options("db")


def test_triton_over_tls_needs_the_tls_files() -> None:
    with pytest.raises(FailedPrecondition, match="triton.tls is set"):
        TritonClient(config.TritonSettings(tls=True), config.TlsSettings())
    TritonClient(config.TritonSettings(tls=False))  # plain text needs none


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def test_peer_roles_are_the_role_uris_of_the_peer_certificate() -> None:
    assert tls.peer_roles(_Context({})) == frozenset()  # plain text
    assert tls.peer_roles(_Context({tls.SAN_PROPERTY: [
        b"spiffe://dragoman/gateway", b"session", b"spiffe://other/stt", b"127.0.0.1"]})) == {"gateway"}
