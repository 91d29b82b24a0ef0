"""A small OpenID Connect provider for the sign-in tests, run as its own process:

    python -m tests.gateway.oidc_provider CLIENT_ID CLIENT_SECRET

prints its issuer URL (loopback, a free port) and serves discovery, JWKS, an
authorize endpoint that approves the current test user at once, and a token
endpoint that checks the client, the single-use code, the redirect URI and
the PKCE verifier (Authlib's S256) and issues RS256 ID tokens (joserfc,
Authlib's JOSE library). POST /control (JSON) sets the user and how the
next ID tokens go wrong: `aud`, `iss`, `nonce` overrides, `exp_offset_s`, `extra` claims;
`rotate: true` replaces the signing key with one of a new kid.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import threading
import time
from base64 import b64decode
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


def _new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig",
                                                 "alg": "RS256"})


class Provider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.issuer = ""
        self.key = _new_key()
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.user: dict[str, Any] = {"sub": "alice-1", "email": "alice@example.org",
                                     "email_verified": True, "preferred_username": "alice"}
        self.faults: dict[str, Any] = {}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        if query.get("client_id") != self.client_id or query.get("response_type") != "code" \
                or query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {"redirect_uri": query["redirect_uri"], "nonce": query.get("nonce"),
                                "challenge": query["code_challenge"], "user": dict(self.user)}
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": target}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        scheme, _, credentials = authorization.partition(" ")
        client = b64decode(credentials).decode() if scheme == "Basic" else ":"
        if client != f"{self.client_id}:{self.client_secret}":
            return 401, {"error": "invalid_client"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # single use
            faults = dict(self.faults)
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        if create_s256_code_challenge(form.get("code_verifier", "")) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        now = int(time.time()) + int(faults.get("exp_offset_s", 0))
        claims = {**grant["user"], "iss": faults.get("iss", self.issuer),
                  "aud": faults.get("aud", self.client_id), "iat": now - 5, "exp": now + 300,
                  "nonce": faults.get("nonce", grant["nonce"]), **faults.get("extra", {})}
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        return 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                     "expires_in": 300, "id_token": id_token}


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._send(200, provider.discovery())
            elif url.path == "/jwks":
                self._send(200, dict(KeySet([provider.key]).as_dict(private=False)))
            elif url.path == "/authorize":
                status, headers = provider.authorize(dict(parse_qsl(url.query)))
                self._send(status, None, headers)
            else:
                self._send(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if self.path == "/token":
                self._send(*provider.token(dict(parse_qsl(body)),
                                           self.headers.get("Authorization", "")))
            elif self.path == "/control":
                change = json.loads(body)
                with provider.lock:
                    if change.pop("rotate", False):
                        provider.key = _new_key()
                    if "user" in change:
                        provider.user = change.pop("user")
                    provider.faults = change
                self._send(200, {"kid": provider.key.kid})
            else:
                self._send(404)

    return Handler


@contextlib.contextmanager
def running(client_id: str, client_secret: str) -> Iterator[str]:
    """This provider in its own process; yields its issuer URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.oidc_provider", client_id, client_secret],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    provider = Provider(sys.argv[1], sys.argv[2])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{httpd.server_port}"
    print(provider.issuer, flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
