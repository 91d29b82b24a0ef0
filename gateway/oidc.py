"""Sign-in with OpenID Connect: the authorization code flow with PKCE.

StartSignIn makes the provider's authorization URL (S256 code challenge,
nonce, state) and keeps the state's digest with the nonce and the code
verifier in the store for `auth.oidc_state_ttl_s`, to be taken once.
FinishSignIn takes it, has the provider exchange the code (with the
verifier) for tokens and checks the ID token. Discovery, JWKS (fetched
again when an ID token names a key it does not hold: key rotation) and the
ID token's checks (signature, `iss`, `aud`, `exp`, `nonce`) are Authlib's;
nothing here reads a JWT by hand.

The provider's (issuer, subject) is linked to one account. The first
sign-in creates one, unless the provider's verified email is an existing
account's: linking to it needs its password (a provider vouching for an
address is not the account owner's consent), given in a second
FinishSignIn with the same state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import joserfc.errors
from authlib.integrations.base_client import BaseApp, FrameworkIntegration, OAuthError
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin
from authlib.integrations.httpx_client import AsyncOAuth2Client

from dragoman import config, errors
from gateway.auth import LANGUAGE_CODE, USERNAME, Accounts, SignIn
from gateway.store import PendingSignIn, ProviderIdentity, Sighting, User, UserStore

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0
"""Longest wait for a provider's discovery, JWKS or token endpoint."""
LEEWAY_S = 60
"""Clock skew allowed between the provider and the gateway for `exp` and `iat`."""
MAX_STATE_CHARS = MAX_CODE_CHARS = 2048
MAX_REDIRECT_URI_CHARS = 2048
DEFAULT_LANGUAGE = "en"
"""The preferred language of an account created at sign-in, when the provider gives no locale."""
NOT_USERNAME = re.compile(r"[^A-Za-z0-9._-]+")

UNKNOWN_STATE = "unknown, expired or already used sign-in state: start the sign-in again"
LINK_NEEDED = ("the provider's email address is that of an existing account: to link the two, "
               "call FinishSignIn again with the same state and that account's password")
WRONG_LINK_PASSWORD = ("wrong password for the account to link: start the sign-in again")


@dataclass(frozen=True, slots=True)
class Started:
    authorization_url: str
    state: str


@dataclass(frozen=True, slots=True)
class Finished:
    signed_in: SignIn
    created: bool


class _Client(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):
    """Authlib's async OpenID Connect client (as its Starlette integration composes it),
    on httpx2, with no web framework: the state lives in our store instead."""

    client_cls = AsyncOAuth2Client


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if (len(uri) > MAX_REDIRECT_URI_CHARS or parts.scheme not in ("http", "https")
            or not parts.netloc or parts.fragment):
        raise errors.InvalidArgument(
            "redirect_uri must be an absolute http or https URL without a fragment, at most "
            f"{MAX_REDIRECT_URI_CHARS} characters")


class Provider:
    """One configured provider and its Authlib client (metadata and keys cached)."""

    def __init__(self, settings: config.OidcProvider) -> None:
        self.settings = settings
        self.issuer = settings.issuer
        secret = settings.client_secret
        self._client = _Client(
            FrameworkIntegration(settings.name), settings.name,
            client_id=settings.client_id, client_secret=secret or None,
            server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.scope,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                "timeout": HTTP_TIMEOUT_S,
            })
        # Authlib checks the audience only through `azp` unless told: an ID token for another
        # client that names us as its authorized party must still be refused
        self._claims = {"iss": {"essential": True, "value": settings.issuer},
                        "aud": {"essential": True, "value": settings.client_id}}

    async def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = await self._client.load_server_metadata()
        # OpenID Connect Discovery 1.0 section 4.3: the document must name the issuer asked
        if metadata.get("issuer") != self.issuer:
            self._client.server_metadata.clear()
            raise errors.Unavailable(
                f"sign-in provider {self.settings.name!r} is misconfigured: its discovery "
                "document names another issuer")
        return metadata

    async def authorization_url(self, redirect_uri: str) -> dict[str, str]:
        """{'url', 'state', 'nonce', 'code_verifier'}"""
        await self._metadata()
        created: dict[str, str] = await self._client.create_authorization_url(redirect_uri)
        return created

    async def identity(self, code: str, pending: PendingSignIn) -> dict[str, Any]:
        """The checked claims of the ID token the provider gives for `code`."""
        await self._metadata()
        try:
            token = await self._client.fetch_access_token(
                redirect_uri=pending.redirect_uri, code=code, code_verifier=pending.code_verifier)
        except OAuthError as e:
            log.info("provider refused the code",
                     extra={"provider": self.settings.name, "error": e.error})
            raise errors.Unauthenticated(
                f"the provider refused the code ({e.error}): start the sign-in again") from None
        try:
            claims = await self._client.parse_id_token(
                token, nonce=pending.nonce, leeway=LEEWAY_S, claims_options=self._claims)
        except joserfc.errors.JoseError as e:
            log.warning("ID token rejected",
                        extra={"provider": self.settings.name, "error": e.error})
            raise errors.Unauthenticated(
                f"the provider's ID token was rejected: {e.description or e.error}") from None
        if claims is None:
            raise errors.Unauthenticated("the provider returned no ID token")
        return dict(claims)


