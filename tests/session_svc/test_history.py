"""What session_svc keeps: translation logs, metrics, history pages; and what it never keeps."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from dragoman import config
from dragoman.v1 import sessions_pb2
from session_svc.records import STAGES
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import Stack, captured_logs, scratch_settings, session_stack


@pytest.fixture(scope="module")
def history_settings(settings: config.Settings) -> Iterator[config.Settings]:
    with scratch_settings(settings, "history") as scratch:
        yield scratch


@pytest.fixture(scope="module")
async def stack(history_settings: config.Settings) -> AsyncIterator[Stack]:
    async with session_stack(history_settings) as running:
        yield running


_n = 0


def callers(stack: Stack, *names: str) -> list[Caller]:
    global _n
    _n += 1
    return [Caller(stack.session, f"{name}-h{_n}") for name in names]


async def converse_once(stack: Stack, fleurs: Path) -> tuple[Caller, Caller, str, list]:  # type: ignore[type-arg]
    """Ana says one utterance to Ben; returns Ben's events once it was delivered."""
    ana, ben = callers(stack, "ana", "ben")
    session = await ana.create("en")
    await ben.join(session.code, "pt")
    ana_call, ben_call = ana.converse(session.session_id), ben.converse(session.session_id)
    await ana.say(utterance(fleurs))
    events = await ben.collect(ben_call, "processing_ended")
    await ana.collect(ana_call, "processing_ended")
    return ana, ben, session.session_id, events


async def test_each_translated_utterance_and_the_end_are_recorded(
    stack: Stack, fleurs: Path
) -> None:
    ana, ben, sid, events = await converse_once(stack, fleurs)
    latency = next(e.processing_ended.latency for e in events
                   if e.WhichOneof("kind") == "processing_ended")
    translation = next(e.translation for e in events
                       if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    ended = await ben.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=sid), metadata=ben.metadata)

    stage_columns = ", ".join(f"{s}_ms" for s in STAGES)
    [row] = stack.query(
        f"SELECT utterance_id, speaker_user_id, source_language_code, target_language_code, "
        f"{stage_columns} FROM translation_logs WHERE session_id = %s", (sid,))
    assert row[:4] == (translation.utterance_id, ana.user_id, "en", "pt")
    assert list(row[4:]) == [getattr(latency, s).ToMilliseconds() for s in STAGES]
    assert row[-1] > 0

    [metrics] = stack.query(
        "SELECT utterance_count, error_count, mean_latency_ms, min_latency_ms, max_latency_ms, "
        "duration_ms FROM session_metrics WHERE session_id = %s", (sid,))
    m = ended.metrics
    assert metrics[:5] == (1, 0, m.mean_latency_ms, m.min_latency_ms, m.max_latency_ms)
    assert metrics[5] == round(m.duration_seconds * 1000)
    # the fake recogniser is sure (0.855 over the default 0.6): nothing doubtful
    final = next(e.transcription for e in events
                 if e.WhichOneof("kind") == "transcription" and e.transcription.is_final)
    assert final.confidence > 0.8 and not final.low_confidence
    assert m.low_confidence_share == 0.0
    assert stack.query("SELECT transcribed_count, low_confidence_count FROM session_metrics "
                       "WHERE session_id = %s", (sid,)) == [(1, 0)]
    assert stack.query("SELECT status, message_count FROM sessions WHERE session_id = %s", (sid,)) \
        == [("ended", 1)]
    got = await ana.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=sid), metadata=ana.metadata)
    assert got.session.metrics.utterance_count == 1
    for c in (ana, ben):
        await c.close()


