"""Mutual TLS between dragoman's own processes, and the dev CA that issues its certificates.

With `tls.enabled` (dragoman.config.TlsSettings) every internal server takes
only TLS connections whose client presents a certificate from the CA in
`tls.ca_file`, and every internal channel presents the process's own
(`tls.cert_file`, `tls.key_file`). A certificate names the role of the
process that holds it twice: as the URI SAN `spiffe://dragoman/<role>` and
as its common name. A channel checks that its server holds a certificate of
the role it expects (the role is the TLS name the channel verifies, so any
replica of the role answers at any address: a pod IP, 127.0.0.1); a server
reads its client's role with `peer_roles(context)`, on a trunk too
(dragoman.mux hands the trunk's TLS peer to each call on it).

`issue_mesh(out_dir)` (`dragoman keys tls`) writes a dev CA and one key and
certificate per role, with the Kubernetes Service names of the role and
localhost as DNS SANs; a real deployment may use any CA (cert-manager, a
SPIFFE issuer) whose certificates carry the same URI SANs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from dragoman.config import TlsSettings
from dragoman.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:  # cryptography loads when a certificate is read or made: with TLS off,
    # not at every service's start-up (bench/results/chaos.md)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

ROLES = ("gateway", "session", "stt", "mt", "tts", "triton")
"""Every role a certificate may name: the services, by their `addresses` names, and Triton."""
ROLE_URI_PREFIX = "spiffe://dragoman/"
CA_NAME = "dragoman dev CA"
CA_DAYS = 3650
CERT_DAYS = 365
"""Lifetime of an issued certificate: issue them again (and roll the pods) within it."""
SAN_PROPERTY = "x509_subject_alternative_name"
"""grpc's auth-context property that lists the peer certificate's SANs."""
CN_PROPERTY = "x509_common_name"


def role_uri(role: str) -> str:
    """The URI SAN naming `role`."""
    return f"{ROLE_URI_PREFIX}{role}"


def _read(path: str, setting: str) -> bytes:
    if not path:
        raise FailedPrecondition(f"tls.enabled is set but {setting} is empty "
                                 f"(DRAGOMAN_{setting.upper().replace('.', '_')})")
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise FailedPrecondition(f"{setting} {path}: {e.strerror}") from None


@dataclass(frozen=True, slots=True)
class MeshTls:
    """One process's credentials on the mesh: the CA its peers must chain to, its own
    certificate and key (PEM)."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> MeshTls | None:
        """The credentials `settings` name; None when TLS is off. FailedPrecondition
        names a file that is missing or unreadable, or a certificate that is not PEM."""
        if not settings.enabled:
            return None
        from cryptography import x509

        mesh = cls(ca=_read(settings.ca_file, "tls.ca_file"),
                   cert=_read(settings.cert_file, "tls.cert_file"),
                   key=_read(settings.key_file, "tls.key_file"))
        for pem, setting in ((mesh.ca, "tls.ca_file"), (mesh.cert, "tls.cert_file")):
            try:
                x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise FailedPrecondition(f"{setting} holds no PEM certificate") from None
        return mesh

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials of a server that accepts only clients with a certificate from the CA."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a channel that presents this process's certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert)

    def channel_options(self, server_role: str) -> list[tuple[str, str]]:
        """Channel options verifying that the server holds a certificate of `server_role`
        wherever it is reached (every certificate of a role names the role as a DNS SAN)."""
        if server_role not in ROLES:
            raise InvalidArgument(f"unknown role {server_role!r}: one of {', '.join(ROLES)}")
        return [("grpc.ssl_target_name_override", server_role)]

    def role(self) -> str:
        """The role this process's own certificate names ("" if none)."""
        from cryptography import x509

        return next(iter(certificate_roles(x509.load_pem_x509_certificate(self.cert))), "")


def certificate_roles(cert: x509.Certificate) -> list[str]:
    """The roles a certificate names as `spiffe://dragoman/<role>` URI SANs."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u.removeprefix(ROLE_URI_PREFIX) for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(ROLE_URI_PREFIX)]


def peer_roles(context: Any) -> frozenset[str]:
    """The roles the TLS client of a call proved (its certificate's URI SANs
    `spiffe://dragoman/<role>`); empty on a plain-text connection. `context` is a
    grpc.aio.ServicerContext or a trunk call's (dragoman.mux.ServerCall)."""
    auth = context.auth_context() or {}
    roles = set()
    for value in auth.get(SAN_PROPERTY, ()):
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if text.startswith(ROLE_URI_PREFIX):
            roles.add(text.removeprefix(ROLE_URI_PREFIX))
    return frozenset(roles)


# -- a dev CA ------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA that issues role certificates (PEM key and certificate)."""

    key_pem: bytes
    cert_pem: bytes

    @classmethod
    def new(cls, name: str = CA_NAME, days: int = CA_DAYS) -> Authority:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cls(_pem_key(key), _pem(cert))

    @classmethod
    def load(cls, key_file: Path, cert_file: Path) -> Authority:
        return cls(key_file.read_bytes(), cert_file.read_bytes())

    def issue(self, role: str, dns_names: Sequence[str] = (),
              days: int = CERT_DAYS) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) of a certificate for `role`: CN and URI SAN name
        the role; DNS SANs are the role, `dns_names`, localhost; IP SANs the loopback
        addresses. Good for both ends of a connection (server and client auth)."""
        if role not in ROLES:
            raise InvalidArgument(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self.key_pem, None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise FailedPrecondition(f"the CA key is {type(ca_key).__name__}: an EC or RSA key issues")
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        key = _key()
        names = dict.fromkeys([role, *dns_names, "localhost"])
        san = x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(role_uri(role)),
            *(x509.DNSName(n) for n in names),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, role)]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(san, critical=False)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                    critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return _pem_key(key), _pem(cert)


def service_dns_names(role: str, namespace: str) -> list[str]:
    """The names a Kubernetes Service `role` in `namespace` is reached by."""
    return [f"{role}.{namespace}", f"{role}.{namespace}.svc", f"{role}.{namespace}.svc.cluster.local"]


def _write(path: Path, data: bytes, secret: bool) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def issue_mesh(out_dir: Path, roles: Iterable[str] = ROLES, namespace: str = "default",
               dns_names: Sequence[str] = (), days: int = CERT_DAYS) -> list[Path]:
    """Writes to `out_dir` a dev CA (ca.crt, ca.key; the CA there is reused when both
    exist) and for each of `roles` ROLE.crt and ROLE.key, with the role's Service names
    in `namespace` and `dns_names` as SANs. Keys are readable by their owner only.
    Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = out_dir / "ca.key", out_dir / "ca.crt"
    written = []
    if ca_key.exists() and ca_cert.exists():
        ca = Authority.load(ca_key, ca_cert)
    else:
        ca = Authority.new()
        _write(ca_key, ca.key_pem, secret=True)
        _write(ca_cert, ca.cert_pem, secret=False)
        written += [ca_cert, ca_key]
    for role in roles:
        key, cert = ca.issue(role, [*service_dns_names(role, namespace), *dns_names], days)
        _write(out_dir / f"{role}.crt", cert, secret=False)
        _write(out_dir / f"{role}.key", key, secret=True)
        written += [out_dir / f"{role}.crt", out_dir / f"{role}.key"]
    return written
