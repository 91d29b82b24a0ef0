"""The Python SDK's calls against a real mesh, in this process (its source on sys.path):
errors keep their status code and message, tokens are refreshed before expiry and
after a refusal, languages and transcripts come back typed, a conversation
survives a cut connection, and a participant-keyed one is sealed with each one's key."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from dragoman import audio
from dragoman.db.crypto import DecryptionError
from session_svc import transcripts
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


async def test_vocabularies_are_created_listed_and_deleted(mesh: MeshAddresses, sdk: ModuleType) -> None:
    client = await _user(sdk, mesh.gateway, "sdk-vocab")
    pair = sdk.vocabulary_pb2.FixedTranslation(source_language_code="en", target_language_code="pt",
                                               source="front desk", target="receção")
    made = await client.create_vocabulary(sdk.vocabulary_pb2.Vocabulary(
        display_name="Work", terms=["Siobhan"], translations=[pair], do_not_translate=["Dragoman"]))
    assert made.vocabulary_id and made.display_name == "Work"
    listed = await client.list_vocabularies()
    assert [(v.vocabulary_id, list(v.terms), list(v.translations)) for v in listed] == [
        (made.vocabulary_id, ["Siobhan"], [pair])]
    await client.delete_vocabulary(made.vocabulary_id)
    assert await client.list_vocabularies() == []
    with pytest.raises(sdk.NotFoundError):
        await client.delete_vocabulary(made.vocabulary_id)
    await client.close()


async def test_recordings_are_asked_answered_listed_and_withdrawn(
        mesh: MeshAddresses, sdk: ModuleType) -> None:
    host = await _user(sdk, mesh.gateway, "sdk-rec-host")
    guest = await _user(sdk, mesh.gateway, "sdk-rec-guest")
    session = await host.create_session("en")
    await guest.join_session(session.code, language="pt")
    asked = await host.request_recording(session.id, translated_speech=True)
    assert asked.state == sdk.recording_pb2.RECORDING_STATE_AWAITING_CONSENT
    started = await guest.answer_recording_consent(asked.recording_id, True)
    assert started.state == sdk.recording_pb2.RECORDING_STATE_RECORDING
    assert [r.recording_id for r in await guest.list_recordings(session.id)] == [asked.recording_id]
    recording, utterances = await guest.download_recording(asked.recording_id)
    assert recording.recording_id == asked.recording_id and utterances == []
    stopped = await host.withdraw_recording_consent(asked.recording_id)
    assert stopped.state == sdk.recording_pb2.RECORDING_STATE_STOPPED
    with pytest.raises(sdk.FailedPreconditionError, match="is not running"):
        await host.withdraw_recording_consent(asked.recording_id)
    stranger = await _user(sdk, mesh.gateway, "sdk-rec-stranger")
    with pytest.raises(sdk.NotFoundError):
        await stranger.download_recording(asked.recording_id)
    event = sdk.conversation_pb2.ConversationEvent(sequence=3)
    event.recording_changed.change = sdk.recording_pb2.RECORDING_CHANGE_REQUESTED
    event.recording_changed.recording.CopyFrom(asked)
    typed = sdk.events.from_proto(event)
    assert isinstance(typed, sdk.RecordingChanged)
    assert (typed.change, typed.recording_id, typed.state) == (
        "RECORDING_CHANGE_REQUESTED", asked.recording_id, "RECORDING_STATE_AWAITING_CONSENT")
    for c in (host, guest, stranger):
        await c.close()


@pytest.mark.parametrize("cut", ["listener", "speaker"])
async def test_converse_resumes_after_the_connection_is_cut(
    mesh: MeshAddresses, sdk: ModuleType, fleurs: Path, cut: str,
) -> None:
    """Bruno listens to Alice; one of them talks through a link that is cut at their first
    transcription (mid-utterance) and restored 1.5 s later. `converse` reconnects by itself
    and both get every event once, in order. Cut as listener, Bruno hears the utterance
    translated to the end; cut as speaker, the server finishes the utterance the cut broke
    with the audio it had (translated if that held words), and the audio of the outage, sent
    on reconnecting, makes the next utterances, translated to the end."""
    host, port = mesh.gateway.rsplit(":", 1)
    link = CuttableProxy(host, int(port))
    await link.start()
    through = {who: f"127.0.0.1:{link.port}" if who == cut else mesh.gateway
               for who in ("speaker", "listener")}
    alice = await _user(sdk, through["speaker"], f"sdk-cut-{cut}-alice")
    bruno = await _user(sdk, through["listener"], f"sdk-cut-{cut}-bruno")
    hosted = await alice.create_session("en")
    joined = await bruno.join_session(hosted.code, language="pt-BR")

    got: dict[str, list[object]] = {"speaker": [], "listener": []}
    ended: set[str] = set()
    changed = asyncio.Event()
    cutting: list[asyncio.Task[None]] = []
    cutting_at: list[object] = []

    async def cut_for_a_while() -> None:
        link.cut()
        await asyncio.sleep(1.5)
        link.restore()

    def seen(who: str, event: object) -> None:
        got[who].append(event)
        if who == cut and not cutting and isinstance(event, sdk.Transcription):  # mid-utterance
            cutting.append(asyncio.create_task(cut_for_a_while()))
            cutting_at.append(event)

    async def listen() -> None:
        async for event in joined.converse(output_sample_rate=24_000):
            seen("listener", event)
            if isinstance(event, sdk.ProcessingEnded):
                ended.add(event.utterance_id)
            changed.set()

    listening = asyncio.create_task(listen())
    pcm = audio.float_to_pcm16(audio.decode_file(fleurs / "fleurs-en-001.ogg", audio.STT_RATE_HZ))
    pcm += bytes(audio.STT_RATE_HZ * 3)  # 1.5 s of silence ends the utterance
    chunks = sdk.audio.paced(sdk.audio.split(pcm, audio.STT_RATE_HZ), audio.STT_RATE_HZ, speed=2)
    async for event in hosted.converse(chunks, sample_rate=audio.STT_RATE_HZ):
        seen("speaker", event)
    spoken = {e.utterance_id for e in got["speaker"] if isinstance(e, sdk.ProcessingStarted) and e.own}
    async with asyncio.timeout(60):
        while not spoken <= ended:
            changed.clear()
            await changed.wait()
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)

    assert link.cuts == 1 and (hosted if cut == "speaker" else joined).reconnects >= 1
    for who, events in got.items():
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), f"{who}: missed or twice"
    finals = [e for e in got["listener"] if isinstance(e, sdk.Translation) and e.is_final]
    translated = {e.utterance_id for e in finals}
    broken = set() if cut == "listener" else \
        {e.utterance_id for e in got["speaker"][:got["speaker"].index(cutting_at[0])]
         if isinstance(e, sdk.ProcessingStarted)}
    assert spoken and spoken - broken <= translated <= spoken and all(e.text for e in finals), \
        (translated, broken)
    speech = [e for e in got["listener"] if isinstance(e, sdk.SpeechAudio)]
    for utterance in translated:
        chunks_heard = [e.chunk_index for e in speech if e.utterance_id == utterance]
        assert chunks_heard == list(range(len(chunks_heard))) and chunks_heard, "speech cut short"
    # one speaker, in utterance mode: the speech says whose it is, comes whole (no pieces)
    # and its first chunk carries the words it translates
    assert {e.speaker_participant_id for e in speech} == {alice.user_id}
    assert {e.piece_index for e in speech} == {0}
    assert all(bool(e.source_text) == (e.chunk_index == 0) for e in speech), speech
    heard = " ".join(e.source_text for e in finals)
    assert "sentence" in heard  # the clip's last word: the audio went on to its end
    summed_up = await hosted.end()
    assert summed_up.session.status == sdk.sessions_pb2.SESSION_STATUS_ENDED
    assert summed_up.metrics.utterance_count >= len(translated), summed_up.metrics
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


async def test_a_participant_keyed_session_is_sealed_with_each_ones_history_key(
    mesh: MeshAddresses, sdk: ModuleType, fleurs: Path,
) -> None:
    """Alice and Bruno converse in a participant-keyed session, each with their own key (a
    bad one refused before any stream, none refused by the server). Bruno stops listening
    and comes back without passing his key again: the session remembers it. His export
    opens with his key, and not with Alice's."""
    alice = await _user(sdk, mesh.gateway, "sdk-keyed-alice")
    bruno = await _user(sdk, mesh.gateway, "sdk-keyed-bruno")
    with pytest.raises(ValueError, match="privacy_mode must be one of standard, private, participant-keyed"):
        await alice.create_session("en", privacy_mode="secret")
    hosted = await alice.create_session("en", privacy_mode="participant-keyed")
    joined = await bruno.join_session(hosted.code, language="pt-BR")
    assert hosted.privacy_mode == joined.privacy_mode == "participant-keyed"

    with pytest.raises(ValueError, match=r"history_key must be 32 bytes \(an AES-256 key.*got 16"):
        async for _ in joined.converse(history_key=bytes(16)):
            pass
    with pytest.raises(TypeError, match="history_key must be bytes, not str"):
        async for _ in joined.converse(history_key="0" * 32):  # type: ignore[arg-type]
            pass
    assert joined.history_key is None
    with pytest.raises(sdk.InvalidArgumentError, match=r"join.history_key \(your 32-byte key\) is required"):
        async for _ in joined.converse():
            pass

    alice_key, bruno_key = sdk.new_history_key(), sdk.new_history_key()
    assert len(alice_key) == sdk.HISTORY_KEY_BYTES and alice_key != bruno_key
    events: list[object] = []
    ended: set[str] = set()
    changed = asyncio.Event()

    async def listen(**key: bytes) -> None:
        async for event in joined.converse(output_sample_rate=24_000, **key):
            events.append(event)
            if isinstance(event, sdk.ProcessingEnded):
                ended.add(event.utterance_id)
            changed.set()

    first = asyncio.create_task(listen(history_key=bruno_key))
    pcm = audio.float_to_pcm16(audio.decode_file(fleurs / "fleurs-en-001.ogg", audio.STT_RATE_HZ))
    pcm += bytes(audio.STT_RATE_HZ * 3)
    chunks = sdk.audio.paced(sdk.audio.split(pcm, audio.STT_RATE_HZ), audio.STT_RATE_HZ, speed=2)
    talking = asyncio.create_task(_own_utterances(sdk, hosted.converse(
        chunks, sample_rate=audio.STT_RATE_HZ, history_key=alice_key)))
    async with asyncio.timeout(60):
        while not any(isinstance(e, sdk.Transcription) for e in events):
            changed.clear()
            await changed.wait()
    first.cancel()  # Bruno's app stops listening mid-utterance...
    await asyncio.gather(first, return_exceptions=True)
    second = asyncio.create_task(listen())  # ...and comes back, the key not passed again
    spoken = await talking
    async with asyncio.timeout(90):
        while not spoken <= ended and not second.done():
            changed.clear()
            await changed.wait()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert joined.history_key == bruno_key and spoken <= ended, (spoken, ended, second)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))

    export = await joined.export_transcript("json")
    assert export.content_type.startswith("application/vnd.dragoman.sealed-transcript+json")
    assert b"sentence" not in export.content
    opened = transcripts.open_sealed(export.content, bruno_key)
    heard = [u for u in opened["utterances"] if u["utterance_id"] in spoken]  # type: ignore[attr-defined]
    assert heard and all(u["translated_text"] and u["target_language_code"].startswith("pt") for u in heard)
    assert "sentence" in " ".join(u["source_text"] for u in heard)  # the clip's last word
    with pytest.raises(DecryptionError):
        transcripts.open_sealed(export.content, alice_key)
    await hosted.end()
    for client in (alice, bruno):
        await client.close()


async def _own_utterances(sdk: ModuleType, stream: AsyncIterator[object]) -> set[str]:
    return {e.utterance_id async for e in stream if isinstance(e, sdk.ProcessingStarted) and e.own}
