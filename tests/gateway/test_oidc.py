"""Sign-in with OpenID Connect (issue 23, part 4) through a real gateway on
loopback, once over PostgreSQL and once over the in-memory store, against a
real provider process (tests.gateway.oidc_provider): discovery, PKCE, RS256
ID tokens, key rotation. The matrix: a first sign-in creates an account and
a second finds it; linking to a password account needs its password; a
wrong audience, an expired ID token, a bad nonce, another issuer, a replayed
state and a replayed code are refused, each with its status."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx2
import pytest

from dragoman import config
from dragoman.v1 import auth_pb2
from gateway import oidc, server
from gateway.store import InMemoryUserStore
from tests.conftest import started
from tests.gateway import oidc_provider
from tests.gateway.conftest import (
    PASSWORD,
    Stubs,
    bearer,
    failure,
    unique_name,
    with_session_address,
)

CLIENT_ID, CLIENT_SECRET = "dragoman-test", "provider-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:9/signed-in"
"""Never fetched: the test reads the provider's redirect to it."""


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider.running(CLIENT_ID, CLIENT_SECRET) as url:
        yield url


def control(issuer: str, **change: Any) -> str:
    """Sets the provider's next user and faults; returns its signing key's kid."""
    reply = httpx2.post(f"{issuer}/control", json=change)
    reply.raise_for_status()
    return str(reply.json()["kid"])


@pytest.fixture(scope="module", params=["postgres", "memory"])
async def stubs(request: pytest.FixtureRequest, settings: config.Settings, double_address: str,
                issuer: str) -> AsyncIterator[Stubs]:
    settings = with_session_address(settings, double_address)
    settings = dataclasses.replace(settings, auth=dataclasses.replace(
        settings.auth, oidc_providers=(
            config.OidcProvider("Test", issuer, CLIENT_ID, CLIENT_SECRET),
            config.OidcProvider("Nowhere", "http://127.0.0.1:9", "x"))))
    store = InMemoryUserStore() if request.param == "memory" else None
    service = await server.create(settings, store=store)
    async for address in started(service):
        async with grpc.aio.insecure_channel(address) as channel:
            yield Stubs.on(channel)


@pytest.fixture
def person(issuer: str) -> dict[str, Any]:
    """A new user at the provider, signing in next, and no faults."""
    name = unique_name("oidc")
    user = {"sub": uuid.uuid4().hex, "email": f"{name}@example.org", "email_verified": True,
            "preferred_username": name}
    control(issuer, user=user)
    return user


