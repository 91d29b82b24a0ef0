"""Sign-in with OpenID Connect in real Chromium, through the real edge to a gateway (in
front of the session_svc double), with a real provider process: the page shows the
configured provider as a button, sends the user there with PKCE, and finishes the sign-in
when the provider sends code and state back to it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from dragoman import audio, config
from dragoman.v1 import vocabulary_pb2, vocabulary_pb2_grpc
from gateway import server
from gateway.store import InMemoryUserStore
from tests.browser.conftest import BrowserStack, drive, open_stack
from tests.conftest import started
from tests.deploy.edge import Certs
from tests.gateway import oidc_provider
from tests.gateway.conftest import with_session_address
from tests.gateway.double import SessionDouble, serve
from tests.mesh import MeshAddresses

DRIVER = Path(__file__).with_name("drive_oidc.mjs")
CLIENT_ID, CLIENT_SECRET = "dragoman-web", "web-client-secret-for-tests"
WAIT_MS = 30_000


class NoVocabularies(vocabulary_pb2_grpc.VocabularyServiceServicer):
    """What the signed-in page asks for beside the double's sessions: nothing kept."""

    async def ListVocabularies(self, request: vocabulary_pb2.ListVocabulariesRequest,
                               context: object) -> vocabulary_pb2.ListVocabulariesResponse:
        return vocabulary_pb2.ListVocabulariesResponse()


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider.running(CLIENT_ID, CLIENT_SECRET) as url:
        yield url


@pytest.fixture(scope="module")
async def oidc_stack(settings: config.Settings, issuer: str, web_dist: Path, browser_certs: Certs,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserStack]:
    vocabularies = (vocabulary_pb2_grpc.add_VocabularyServiceServicer_to_server, NoVocabularies(),
                    "dragoman.v1.VocabularyService")
    async for double in started(serve(SessionDouble(), vocabularies)):
        settings = with_session_address(settings, double)
        settings = dataclasses.replace(settings, auth=dataclasses.replace(
            settings.auth, oidc_providers=(config.OidcProvider("Test", issuer, CLIENT_ID, CLIENT_SECRET),)))
        async for gateway in started(await server.create(settings, store=InMemoryUserStore())):
            mesh = MeshAddresses(settings, gateway, "", "", "")
            work = tmp_path_factory.mktemp("oidc-edge")
            async with open_stack(mesh, web_dist, browser_certs, work) as stack:
                yield stack


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_page_signs_in_with_a_provider(
    oidc_stack: BrowserStack, issuer: str, chromium: Path, artifacts: Path, tmp_path: Path,
) -> None:
    silence = audio.write_wav(tmp_path / "silence.wav", np.zeros(16_000, np.int16).tobytes(), 16_000)
    cfg = tmp_path / "drive_oidc.json"
    cfg.write_text(json.dumps({
        "chromium": str(chromium), "webDir": str(Path(__file__).parents[2] / "web"), "waitMs": WAIT_MS,
        "artifacts": str(artifacts), "prefix": "oidc-", "issuer": issuer,
        "people": [{"name": "ana", "url": oidc_stack.site_url, "viewport": {"width": 1280, "height": 800},
                    "wav": str(silence)}]}))
    result = await drive(DRIVER, cfg, oidc_stack)
    assert result["ok"], result["error"] + str(result.get("people"))
    checks = result["checks"]
    assert checks["providers"] == ["Test"] and checks["button"] == "Sign in with Test"
    asked = parse_qs(urlsplit(checks["authorize"]).query)
    assert asked["redirect_uri"] == [oidc_stack.site_url] and asked["code_challenge_method"] == ["S256"]
    assert asked["client_id"] == [CLIENT_ID]
    # back on the page, signed in, and the provider's answer gone from the address bar
    assert checks["url"] == oidc_stack.site_url
    assert checks["signedIn"]["status"] == "idle" and not checks["signedIn"]["error"]
    assert checks["signedIn"]["message"] == "Account created; signed in."
