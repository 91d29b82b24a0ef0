"""Identity assertions: how session_svc knows a call comes from a gateway.

After it checks a caller's access token, the gateway signs a short-lived
assertion of who the caller is (HS256 JWT: `sub` user id, `name` username,
`aud` "session_svc", `iss` "gateway", `iat`, `exp` 60 s on) with
`auth.identity_key` and sends it in `IDENTITY_HEADER`. session_svc acts for a
user only on an assertion that verifies: any other process that reaches its
port cannot produce one, whatever network lets it in. With internal mutual
TLS (dragoman.tls) it also takes one only from a peer whose certificate
names the gateway role (session_svc.identity). Text metadata crosses
trunks (dragoman.mux), so the assertion travels on them unchanged.

The key comes from `auth.identity_key` (a secret from the environment, e.g. a
Kubernetes Secret), else `auth.identity_key_file`; with neither, every process
of one machine shares a key file generated on first use, so `dragoman up`
needs no setting.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from dragoman import keyfiles
from dragoman.config import AuthSettings, cache_dir
from dragoman.errors import FailedPrecondition, Unauthenticated

log = logging.getLogger(__name__)

IDENTITY_HEADER = "x-dragoman-identity"
"""Metadata key of the assertion; only the gateway sets it (the edge strips it)."""
AUDIENCE = "session_svc"
ISSUER = "gateway"
TTL_S = 60
"""Lifetime of an assertion: it is made for one call, and a copy is useless soon after."""
LEEWAY_S = 5
"""Clock difference tolerated between the gateway's machine and session_svc's."""
MIN_KEY_BYTES = 32
ALGORITHM = "HS256"
REUSE_S = TTL_S // 2
"""A signer reuses its assertion for a caller this long, so it is never older than this
when sent; a verifier remembers the assertions it verified until they expire. Each saves
tens of microseconds per call (bench/results/revocation.md)."""
MAX_REMEMBERED = 50_000

MISSING = (f"no identity assertion ({IDENTITY_HEADER}): session_svc acts only for "
           "callers the gateway authenticated")
EXPIRED = "identity assertion expired (are the gateway's and session_svc's clocks apart?)"
BAD_SIGNATURE = ("identity assertion does not verify: gateway and session_svc must share "
                 "auth.identity_key")
WRONG_AUDIENCE = f"identity assertion is not addressed to {AUDIENCE}"
MALFORMED = "identity assertion is malformed"


@dataclass(frozen=True, slots=True)
class Asserted:
    """Who an assertion speaks for."""

    user_id: str
    username: str


def default_key_file() -> Path:
    return cache_dir() / "identity.key"


def load_key(settings: AuthSettings, generated_file: Path | None = None) -> bytes:
    """The key per `settings`: identity_key, else identity_key_file, else the
    machine's generated file (`generated_file`, default_key_file() unless given)."""
    if settings.identity_key:
        key, source = settings.identity_key.encode(), "auth.identity_key"
    elif settings.identity_key_file:
        path = Path(settings.identity_key_file)
        try:
            key, source = path.read_bytes().strip(), str(path)
        except OSError as e:
            raise FailedPrecondition(f"identity key file {path}: {e.strerror}") from None
    else:
        path = generated_file or default_key_file()
        try:
            keyfiles.create(path, lambda: secrets.token_urlsafe(48))
            key, source = path.read_bytes().strip(), str(path)
        except OSError as e:
            raise FailedPrecondition(
                f"no identity key: set DRAGOMAN_AUTH_IDENTITY_KEY (cannot generate {path}: "
                f"{e.strerror})") from None
        log.warning("signing identity assertions with the generated key file %s (one machine "
                    "only; set DRAGOMAN_AUTH_IDENTITY_KEY when services run apart)", path)
    if len(key) < MIN_KEY_BYTES:
        raise FailedPrecondition(f"{source} is {len(key)} bytes: the identity key needs "
                                 f"{MIN_KEY_BYTES} or more (e.g. `openssl rand -base64 48`)")
    return key


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    cache.pop(key, None)  # re-inserted last: the oldest go first
    cache[key] = value
    if len(cache) > MAX_REMEMBERED:
        del cache[next(iter(cache))]


class Assertions:
    """Signs (gateway) and verifies (session_svc) identity assertions."""

    def __init__(self, key: bytes, ttl_s: int = TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock
        self._signed: dict[tuple[str, str], tuple[str, float]] = {}
        """(user id, username) -> (assertion, when signed)"""
        self._verified: dict[str, tuple[Asserted, float]] = {}
        """assertion -> (whom it names, expiry)"""

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Assertions:
        return cls(load_key(settings))

    def sign(self, user_id: str, username: str) -> str:
        now = self._clock()
        signed = self._signed.get((user_id, username))
        if signed is not None and now - signed[1] < REUSE_S:
            return signed[0]
        iat = int(now)
        token = jwt.encode({"sub": user_id, "name": username, "aud": AUDIENCE, "iss": ISSUER,
                            "iat": iat, "exp": iat + self._ttl_s}, self._key, algorithm=ALGORITHM)
        _remember(self._signed, (user_id, username), (token, float(iat)))
        return token

    def metadata(self, user_id: str, username: str) -> tuple[tuple[str, str], ...]:
        """The metadata that tells session_svc who the caller is."""
        return ((IDENTITY_HEADER, self.sign(user_id, username)),)

    def verify(self, token: str) -> Asserted:
        """Who `token` speaks for, or Unauthenticated saying what is wrong with it."""
        now = self._clock()
        known = self._verified.get(token)
        if known is not None and now < known[1] + LEEWAY_S:
            return known[0]
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["sub", "name", "aud", "iss", "iat", "exp"],
                         "verify_exp": False, "verify_iat": False})  # on self._clock, below
        except jwt.InvalidSignatureError:
            raise Unauthenticated(BAD_SIGNATURE) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(WRONG_AUDIENCE) from None
        except jwt.InvalidTokenError:
            raise Unauthenticated(MALFORMED) from None
        user_id, username, iat, exp = claims["sub"], claims["name"], claims["iat"], claims["exp"]
        if not (isinstance(user_id, str) and user_id and isinstance(username, str)
                and isinstance(iat, int) and isinstance(exp, int)):
            raise Unauthenticated(MALFORMED)
        if exp + LEEWAY_S <= now:
            raise Unauthenticated(EXPIRED)
        if exp - iat > self._ttl_s or iat > now + LEEWAY_S:
            raise Unauthenticated(MALFORMED)  # made to outlive the call, or dated ahead
        asserted = Asserted(user_id, username or user_id)
        _remember(self._verified, token, (asserted, float(exp)))
        return asserted

    def from_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> Asserted:
        """Who the caller of a call with this metadata is."""
        values = [value for key, value in metadata if key == IDENTITY_HEADER]
        if not values:
            raise Unauthenticated(MISSING)
        if len(values) > 1 or not isinstance(values[0], str):
            raise Unauthenticated(MALFORMED)
        return self.verify(values[0])
