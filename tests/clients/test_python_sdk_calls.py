"""The Python SDK's calls against a real mesh, in this process (its source on sys.path):
errors keep their status code and message, tokens are refreshed before expiry and
after a refusal, languages and transcripts come back typed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import grpc
import pytest

from tests.conftest import ROOT
from tests.mesh import MeshAddresses

PASSWORD = "password-123"


@pytest.fixture(scope="module")
def sdk() -> Iterator[ModuleType]:
    sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))
    try:
        import dragoman_client
        yield dragoman_client
    finally:
        sys.path.remove(str(ROOT / "clients" / "python" / "src"))


async def _user(sdk: ModuleType, gateway: str, name: str) -> object:
    client = await sdk.connect(gateway)
    await client.register(f"{name}-{os.getpid()}", PASSWORD, email=f"{name}-{os.getpid()}@example.org")
    return client


async def test_errors_keep_status_code_and_message(mesh: MeshAddresses, sdk: ModuleType) -> None:
    client = await _user(sdk, mesh.gateway, "sdk-errors")
    with pytest.raises(sdk.AlreadyExistsError) as taken:
        await client.register(f"sdk-errors-{os.getpid()}", PASSWORD, email="other@example.org")
    assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS and "username" in taken.value.message
    with pytest.raises(sdk.AuthenticationError) as wrong:
        await client.login(f"sdk-errors-{os.getpid()}", "not-the-password")
    assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED and wrong.value.message
    with pytest.raises(sdk.InvalidArgumentError) as bad:
        await client.register("x", "short", email="not an address")
    assert "email" in bad.value.message
    with pytest.raises(ValueError, match="not a gateway address"):
        await sdk.connect("nowhere")
    await client.close()


async def test_tokens_are_refreshed_before_expiry_and_after_a_refusal(
    mesh: MeshAddresses, sdk: ModuleType,
) -> None:
    client = await _user(sdk, mesh.gateway, "sdk-refresh")
    first = client.access_token
    client._tokens.access_token_expire_time.seconds = int(time.time()) + 5  # about to expire
    session = await client.create_session("en")
    assert client.access_token != first and session.code
    client._tokens.access_token = "not-a-token"  # refused as UNAUTHENTICATED: refreshed and retried
    again = await client.get_session(session.id)
    assert again.id == session.id and client.access_token != "not-a-token"
    await client.logout()
    with pytest.raises(sdk.AuthenticationError, match="not signed in"):
        await client.create_session("en")
    await client.close()


async def test_languages_and_transcript_are_typed(mesh: MeshAddresses, sdk: ModuleType) -> None:
    client = await _user(sdk, mesh.gateway, "sdk-typed")
    served = await client.list_languages()
    assert any(lang.code == "en" and lang.recognized for lang in served.languages)
    routes = [r for r in served.routes if r.source == "en" and r.target.startswith("pt")]
    assert routes and all(r.available and r.path.startswith("TRANSLATION_PATH_") for r in routes)
    session = await client.create_session("en")
    transcript = await session.export_transcript("json")
    assert transcript.filename.endswith(".json") and transcript.content_type.startswith("application/json")
    with pytest.raises(ValueError, match="format must be one of"):
        await session.export_transcript("docx")
    await client.close()
