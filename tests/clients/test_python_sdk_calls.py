"""The Python SDK's calls against a real mesh, in this process (its source on sys.path):
errors keep their status code and message, tokens are refreshed before expiry and
after a refusal, languages and transcripts come back typed, and a conversation
survives a cut connection."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from dragoman import audio
from tests.browser.netcut import CuttableProxy
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


async def test_converse_resumes_after_the_connection_is_cut(
    mesh: MeshAddresses, sdk: ModuleType, fleurs: Path,
) -> None:
    """Bruno listens through a link that is cut mid-utterance and restored 1.5 s later:
    `converse` reconnects by itself and he gets every event once, in order, his partner's
    utterance translated to the end."""
    host, port = mesh.gateway.rsplit(":", 1)
    link = CuttableProxy(host, int(port))
    await link.start()
    alice = await _user(sdk, mesh.gateway, "sdk-cut-alice")
    bruno = await _user(sdk, f"127.0.0.1:{link.port}", "sdk-cut-bruno")
    hosted = await alice.create_session("en")
    joined = await bruno.join_session(hosted.code, language="pt-BR")

    got: list[object] = []
    ended: set[str] = set()
    changed = asyncio.Event()

    async def cut_for_a_while() -> None:
        link.cut()
        await asyncio.sleep(1.5)
        link.restore()

    async def listen() -> None:
        cutting = None
        async for event in joined.converse(output_sample_rate=24_000):
            got.append(event)
            if cutting is None and isinstance(event, sdk.Transcription):  # mid-utterance
                cutting = asyncio.create_task(cut_for_a_while())
            if isinstance(event, sdk.ProcessingEnded):
                ended.add(event.utterance_id)
            changed.set()

    listening = asyncio.create_task(listen())
    pcm = audio.float_to_pcm16(audio.decode_file(fleurs / "fleurs-en-004.ogg", audio.STT_RATE_HZ))
    pcm += bytes(audio.STT_RATE_HZ * 3)  # 1.5 s of silence ends the utterance
    spoken = set()
    chunks = sdk.audio.paced(sdk.audio.split(pcm, audio.STT_RATE_HZ), audio.STT_RATE_HZ, speed=2)
    async for event in hosted.converse(chunks, sample_rate=audio.STT_RATE_HZ):
        if isinstance(event, sdk.ProcessingStarted) and event.own:
            spoken.add(event.utterance_id)
    async with asyncio.timeout(60):
        while not spoken <= ended:
            changed.clear()
            await changed.wait()
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)

    assert link.cuts == 1 and joined.reconnects >= 1
    sequences = [e.sequence for e in got]
    assert sequences == list(range(1, len(got) + 1)), "an event missed or twice"
    finals = [e for e in got if isinstance(e, sdk.Translation) and e.is_final]
    assert {e.utterance_id for e in finals} == spoken and all(e.text for e in finals)
    speech = [e for e in got if isinstance(e, sdk.SpeechAudio)]
    for utterance in spoken:
        chunks_heard = [e.chunk_index for e in speech if e.utterance_id == utterance]
        assert chunks_heard == list(range(len(chunks_heard))) and chunks_heard, "speech cut short"
    for client in (alice, bruno):
        await client.close()
    await link.stop()


async def test_converse_gives_up_when_the_gateway_stays_away(sdk: ModuleType) -> None:
    link = CuttableProxy("127.0.0.1", 9)  # nothing listens behind it
    await link.start()
    link.cut()
    client = await sdk.connect(f"127.0.0.1:{link.port}")
    client._tokens = sdk.auth_pb2.TokenPair(access_token="unused")  # the stream never opens
    session = sdk.Session(client, sdk.sessions_pb2.Session(session_id="s"))
    started = time.monotonic()
    with pytest.raises(sdk.UnavailableError):
        async for _ in session.converse(reconnect_timeout_s=1.0):
            pass
    assert 1.0 <= time.monotonic() - started < 10 and session.reconnects >= 2
    await client.close()
    await link.stop()