class SignIns:
    """StartSignIn and FinishSignIn over the configured providers."""

    def __init__(self, providers: tuple[config.OidcProvider, ...], store: UserStore,
                 accounts: Accounts, state_ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._providers = {p.name: Provider(p) for p in providers}
        self._store = store
        self._accounts = accounts
        self._state_ttl_s = state_ttl_s
        self._clock = clock

    def providers(self) -> list[config.OidcProvider]:
        return [p.settings for p in self._providers.values()]

    async def start(self, provider: str, redirect_uri: str) -> Started:
        if not provider:
            raise errors.InvalidArgument("provider is required")
        _check_redirect_uri(redirect_uri)
        found = self._providers.get(provider)
        if found is None:
            raise errors.NotFound(f"no sign-in provider named {provider!r}")
        try:
            created = await found.authorization_url(redirect_uri)
        except (httpx2.HTTPError, ValueError) as e:  # ValueError: a document that is no JSON
            raise errors.Unavailable(
                f"sign-in provider {provider!r} cannot be reached ({type(e).__name__})") from None
        await self._store.add_signin(_digest(created["state"]), PendingSignIn(
            provider, created["nonce"], created["code_verifier"], redirect_uri,
            self._clock() + self._state_ttl_s))
        return Started(created["url"], created["state"])

    async def finish(self, state: str, code: str, password: str, seen: Sighting) -> Finished:
        if not state or len(state) > MAX_STATE_CHARS:
            raise errors.InvalidArgument(f"state is required, at most {MAX_STATE_CHARS} characters")
        if not code and not password:
            raise errors.InvalidArgument("code is required (or password, to link an account)")
        if len(code) > MAX_CODE_CHARS:
            raise errors.InvalidArgument(f"code must be at most {MAX_CODE_CHARS} characters")
        pending = await self._store.take_signin(_digest(state))
        if pending is None or pending.provider not in self._providers:
            raise errors.FailedPrecondition(UNKNOWN_STATE)
        if pending.link is not None:
            return await self._link(pending, pending.link, password, seen)
        if not code:
            raise errors.InvalidArgument("code is required: this sign-in links no account")
        provider = self._providers[pending.provider]
        try:
            claims = await provider.identity(code, pending)
        except httpx2.HTTPError as e:
            raise errors.Unavailable(
                f"sign-in provider {pending.provider!r} cannot be reached ({type(e).__name__})"
            ) from None
        identity = ProviderIdentity(claims["iss"], claims["sub"])
        user = await self._store.find_identity(identity)
        if user is not None:
            return Finished(await self._accounts.sign_in(user, seen), False)
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise errors.FailedPrecondition(
                "the provider gave no email address: the provider must allow the email scope")
        existing = await self._store.find_user_by_email(email)
        if existing is None:
            return Finished(await self._create(identity, email, claims, seen), True)
        if claims.get("email_verified") is not True:
            raise errors.FailedPrecondition(
                "the provider's email address is that of an existing account, and the provider "
                "has not verified it: sign in with your password instead")
        # the code is spent: the verified identity waits, under the same state, for the password
        await self._store.add_signin(_digest(state), dataclasses.replace(
            pending, expire_time_s=self._clock() + self._state_ttl_s,
            link_user_id=existing.user_id, link=identity))
        raise errors.FailedPrecondition(LINK_NEEDED)

    async def _link(self, pending: PendingSignIn, identity: ProviderIdentity, password: str,
                    seen: Sighting) -> Finished:
        if not password:
            raise errors.InvalidArgument(
                "password is required to link the existing account: start the sign-in again")
        user = await self._store.get_user(pending.link_user_id)
        if not await self._accounts.password_matches(user, password) or user is None:
            log.warning("account link refused: wrong password",
                        extra={"user_id": pending.link_user_id})
            raise errors.Unauthenticated(WRONG_LINK_PASSWORD)
        await self._store.link_identity(identity, user.user_id)
        log.info("provider identity linked", extra={"user_id": user.user_id})
        return Finished(await self._accounts.sign_in(user, seen), False)

    async def _create(self, identity: ProviderIdentity, email: str, claims: dict[str, Any],
                      seen: Sighting) -> SignIn:
        locale = claims.get("locale")
        language = (locale.replace("_", "-") if isinstance(locale, str)
                    and LANGUAGE_CODE.fullmatch(locale.replace("_", "-")) else DEFAULT_LANGUAGE)
        wanted = claims.get("preferred_username") or email.partition("@")[0]
        base = NOT_USERNAME.sub("", str(wanted))[:24]
        base = base if len(base) >= 3 else "user"
        for attempt in range(4):
            username = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
            assert USERNAME.fullmatch(username)
            user = User(uuid.uuid4().hex, username, email, "", language, self._clock())
            try:
                await self._store.link_identity(identity, user.user_id, new_user=user)
            except errors.AlreadyExists as e:
                if "username" not in str(e):
                    raise
                continue
            log.info("user registered with a sign-in provider", extra={"user_id": user.user_id})
            return await self._accounts.sign_in(user, seen)
        raise errors.Aborted("no free username was found; try again")
