"""Privacy modes (docs/privacy.md) over real gRPC and real PostgreSQL: what each
mode leaves in the database, proven by queries (fake engines: plumbing only)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dragoman import config
from dragoman.db.crypto import DecryptionError
from dragoman.errors import InvalidArgument
from dragoman.v1 import sessions_pb2 as spb
from dragoman_tools import cli
from session_svc import store, transcripts
from session_svc.records import STAGES, SealedLog, SessionRecord, UtteranceLog
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import Stack, captured_logs, scratch_settings, session_stack

_n = 0


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    """A stack of its own schema, so that a search of every table sees only these tests."""
    with scratch_settings(settings, "privacy") as own:
        async with session_stack(own) as s:
            yield s


async def pair(stack: Stack, mode: int) -> tuple[Caller, Caller, spb.Session, spb.Session]:
    global _n
    _n += 1
    a, b = Caller(stack.session, f"priv-a{_n}"), Caller(stack.session, f"priv-b{_n}")
    created = (await a.sessions.CreateSession(
        spb.CreateSessionRequest(language_code="en", privacy_mode=mode),  # type: ignore[arg-type]
        metadata=a.metadata)).session
    joined = await b.join(created.code, "pt")
    return a, b, created, joined


async def failure(call: object) -> grpc.aio.AioRpcError:
    """The error a Converse call ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:  # type: ignore[attr-defined]
            pass
    return info.value