async def test_low_confidence_finals_are_passed_on_counted_and_kept(
    history_settings: config.Settings, fleurs: Path
) -> None:
    """The fake recogniser's finals score 0.9 x (1 - 0.05); over a 0.9 threshold
    (stt.low_confidence_below) each is flagged, and the session's share says so."""
    def unsure(role: str, settings: config.Settings) -> config.Settings:
        if role != "stt":
            return settings
        return dataclasses.replace(
            settings, stt=dataclasses.replace(settings.stt, low_confidence_below=0.9))

    async with session_stack(history_settings, own=unsure) as unsure_stack:
        ana, ben, sid, events = await converse_once(unsure_stack, fleurs)
        finals = [e.transcription for e in events
                  if e.WhichOneof("kind") == "transcription" and e.transcription.is_final]
        assert finals and all(f.low_confidence for f in finals)
        assert finals[0].confidence == pytest.approx(0.855)
        ended = await ana.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=sid), metadata=ana.metadata)
        assert ended.metrics.low_confidence_share == 1.0
        assert unsure_stack.query(
            "SELECT transcribed_count, low_confidence_count FROM session_metrics "
            "WHERE session_id = %s", (sid,)) == [(len(finals), len(finals))]
        got = await ben.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=sid), metadata=ben.metadata)
        assert got.session.metrics.low_confidence_share == 1.0
        for c in (ana, ben):
            await c.close()


async def test_each_participants_numbers_are_returned_from_the_store(
    stack: Stack, fleurs: Path
) -> None:
    ana, ben, sid, events = await converse_once(stack, fleurs)
    heard_ms = next(e.processing_ended.latency.total for e in events
                    if e.WhichOneof("kind") == "processing_ended").ToMilliseconds()
    ended = await ana.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=sid), metadata=ana.metadata)
    numbers = [(p.participant_id, p.utterances_spoken, p.utterances_heard, p.error_count)
               for p in ended.metrics.participants]
    assert numbers == [(ana.user_id, 1, 0, 0), (ben.user_id, 0, 1, 0)]
    assert ended.metrics.participants[1].mean_latency_ms == heard_ms
    assert ended.metrics.participants[1].p95_latency_ms == heard_ms
    assert stack.query(
        "SELECT user_id, utterances_spoken, utterances_heard FROM session_participant_metrics "
        "WHERE session_id = %s ORDER BY user_id", (sid,)) == [(ana.user_id, 1, 0), (ben.user_id, 0, 1)]
    # an ended session is read back from the store: the same numbers
    got = await ben.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=sid), metadata=ben.metadata)
    assert got.session.metrics.participants == ended.metrics.participants
    assert [p.host for p in got.session.participants] == [True, False]
    listed = await page(ben, 1)
    assert listed.sessions[0].metrics.participants == ended.metrics.participants
    for c in (ana, ben):
        await c.close()


async def page(caller: Caller, size: int, token: str = "") -> sessions_pb2.ListSessionsResponse:
    reply: sessions_pb2.ListSessionsResponse = await caller.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(page_size=size, page_token=token), metadata=caller.metadata)
    return reply


