"""Transcripts: utterance times kept in PostgreSQL, and the files each reader gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import srt
import webvtt

from dragoman import db
from dragoman.errors import InvalidArgument
from dragoman.v1 import sessions_pb2 as spb
from session_svc import store as session_store
from session_svc import transcripts
from session_svc.records import STAGES, Participant, SessionRecord, UtteranceLog
from session_svc.sessions import Identity
from tests.session_svc.test_store import clean, database, database_settings, latency, registry  # noqa: F401

START = datetime(2026, 12, 6, 8, 30, tzinfo=UTC)


async def test_utterance_times_are_kept_from_the_session_start(clean: db.Database) -> None:  # noqa: F811
    sessions = registry(clean)
    session = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.join(Identity("ben", "Ben"), session.code, "pt", "")
    ana, ben = session.members
    t0 = session.created_s
    session.record_utterance(ben, ana, "2-1", "obrigado", "thank you", latency(380),
                             (t0 + 4.25, t0 + 5.0))
    session.record_utterance(ana, ben, "1-1", "hello", "olá", latency(420), (t0 + 1.5, t0 + 3.125))
    session.record_utterance(ana, ben, "1-2", "bye", "tchau", latency(400))  # times unknown
    session.record_utterance(ben, ana, "2-0", "oi", "hi", latency(300), (t0 - 0.5, t0 + 0.25))
    await sessions.end(Identity("ben", "Ben"), session.session_id, "bye")

    async with clean.pool.connection() as conn:
        logs = await session_store.transcript_of(conn, clean.keyring, session.session_id)
    assert [(u.utterance_id, u.start_ms, u.end_ms) for u in logs] == [
        ("2-0", 0, 250), ("1-1", 1500, 3125), ("2-1", 4250, 5000), ("1-2", None, None)]
    assert [u.translated_text for u in logs] == ["hi", "olá", "thank you", "tchau"]


def _log(speaker: str, utt: str, source: str, target: str, text: str, translation: str,
         start_ms: int | None, end_ms: int | None, logged_s: float = 0) -> UtteranceLog:
    return UtteranceLog(
        session_id="s0123456789", utterance_id=utt, speaker_user_id=speaker,
        source_language_code=source, target_language_code=target, source_text=text,
        translated_text=translation, latency_ms=dict.fromkeys(STAGES, 1),
        created_at=START + timedelta(seconds=logged_s), start_ms=start_ms, end_ms=end_ms)


RECORD = SessionRecord(
    session_id="s0123456789", code="", status="ended", created_at=START,
    ended_at=START + timedelta(minutes=1), metrics=None, participants=(
        Participant("ana", "Ana <host> & co", "en", ""),
        Participant("ben", "Ben", "pt-BR", ""),
        Participant("eva", "Eva", "es", "")))
LOGS = [  # a row per target language, as session_svc logs them
    _log("ana", "a-1", "en", "pt-BR", "Is 2 < 3?\n\nYes -->", "2 < 3?", 1000, 2500),
    _log("ana", "a-1", "en", "es", "Is 2 < 3?\n\nYes -->", "¿2 < 3?", 1000, 2500),
    _log("ben", "b-1", "pt-BR", "en", "sim", "yes", 3000, 3500),
    _log("ben", "b-1", "pt-BR", "es", "sim", "sí", 3000, 3500),
    _log("eva", "e-1", "es", "pt", "hola", "olá", None, None, logged_s=9.5),  # before 0005
]


def test_each_reader_gets_the_translation_into_their_language() -> None:
    ben = transcripts.transcript(RECORD, "ben", LOGS)
    assert [(line.text, line.translation) for line in ben.lines] == [
        ("Is 2 < 3? Yes -->", "2 < 3?"), ("sim", ""), ("hola", "olá")]
    assert [(line.start_ms, line.end_ms) for line in ben.lines] == [
        (1000, 2500), (3000, 3500), (9500, 9500)]
    eva = transcripts.transcript(RECORD, "eva", LOGS)
    assert [line.translation for line in eva.lines] == ["¿2 < 3?", "sí", ""]
    assert [line.translation_language_code for line in eva.lines] == ["es", "es", ""]


def test_the_files_parse_back_with_the_text_escaped_where_the_format_needs() -> None:
    ben = transcripts.transcript(RECORD, "ben", LOGS)

    def file(fmt: spb.TranscriptFormat.ValueType) -> spb.ExportTranscriptResponse:
        return transcripts.render(ben, transcripts.format_of(fmt))

    vtt = file(spb.TRANSCRIPT_FORMAT_WEBVTT)
    assert vtt.content_type == "text/vtt; charset=utf-8"
    assert vtt.filename == "dragoman-20261206-0830-s0123456.vtt"
    captions = webvtt.from_string(vtt.content.decode()).captions
    assert [c.voice for c in captions] == ["Ana &lt;host&gt; &amp; co", "Ben", "Eva"]
    assert captions[0].raw_text.splitlines() == [
        "<v Ana &lt;host&gt; &amp; co>2 &lt; 3?", "(en) Is 2 &lt; 3? Yes --&gt;"]

    subtitles = list(srt.parse(file(spb.TRANSCRIPT_FORMAT_SRT).content.decode()))
    assert [s.content for s in subtitles] == [
        "Ana <host> & co: 2 < 3?\n(en) Is 2 < 3? Yes -->", "Ben: sim", "Eva: olá\n(es) hola"]
    assert [s.start for s in subtitles] == [timedelta(seconds=s) for s in (1, 3, 9.5)]

    data = json.loads(file(spb.TRANSCRIPT_FORMAT_JSON).content)
    assert data["language_code"] == "pt-BR" and len(data["utterances"]) == 3
    assert data["utterances"][0]["text"] == "Is 2 < 3? Yes -->"

    text = file(spb.TRANSCRIPT_FORMAT_TEXT).content.decode().splitlines()
    assert text[2:] == ["[00:00:01] Ana <host> & co (en): Is 2 < 3? Yes -->",
                        "           pt-BR: 2 < 3?",
                        "[00:00:03] Ben (pt-BR): sim",
                        "[00:00:09] Eva (es): hola",
                        "           pt: olá"]


@pytest.mark.parametrize("value", [spb.TRANSCRIPT_FORMAT_UNSPECIFIED, 7, -1])
def test_a_format_not_offered_names_those_that_are(value: int) -> None:
    with pytest.raises(InvalidArgument, match="TRANSCRIPT_FORMAT_TEXT, TRANSCRIPT_FORMAT_SRT"):
        transcripts.format_of(value)  # type: ignore[arg-type]