async def talk(a: Caller, b: Caller, sid: str, fleurs: Path,
               keys: tuple[bytes, bytes] = (b"", b"")) -> tuple[str, str]:
    """Alice says one utterance to Bruno; (the final transcript, its translation)."""
    a_call, b_call = a.converse(sid, history_key=keys[0]), b.converse(sid, history_key=keys[1])
    await a.say(utterance(fleurs))
    events = await b.collect(b_call, "processing_ended")
    await a.collect(a_call, "processing_ended")
    text = [e.transcription.text for e in events
            if e.WhichOneof("kind") == "transcription" and e.transcription.is_final][-1]
    translation = next(e.translation.text for e in events
                       if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    return text, translation


def every_row_as_text(stack: Stack) -> str:
    """Every row of every table of the schema, as PostgreSQL prints it (bytea as hex)."""
    tables = [t for (t,) in stack.query(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")]
    assert "translation_logs" in tables and "participant_logs" in tables
    return "\n".join(str(row) for t in tables
                     for row in stack.query(f'SELECT t::text FROM "{t}" t'))  # noqa: S608


def assert_absent(haystack: str, *texts: str) -> None:
    """No word of `texts` (of four letters or more) is there, as text or as hex bytes."""
    words = {w.strip(".,?![]:>").lower() for t in texts for w in t.split()}
    words = {w for w in words if len(w) >= 4}
    assert words, texts
    lowered = haystack.lower()
    for w in words:
        assert w not in lowered, w
        assert w.encode().hex() not in lowered, w


async def test_the_mode_is_chosen_at_creation_and_shown_to_every_participant(stack: Stack) -> None:
    a, b, created, joined = await pair(stack, spb.PRIVACY_MODE_PARTICIPANT_KEYED)
    assert created.privacy_mode == joined.privacy_mode == spb.PRIVACY_MODE_PARTICIPANT_KEYED
    got = await b.sessions.GetSession(
        spb.GetSessionRequest(session_id=created.session_id), metadata=b.metadata)
    assert got.session.privacy_mode == spb.PRIVACY_MODE_PARTICIPANT_KEYED
    listed = await b.sessions.ListSessions(spb.ListSessionsRequest(), metadata=b.metadata)
    assert listed.sessions[0].privacy_mode == spb.PRIVACY_MODE_PARTICIPANT_KEYED
    assert stack.query("SELECT privacy_mode FROM sessions WHERE session_id = %s",
                       (created.session_id,)) == [("participant-keyed",)]

    _, _, standard, _ = await pair(stack, spb.PRIVACY_MODE_UNSPECIFIED)
    assert standard.privacy_mode == spb.PRIVACY_MODE_STANDARD  # unset: as before

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.sessions.CreateSession(spb.CreateSessionRequest(
            language_code="en", privacy_mode=7), metadata=a.metadata)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "privacy_mode must be PRIVACY_MODE_STANDARD" in (info.value.details() or "")
    for c in (a, b):
        await c.close()


async def test_private_stores_no_text_anywhere(stack: Stack, fleurs: Path) -> None:
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_PRIVATE)
    sid = session.session_id
    with captured_logs() as logged:
        text, translation = await talk(a, b, sid, fleurs)
        ended = await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    assert ended.metrics.utterance_count == 1 and ended.metrics.mean_latency_ms > 0

    assert stack.query("SELECT count(*) FROM translation_logs WHERE session_id = %s", (sid,)) == [(0,)]
    assert stack.query("SELECT count(*) FROM participant_logs WHERE session_id = %s", (sid,)) == [(0,)]
    assert_absent(every_row_as_text(stack), text, translation)
    assert_absent(logged.getvalue(), text, translation)
    # metrics keep the latencies, and the history shows that the session existed
    [(count, latency)] = stack.query(
        "SELECT utterance_count, mean_latency_ms FROM session_metrics WHERE session_id = %s", (sid,))
    assert count == 1 and latency > 0
    got = await b.sessions.GetSession(spb.GetSessionRequest(session_id=sid), metadata=b.metadata)
    assert got.session.privacy_mode == spb.PRIVACY_MODE_PRIVATE
    assert got.session.status == spb.SESSION_STATUS_ENDED

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await b.sessions.ExportTranscript(spb.ExportTranscriptRequest(
            session_id=sid, format=spb.TRANSCRIPT_FORMAT_TEXT), metadata=b.metadata)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "this session is private" in (info.value.details() or "")
    for c in (a, b):
        await c.close()


def _open(key: bytes, record: dict[str, object]) -> dict[str, str]:
    sealed = base64.b64decode(str(record["sealed"]))
    plain = AESGCM(key).decrypt(sealed[:12], sealed[12:], str(record["aad"]).encode())
    return json.loads(plain)  # type: ignore[no-any-return]


async def test_participant_keyed_copies_open_only_with_their_key(
        stack: Stack, fleurs: Path) -> None:
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_PARTICIPANT_KEYED)
    sid = session.session_id
    a_key, b_key = os.urandom(32), os.urandom(32)
    text, translation = await talk(a, b, sid, fleurs, keys=(a_key, b_key))
    export = await b.sessions.ExportTranscript(spb.ExportTranscriptRequest(
        session_id=sid, format=spb.TRANSCRIPT_FORMAT_SRT), metadata=b.metadata)

    # no server-keyed row, and no plaintext anywhere
    assert stack.query("SELECT count(*) FROM translation_logs WHERE session_id = %s", (sid,)) == [(0,)]
    assert_absent(every_row_as_text(stack), text, translation)
    rows = dict(stack.query(
        "SELECT user_id, sealed FROM participant_logs WHERE session_id = %s", (sid,)))
    assert set(rows) == {a.user_id, b.user_id}  # the speaker's copy and the listener's
    [(log_id,)] = stack.query(
        "SELECT log_id FROM participant_logs WHERE session_id = %s AND user_id = %s",
        (sid, b.user_id))
    aad = f"participant_logs:{log_id}".encode()
    blob = bytes(rows[b.user_id])  # type: ignore[arg-type]
    with pytest.raises(InvalidTag):  # not with another participant's key
        AESGCM(a_key).decrypt(blob[:12], blob[12:], aad)
    mine = json.loads(AESGCM(b_key).decrypt(blob[:12], blob[12:], aad))
    assert mine["source_text"] == text and mine["translated_text"] == translation
    assert mine["speaker_user_id"] == a.user_id and mine["target_language_code"] == "pt"
    [(a_log,)] = stack.query(
        "SELECT log_id FROM participant_logs WHERE session_id = %s AND user_id = %s",
        (sid, a.user_id))
    blob = bytes(rows[a.user_id])  # type: ignore[arg-type]
    said = json.loads(AESGCM(a_key).decrypt(blob[:12], blob[12:], f"participant_logs:{a_log}".encode()))
    assert said["source_text"] == text and said["translated_text"] == ""  # what she said

    # the export is Bruno's copy, sealed: he opens it with his key
    assert export.content_type.startswith("application/vnd.dragoman.sealed-transcript+json")
    assert export.filename.endswith(".sealed.json")
    doc = json.loads(export.content)
    assert doc["privacy_mode"] == "participant-keyed" and len(doc["records"]) == 1
    assert _open(b_key, doc["records"][0])["translated_text"] == translation
    with pytest.raises(InvalidTag):
        _open(a_key, doc["records"][0])
    for c in (a, b):
        await c.close()


async def test_bad_history_keys_are_refused_with_the_reason(stack: Stack) -> None:
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_PARTICIPANT_KEYED)
    sid = session.session_id
    refusals = {
        b"": "join.history_key (your 32-byte key) is required",
        os.urandom(16): "join.history_key must be 32 bytes (AES-256), got 16",
        os.urandom(33): "join.history_key must be 32 bytes (AES-256), got 33",
    }
    for key, message in refusals.items():
        error = await failure(b.converse(sid, history_key=key))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (error.details() or "")

    first = os.urandom(32)
    call = b.converse(sid, history_key=first)
    await b.collect(call, "session_paired")
    call.cancel()  # type: ignore[attr-defined]
    # reconnecting with another key: what was sealed with the first would stay unreadable
    error = await failure(Caller(stack.session, b.user_id).converse(sid, history_key=os.urandom(32)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not the key of your earlier streams" in (error.details() or "")
    again = Caller(stack.session, b.user_id)
    await again.collect(again.converse(sid, history_key=first), "session_paired")
    for c in (a, b, again):
        await c.close()


async def test_a_standard_key_is_refused(stack: Stack) -> None:
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_STANDARD)
    error = await failure(a.converse(session.session_id, history_key=os.urandom(32)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only for participant-keyed sessions" in (error.details() or "")
    for c in (a, b):
        await c.close()


async def test_standard_keeps_the_text_under_server_keys(stack: Stack, fleurs: Path) -> None:
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_STANDARD)
    text, translation = await talk(a, b, session.session_id, fleurs)
    export = await b.sessions.ExportTranscript(spb.ExportTranscriptRequest(
        session_id=session.session_id, format=spb.TRANSCRIPT_FORMAT_TEXT), metadata=b.metadata)
    assert translation in export.content.decode()
    assert stack.query("SELECT count(*) FROM translation_logs WHERE session_id = %s",
                       (session.session_id,)) == [(1,)]
    for c in (a, b):
        await c.close()



async def test_no_copy_is_kept_for_a_participant_without_a_stream(
        stack: Stack, fleurs: Path) -> None:
    """The server drops a key with its stream: what is said afterwards is not sealed for
    that participant (nor kept in any other way)."""
    a, b, session, _ = await pair(stack, spb.PRIVACY_MODE_PARTICIPANT_KEYED)
    sid = session.session_id
    b_call = b.converse(sid, history_key=os.urandom(32))
    await b.collect(b_call, "session_paired")
    b_call.cancel()  # type: ignore[attr-defined]
    a_call = a.converse(sid, history_key=os.urandom(32))
    await a.say(utterance(fleurs))
    await a.collect(a_call, "processing_ended")
    await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    assert stack.query("SELECT user_id FROM participant_logs WHERE session_id = %s",
                       (sid,)) == [(a.user_id,)]
    for c in (a, b):
        await c.close()


def test_a_sealed_export_opens_with_the_client_and_the_cli(tmp_path: Path) -> None:
    """What ExportTranscript returns for a keyed session, opened by transcripts.open_sealed and by
    `dragoman sessions export --key-file` (base64 or raw key files), and not with another key."""
    key = os.urandom(32)
    log = UtteranceLog(
        session_id="s1", utterance_id="u1", speaker_user_id="ana", source_language_code="en",
        target_language_code="pt", source_text="the blue door", translated_text="a porta azul",
        latency_ms=dict.fromkeys(STAGES, 1), start_ms=100, end_ms=900)
    record = SessionRecord(session_id="s1", code="", status="ended",
                           created_at=datetime(2026, 12, 6, 8, 30, tzinfo=UTC), ended_at=None,
                           participants=(), metrics=None, privacy_mode="participant-keyed")
    reply = transcripts.render_sealed(record, [SealedLog(
        "0b7c", "u1", 100, 900, store.seal_log(key, "0b7c", log))])
    assert b"porta" not in reply.content

    opened = transcripts.open_sealed(reply.content, key)
    assert opened["utterances"] == [{
        "utterance_id": "u1", "speaker_user_id": "ana", "source_language_code": "en",
        "target_language_code": "pt", "source_text": "the blue door",
        "translated_text": "a porta azul", "start_ms": 100, "end_ms": 900}]
    with pytest.raises(DecryptionError):
        transcripts.open_sealed(reply.content, os.urandom(32))

    raw, text, wrong = tmp_path / "raw.key", tmp_path / "b64.key", tmp_path / "wrong.key"
    raw.write_bytes(key)
    text.write_text(base64.b64encode(key).decode() + "\n")
    wrong.write_bytes(os.urandom(32))
    for path in (raw, text):
        written = json.loads(cli._opened(reply.content_type, reply.content, str(path)))
        assert written["utterances"][0]["translated_text"] == "a porta azul"
    with pytest.raises(InvalidArgument, match="not the key you streamed with"):
        cli._opened(reply.content_type, reply.content, str(wrong))
    (tmp_path / "short.key").write_bytes(key[:16])
    with pytest.raises(InvalidArgument, match="must hold a 32-byte key"):
        cli._opened(reply.content_type, reply.content, str(tmp_path / "short.key"))
    with pytest.raises(InvalidArgument, match="not sealed"):
        cli._opened("text/plain; charset=utf-8", b"hello", str(raw))