async def test_history_pages_newest_first_and_stay_stable_while_sessions_start(
    stack: Stack,
) -> None:
    pat, partner, stranger = callers(stack, "pat", "partner", "stranger")
    made = [await pat.create("en") for _ in range(7)]
    await partner.join(made[3].code, "pt")
    expected = [s.session_id for s in reversed(made)]

    first = await page(pat, 3)
    seen = [s.session_id for s in first.sessions]
    assert seen == expected[:3] and first.next_page_token
    token, newer = first.next_page_token, 0
    while token:
        await asyncio.gather(pat.create("es"), pat.create("pt"))  # newer sessions meanwhile
        newer += 2
        reply = await page(pat, 3, token)
        seen += [s.session_id for s in reply.sessions]
        token = reply.next_page_token
    assert seen == expected  # nothing twice, nothing skipped, newest first

    everything = await page(pat, 100)
    assert newer == 4 and not everything.next_page_token
    assert [s.session_id for s in everything.sessions][newer:] == expected
    assert len((await page(pat, 0)).sessions) == 7 + newer  # 0 means the default page of 20

    joined = await page(partner, 10)
    assert [s.session_id for s in joined.sessions] == [made[3].session_id]
    assert joined.sessions[0].status == sessions_pb2.SESSION_STATUS_ACTIVE
    assert [p.user_id for p in joined.sessions[0].participants] == [
        pat.user_id, partner.user_id]
    assert list((await page(stranger, 10)).sessions) == []

    for size, token, message in ((101, "", "page_size must be 0 to 100"),
                                 (-1, "", "page_size must be 0 to 100"),
                                 (5, "not-a-token", "page_token is not a token")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await page(pat, size, token)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in info.value.details()
    for c in (pat, partner, stranger):
        await c.close()


async def test_audio_is_never_stored_nor_logged_and_text_only_encrypted(
    stack: Stack, fleurs: Path
) -> None:
    with captured_logs() as captured:
        ana, ben, sid, events = await converse_once(stack, fleurs)
        await ana.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=sid), metadata=ana.metadata)
    text = next(e.translation for e in events
                if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    assert text.source_text and text.text

    pcm = utterance(fleurs)
    middle = len(pcm) // 2
    probes = [pcm[i:i + 24] for i in (middle - 4800, middle, middle + 4800)]
    heard = next(e.speech_audio.data for e in events if e.WhichOneof("kind") == "speech_audio")
    probes.append(heard[len(heard) // 2:len(heard) // 2 + 24])
    assert all(len(p) == 24 and any(p) for p in probes)

    bytea = stack.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY 1, 2")
    # participant_logs.sealed: participant-keyed copies, under their readers' keys (docs/privacy.md);
    # recording_items.content: only with everyone's consent, encrypted (docs/recording.md);
    # session_events.event: a live session's resume tail, sealed, gone when it ends (docs/handover.md)
    assert bytea == [("participant_logs", "sealed"), ("recording_items", "content"),
                     ("session_events", "event"),
                     ("translation_logs", "source_text"), ("translation_logs", "translated_text")]
    tables = [t for (t,) in stack.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    dump = "\n".join(str(row) for table in tables
                     for row in stack.query(f"SELECT t::text FROM {table} t"))
    log_text = captured.getvalue()
    assert sid in dump and sid in log_text  # the checks below look at the right places
    for probe in probes:
        for form in (probe.hex(), base64.b64encode(probe).decode(), probe.decode("latin-1")):
            assert form not in dump
            assert form not in log_text
    for said in (text.source_text, text.text):
        assert said not in dump and said.encode().hex() not in dump
        assert said not in log_text
    for c in (ana, ben):
        await c.close()


async def test_sessions_left_live_by_an_earlier_run_can_be_seen_and_ended(stack: Stack) -> None:
    [pat] = callers(stack, "pat")
    orphan = uuid.uuid4().hex
    user_id = pat.user_id
    stack.query("INSERT INTO sessions (session_id, code, status, created_at) "
                "VALUES (%s, '000001', 'active', now() - interval '1 hour') RETURNING 1", (orphan,))
    stack.query("INSERT INTO session_participants (session_id, user_id, position, display_name, "
                "language_code, joined_at, session_created_at) SELECT session_id, %s, 1, 'Pat', "
                "'en', created_at, created_at FROM sessions WHERE session_id = %s RETURNING 1",
                (user_id, orphan))
    request = sessions_pb2.GetSessionRequest(session_id=orphan)
    got = await pat.sessions.GetSession(request, metadata=pat.metadata)
    assert got.session.status == sessions_pb2.SESSION_STATUS_ACTIVE
    for _ in range(2):  # and ending it again answers the same
        ended = await pat.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=orphan), metadata=pat.metadata)
        assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
        assert ended.metrics.utterance_count == 0 and ended.metrics.duration_seconds >= 3600
    assert stack.query("SELECT status, end_reason FROM sessions WHERE session_id = %s", (orphan,)) \
        == [("ended", "ended by participant")]
    stranger = Caller(stack.session, "nobody-h")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=orphan), metadata=stranger.metadata)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    for c in (pat, stranger):
        await c.close()
