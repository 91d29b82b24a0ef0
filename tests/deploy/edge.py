"""Helpers for tests that drive the edge: test certificates and raw gRPC-Web calls."""

from __future__ import annotations

import http.client
import ssl
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

GRPC_WEB = "application/grpc-web+proto"


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=critical,CA:FALSE\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=dragoman test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=30)
    return Certs(ca, cert, key)


def frame(message: Message | bytes) -> bytes:
    """One gRPC(-Web) data frame."""
    data = message if isinstance(message, bytes) else message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def grpc_status(self) -> str | None:
        """grpc-status from the headers (trailers-only) or the trailer frame of the body."""
        if "grpc-status" in self.headers:
            return self.headers["grpc-status"]
        return self.trailers.get("grpc-status")

    @property
    def trailers(self) -> dict[str, str]:
        pos, out = 0, {}
        while pos + 5 <= len(self.body):
            flag, size = struct.unpack(">BI", self.body[pos:pos + 5])
            chunk = self.body[pos + 5:pos + 5 + size]
            pos += 5 + size
            if flag & 0x80:
                for line in chunk.decode().split("\r\n"):
                    if ":" in line:
                        k, v = line.split(":", 1)
                        out[k.strip().lower()] = v.strip()
        return out

    def messages(self) -> list[bytes]:
        pos, out = 0, []
        while pos + 5 <= len(self.body):
            flag, size = struct.unpack(">BI", self.body[pos:pos + 5])
            if not flag & 0x80:
                out.append(self.body[pos + 5:pos + 5 + size])
            pos += 5 + size
        return out


def request(url_host: str, port: int, method: str, path: str, *, body: bytes = b"",
            headers: dict[str, str] | None = None, ca: Path | None = None, timeout_s: float = 10) -> Reply:
    """One HTTP/1.1 request, over TLS when `ca` is given (verified against it)."""
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url_host, port, context=context, timeout=timeout_s)
    else:
        conn = http.client.HTTPConnection(url_host, port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        conn.close()


def grpc_web(host: str, port: int, path: str, message: Message | bytes, *, ca: Path | None = None,
             origin: str = "", headers: dict[str, str] | None = None) -> Reply:
    """A unary gRPC-Web call the way a browser sends it."""
    h = {"content-type": GRPC_WEB, "x-grpc-web": "1", "accept": GRPC_WEB, **(headers or {})}
    if origin:
        h["origin"] = origin
    return request(host, port, "POST", path, body=frame(message), headers=h, ca=ca)