async def authorize(stubs: Stubs, provider: str = "Test") -> tuple[str, str]:
    """StartSignIn, then the user's browser at the provider: the (state, code) it sends back."""
    started_ = await stubs.auth.StartSignIn(auth_pb2.StartSignInRequest(
        provider=provider, redirect_uri=REDIRECT_URI))
    query = parse_qs(urlsplit(started_.authorization_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert query["state"] == [started_.state]
    async with httpx2.AsyncClient() as browser:
        redirect = await browser.get(started_.authorization_url)
    assert redirect.status_code == 302
    back = urlsplit(redirect.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI
    sent = parse_qs(back.query)
    return sent["state"][0], sent["code"][0]


async def finish(stubs: Stubs, state: str, code: str = "", password: str = ""
                 ) -> auth_pb2.FinishSignInResponse:
    reply: auth_pb2.FinishSignInResponse = await stubs.auth.FinishSignIn(
        auth_pb2.FinishSignInRequest(state=state, code=code, password=password,
                                     device_name="oidc test"))
    return reply


async def test_lists_the_configured_providers(stubs: Stubs, issuer: str) -> None:
    reply = await stubs.auth.ListSignInProviders(auth_pb2.ListSignInProvidersRequest())
    assert [(p.name, p.issuer) for p in reply.providers] == [
        ("Test", issuer), ("Nowhere", "http://127.0.0.1:9")]


async def test_first_sign_in_creates_an_account_and_the_next_finds_it(
    stubs: Stubs, person: dict[str, Any]
) -> None:
    first = await finish(stubs, *await authorize(stubs))
    assert first.created and first.user_id
    devices = await stubs.auth.ListDevices(auth_pb2.ListDevicesRequest(),
                                           metadata=bearer(first.tokens.access_token))
    assert [d.name for d in devices.devices] == ["oidc test"]
    exported = await stubs.auth.ExportMyData(auth_pb2.ExportMyDataRequest(),
                                             metadata=bearer(first.tokens.access_token))
    assert exported.account.username == person["preferred_username"]
    assert exported.account.email == person["email"]

    again = await finish(stubs, *await authorize(stubs))
    assert not again.created and again.user_id == first.user_id
    refreshed = await stubs.auth.RefreshToken(auth_pb2.RefreshTokenRequest(
        refresh_token=again.tokens.refresh_token))
    assert refreshed.tokens.access_token


async def test_linking_a_password_account_needs_its_password(
    stubs: Stubs, issuer: str, person: dict[str, Any]
) -> None:
    username = unique_name()
    registered = await stubs.auth.Register(auth_pb2.RegisterRequest(
        username=username, email=person["email"].upper(), password=PASSWORD,
        preferred_language_code="en"))

    state, code = await authorize(stubs)
    assert await failure(finish(stubs, state, code), grpc.StatusCode.FAILED_PRECONDITION) \
        == oidc.LINK_NEEDED
    assert await failure(finish(stubs, state, password="not the password"),
                         grpc.StatusCode.UNAUTHENTICATED) == oidc.WRONG_LINK_PASSWORD
    # single use: the wrong guess spent the state
    assert await failure(finish(stubs, state, password=PASSWORD),
                         grpc.StatusCode.FAILED_PRECONDITION) == oidc.UNKNOWN_STATE

    state, code = await authorize(stubs)
    await failure(finish(stubs, state, code), grpc.StatusCode.FAILED_PRECONDITION)
    linked = await finish(stubs, state, password=PASSWORD)
    assert linked.user_id == registered.user_id and not linked.created
    # linked now: the provider alone signs in, and the password still works
    assert (await finish(stubs, *await authorize(stubs))).user_id == registered.user_id
    await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))


async def test_an_unverified_email_of_an_existing_account_links_nothing(
    stubs: Stubs, issuer: str, person: dict[str, Any]
) -> None:
    username, _ = await stubs.register()
    control(issuer, user={**person, "email": f"{username}@example.org", "email_verified": False})
    details = await failure(finish(stubs, *await authorize(stubs)),
                            grpc.StatusCode.FAILED_PRECONDITION)
    assert "not verified" in details


@pytest.mark.parametrize(("fault", "words"), [
    ({"aud": "someone-else"}, "'aud'"),
    ({"aud": "someone-else", "extra": {"azp": CLIENT_ID}}, "'aud'"),
    ({"aud": ["someone-else", "another"]}, "'aud'"),
    ({"exp_offset_s": -3600}, "expired"),
    ({"nonce": "not-the-nonce"}, "'nonce'"),
    ({"iss": "https://accounts.example.com"}, "'iss'"),
])
async def test_an_id_token_failing_a_check_is_refused(
    stubs: Stubs, issuer: str, person: dict[str, Any], fault: dict[str, Any], words: str
) -> None:
    control(issuer, user=person, **fault)
    details = await failure(finish(stubs, *await authorize(stubs)),
                            grpc.StatusCode.UNAUTHENTICATED)
    assert details.startswith("the provider's ID token was rejected") and words in details
    control(issuer, user=person)
    assert (await finish(stubs, *await authorize(stubs))).created  # nothing was made before


async def test_a_replayed_state_or_code_is_refused(stubs: Stubs, person: dict[str, Any]) -> None:
    state, code = await authorize(stubs)
    await finish(stubs, state, code)
    assert await failure(finish(stubs, state, code), grpc.StatusCode.FAILED_PRECONDITION) \
        == oidc.UNKNOWN_STATE
    fresh_state, _ = await authorize(stubs)
    details = await failure(finish(stubs, fresh_state, code), grpc.StatusCode.UNAUTHENTICATED)
    assert "invalid_grant" in details  # the provider spent the code on the first use


async def test_a_rotated_signing_key_is_fetched_by_its_new_kid(
    stubs: Stubs, issuer: str, person: dict[str, Any]
) -> None:
    first = await finish(stubs, *await authorize(stubs))  # the JWKS of the old key is cached
    old_kid = control(issuer, user=person)
    new_kid = control(issuer, user=person, rotate=True)
    assert new_kid != old_kid
    again = await finish(stubs, *await authorize(stubs))
    assert again.user_id == first.user_id


async def test_bad_requests_get_precise_statuses(stubs: Stubs) -> None:
    start = stubs.auth.StartSignIn
    assert "no sign-in provider" in await failure(start(auth_pb2.StartSignInRequest(
        provider="Elsewhere", redirect_uri=REDIRECT_URI)), grpc.StatusCode.NOT_FOUND)
    await failure(start(auth_pb2.StartSignInRequest(redirect_uri=REDIRECT_URI)),
                  grpc.StatusCode.INVALID_ARGUMENT)
    for uri in ("", "/relative", "javascript:alert(1)", REDIRECT_URI + "#x"):
        await failure(start(auth_pb2.StartSignInRequest(provider="Test", redirect_uri=uri)),
                      grpc.StatusCode.INVALID_ARGUMENT)
    assert "cannot be reached" in await failure(start(auth_pb2.StartSignInRequest(
        provider="Nowhere", redirect_uri=REDIRECT_URI)), grpc.StatusCode.UNAVAILABLE)
    await failure(finish(stubs, "", "code"), grpc.StatusCode.INVALID_ARGUMENT)
    await failure(finish(stubs, "state"), grpc.StatusCode.INVALID_ARGUMENT)
    assert await failure(finish(stubs, "never-issued", "code"),
                         grpc.StatusCode.FAILED_PRECONDITION) == oidc.UNKNOWN_STATE


async def test_sign_ins_are_limited_per_client_address(
    settings: config.Settings, double_address: str, issuer: str
) -> None:
    settings = with_session_address(settings, double_address)
    settings = dataclasses.replace(
        settings, limits=dataclasses.replace(settings.limits, requests_per_minute=2),
        auth=dataclasses.replace(settings.auth, oidc_providers=(
            config.OidcProvider("Test", issuer, CLIENT_ID, CLIENT_SECRET),)))
    async for address in started(await server.create(settings, store=InMemoryUserStore())):
        async with grpc.aio.insecure_channel(address) as channel:
            stubs = Stubs.on(channel)
            for _ in range(2):
                await stubs.auth.StartSignIn(auth_pb2.StartSignInRequest(
                    provider="Test", redirect_uri=REDIRECT_URI))
            await failure(finish(stubs, "state", "code"), grpc.StatusCode.RESOURCE_EXHAUSTED)
