"""Recordings (docs/recording.md) over real gRPC, real PostgreSQL and real speech (fake
engines: plumbing only): nothing is kept without everyone's consent, nothing after a
withdrawal, proven by queries; and every bad call gets its precise status."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from dragoman import config, db, ogg
from dragoman.db import crypto
from dragoman.session.v1 import session_pb2, session_pb2_grpc
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import recording_pb2 as rpb
from dragoman.v1 import recording_pb2_grpc
from dragoman.v1 import sessions_pb2 as spb
from session_svc import recordings
from tests.rawclient import speak
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import Stack, scratch_settings, session_stack

_n = 0


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    with scratch_settings(settings, "recording") as own:
        own = dataclasses.replace(own, recording=dataclasses.replace(
            own.recording, max_requests_per_session=3))
        async with session_stack(own) as s:
            yield s


class Talker(Caller):
    """A caller with a recording stub, whose events a task reads as they come, and whose
    audio on one stream keeps numbering on."""

    def __init__(self, address: str, user_id: str) -> None:
        super().__init__(address, user_id)
        self.recordings = recording_pb2_grpc.RecordingServiceStub(self.channel)
        self.sequence = 0
        self.inbox: asyncio.Queue[cpb.ConversationEvent] = asyncio.Queue()
        self.pump: asyncio.Task[None] | None = None

    def open(self, session_id: str) -> None:
        call = self.converse(session_id)

        async def pump() -> None:
            async for response in call:  # type: ignore[attr-defined]
                self.inbox.put_nowait(response.event)
        self.pump = asyncio.create_task(pump())

    async def say(self, pcm: bytes, first_sequence: int = 0) -> None:  # noqa: ARG002
        async for request in speak(pcm, 16000, first_sequence=self.sequence + 1, realtime=False):
            self.sequence = request.audio.sequence
            await self.requests.put(request)

    async def until(self, kind: str, count: int = 1) -> list[cpb.ConversationEvent]:
        """The events up to the `count`th more of `kind`."""
        got: list[cpb.ConversationEvent] = []
        while count:
            event = await asyncio.wait_for(self.inbox.get(), 30)
            got.append(event)
            count -= event.WhichOneof("kind") == kind
        return got

    async def settle(self, quiet_s: float = 2.0) -> list[cpb.ConversationEvent]:
        """The events until none came for `quiet_s`: what was said has been seen through."""
        got: list[cpb.ConversationEvent] = []
        while True:
            try:
                got.append(await asyncio.wait_for(self.inbox.get(), quiet_s))
            except TimeoutError:
                return got

    async def recording_event(self) -> cpb.RecordingChanged:
        return [e for e in await self.until("recording_changed")
                if e.WhichOneof("kind") == "recording_changed"][-1].recording_changed

    async def close(self) -> None:
        await super().close()
        if self.pump is not None:
            self.pump.cancel()


async def trio(stack: Stack, *languages: str, privacy: int = spb.PRIVACY_MODE_STANDARD
               ) -> tuple[list[Talker], str]:
    """A session of a talker per language, the first the host; each with a live stream."""
    global _n
    _n += 1
    talkers = [Talker(stack.session, f"rec{_n}-{i}") for i in range(len(languages))]
    created = (await talkers[0].sessions.CreateSession(spb.CreateSessionRequest(
        language_code=languages[0], privacy_mode=privacy),  # type: ignore[arg-type]
        metadata=talkers[0].metadata)).session
    for t, language in zip(talkers[1:], languages[1:], strict=True):
        await t.join(created.code, language)
    for t in talkers:
        t.open(created.session_id)
    return talkers, created.session_id


async def status(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


async def spoken(a: Talker, b: Talker, fleurs: Path, name: str) -> set[str]:
    """Alice says a phrase; both see it through. Its utterances' ids (one phrase may be
    recognised as more than one utterance)."""
    await a.say(utterance(fleurs, name))
    heard = await b.until("processing_ended")
    heard += await b.settle()
    await a.settle()
    return {e.processing_ended.utterance_id for e in heard
            if e.WhichOneof("kind") == "processing_ended"}


async def test_only_what_is_said_between_everyones_consent_and_a_withdrawal_is_kept(
        stack: Stack, fleurs: Path) -> None:
    (a, b), sid = await trio(stack, "en", "pt")
    before = await spoken(a, b, fleurs, "fleurs-en-000")

    asked = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid, translated_speech=True), metadata=a.metadata)).recording
    assert asked.state == rpb.RECORDING_STATE_AWAITING_CONSENT
    assert asked.recording_id.startswith(sid)
    assert [(c.participant_id, c.answer) for c in asked.consents] == [
        (a.user_id, rpb.RECORDING_CONSENT_ANSWER_GRANTED),
        (b.user_id, rpb.RECORDING_CONSENT_ANSWER_PENDING)]
    question = await b.recording_event()  # the event Bruno answers
    assert question.change == rpb.RECORDING_CHANGE_REQUESTED
    assert question.participant_id == a.user_id
    assert question.recording.recording_id == asked.recording_id
    assert (await a.recording_event()).change == rpb.RECORDING_CHANGE_REQUESTED
    awaiting = await spoken(a, b, fleurs, "fleurs-en-001")  # not everyone agreed yet

    answered = (await b.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=asked.recording_id, consent=True), metadata=b.metadata)).recording
    assert answered.state == rpb.RECORDING_STATE_RECORDING and answered.HasField("start_time")
    for t in (a, b):
        assert (await t.recording_event()).change == rpb.RECORDING_CHANGE_CONSENTED
        assert (await t.recording_event()).change == rpb.RECORDING_CHANGE_STARTED
    kept = await spoken(a, b, fleurs, "fleurs-en-002")

    withdrawn = (await b.recordings.WithdrawRecordingConsent(
        rpb.WithdrawRecordingConsentRequest(recording_id=asked.recording_id),
        metadata=b.metadata)).recording
    answered = datetime.now(UTC)  # what it kept was written before it answered
    assert withdrawn.state == rpb.RECORDING_STATE_STOPPED
    assert withdrawn.utterance_count == len(kept) and withdrawn.size_bytes > 0
    assert withdrawn.stopped_by_participant_id == b.user_id
    assert withdrawn.stop_reason == "consent withdrawn"
    event = await a.recording_event()
    assert event.change == rpb.RECORDING_CHANGE_WITHDRAWN and event.participant_id == b.user_id
    after = await spoken(a, b, fleurs, "fleurs-en-003")

    # the database: every utterance was translated and logged, only `kept` recorded
    logged = {u for (u,) in stack.query(
        "SELECT DISTINCT utterance_id FROM translation_logs WHERE session_id = %s", (sid,))}
    assert before | awaiting | kept | after <= logged
    assert not kept & (before | awaiting | after)
    rows = stack.query(
        "SELECT i.utterance_id, i.kind, i.language_code, i.spoken_until, i.created_at, "
        "r.started_at, r.stopped_at, i.content, i.key_id, i.item_id FROM recording_items i "
        "JOIN recordings r USING (recording_id) WHERE r.recording_id = %s", (asked.recording_id,))
    assert {(r[0], r[1], r[2]) for r in rows} == {
        (u, kind, language) for u in kept
        for kind, language in (("transcript", "en"), ("translation", "pt"), ("speech", "pt"))}
    for _, _, _, spoken_until, created_at, started_at, stopped_at, *_ in rows:
        assert started_at < spoken_until < stopped_at  # type: ignore[operator]
        assert created_at < answered  # type: ignore[operator]
    assert stack.query(
        "SELECT count(*) FROM recording_items i JOIN recordings r USING (recording_id) "
        "WHERE r.session_id = %s AND (i.spoken_until >= r.stopped_at OR i.created_at > %s "
        "OR i.spoken_at < r.started_at)", (sid, answered)) == [(0,)]
    assert stack.query("SELECT state, stopped_by FROM recordings WHERE recording_id = %s",
                       (asked.recording_id,)) == [("stopped", b.user_id)]

    # encrypted at rest with the text keys, bound to the row
    keyring = crypto.Keyring.parse(stack.settings.database.encryption_keys)
    download = [r async for r in a.recordings.DownloadRecording(
        rpb.DownloadRecordingRequest(recording_id=asked.recording_id), metadata=a.metadata)]
    assert download[0].WhichOneof("content") == "recording"
    assert download[0].recording.utterance_count == len(kept)
    assert download[0].recording.size_bytes > 0
    utts = [r.utterance for r in download[1:]]
    assert {u.utterance_id for u in utts} == kept
    utt = utts[0]
    assert utt.speaker_participant_id == a.user_id
    assert utt.text and [t.target_language_code for t in utt.translations] == ["pt"]
    [speech] = utt.speech
    assert speech.ogg_opus[:4] == b"OggS" and speech.duration.ToMilliseconds() > 0
    assert ogg.OpusDuration().feed(speech.ogg_opus) > 0
    assert not utt.original_voice_ogg_opus  # never asked for
    for uid, kind, _, _, _, _, _, content, key_id, item_id in rows:
        blob = bytes(content)  # type: ignore[arg-type]
        assert utt.text.encode() not in blob and b"OggS" not in blob
        plain = keyring.unseal(str(key_id), blob, f"recording_items:{item_id}".encode())
        if kind == "transcript" and uid == utt.utterance_id:
            assert plain.decode() == utt.text
        elif kind == "speech" and uid == utt.utterance_id:
            assert plain == speech.ogg_opus
    for t in (a, b):
        await t.close()


async def test_a_refusal_declines_and_a_joiner_stops_the_recording(
        stack: Stack, fleurs: Path) -> None:
    (a, b, c), sid = await trio(stack, "en", "pt", "es")
    asked = (await b.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=b.metadata)).recording
    assert len(asked.consents) == 3
    await a.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=asked.recording_id, consent=True), metadata=a.metadata)
    refused = (await c.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=asked.recording_id, consent=False), metadata=c.metadata)).recording
    assert refused.state == rpb.RECORDING_STATE_DECLINED
    assert refused.stopped_by_participant_id == c.user_id
    changes = [e.recording_changed.change for e in await a.until("recording_changed", 3)
               if e.WhichOneof("kind") == "recording_changed"]
    assert changes == [rpb.RECORDING_CHANGE_REQUESTED, rpb.RECORDING_CHANGE_CONSENTED,
                       rpb.RECORDING_CHANGE_DECLINED]
    await spoken(a, b, fleurs, "fleurs-en-004")
    assert stack.query("SELECT count(*) FROM recording_items WHERE recording_id = %s",
                       (asked.recording_id,)) == [(0,)]

    # a second request, all consent; then Bruno leaves and comes back: he was not asked again
    again = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=a.metadata)).recording
    for t in (b, c):
        await t.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
            recording_id=again.recording_id, consent=True), metadata=t.metadata)
    await b.sessions.LeaveSession(spb.LeaveSessionRequest(session_id=sid), metadata=b.metadata)
    code = (await a.sessions.GetSession(spb.GetSessionRequest(session_id=sid),
                                        metadata=a.metadata)).session.code
    await b.join(code, "pt")
    got = (await a.recordings.GetRecording(rpb.GetRecordingRequest(
        recording_id=again.recording_id), metadata=a.metadata)).recording
    assert got.state == rpb.RECORDING_STATE_STOPPED
    assert got.stop_reason == "a participant joined who was not asked"
    assert stack.query("SELECT state FROM recordings WHERE recording_id = %s",
                       (again.recording_id,)) == [("stopped",)]
    for t in (a, b, c):
        await t.close()


async def test_bad_calls_get_precise_statuses(stack: Stack) -> None:
    (a, b), sid = await trio(stack, "en", "pt")
    stranger = Talker(stack.session, f"rec-stranger{_n}")
    asked = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=a.metadata)).recording
    rid = asked.recording_id

    # a stranger: the recording does not exist for them (NOT_FOUND, not PERMISSION_DENIED)
    for call in (
        stranger.recordings.AnswerRecordingConsent(
            rpb.AnswerRecordingConsentRequest(recording_id=rid, consent=True),
            metadata=stranger.metadata),
        stranger.recordings.WithdrawRecordingConsent(
            rpb.WithdrawRecordingConsentRequest(recording_id=rid), metadata=stranger.metadata),
        stranger.recordings.GetRecording(
            rpb.GetRecordingRequest(recording_id=rid), metadata=stranger.metadata),
        stranger.recordings.RequestRecording(
            rpb.RequestRecordingRequest(session_id=sid), metadata=stranger.metadata),
    ):
        code, message = await status(call)
        assert code == grpc.StatusCode.NOT_FOUND and "not found" in message, message
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stranger.recordings.DownloadRecording(
                rpb.DownloadRecordingRequest(recording_id=rid), metadata=stranger.metadata):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stranger.recordings.ListRecordings(rpb.ListRecordingsRequest(),
                                                      metadata=stranger.metadata)
    assert not listed.recordings

    assert await status(a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid), metadata=a.metadata)) == (
        grpc.StatusCode.FAILED_PRECONDITION, f"recording {rid} is already awaiting consent")
    assert (await status(a.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=rid, consent=True), metadata=a.metadata)))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)  # the asker consented by asking
    for bad in ("", "x" * 200, f"{sid}-nope", "no\0such"):
        code, _ = await status(b.recordings.GetRecording(
            rpb.GetRecordingRequest(recording_id=bad), metadata=b.metadata))
        assert code == (grpc.StatusCode.INVALID_ARGUMENT if not bad else grpc.StatusCode.NOT_FOUND)
    assert (await status(b.recordings.ListRecordings(rpb.ListRecordingsRequest(
        page_size=101), metadata=b.metadata)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert (await status(b.recordings.ListRecordings(rpb.ListRecordingsRequest(
        page_token="bogus"), metadata=b.metadata)))[0] == grpc.StatusCode.INVALID_ARGUMENT

    # a flood of requests: the session takes recording.max_requests_per_session (3 here)
    await b.recordings.WithdrawRecordingConsent(
        rpb.WithdrawRecordingConsentRequest(recording_id=rid), metadata=b.metadata)
    assert (await status(b.recordings.WithdrawRecordingConsent(
        rpb.WithdrawRecordingConsentRequest(recording_id=rid), metadata=b.metadata)))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)
    for _ in range(2):
        r = (await b.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=b.metadata)).recording
        await a.recordings.WithdrawRecordingConsent(
            rpb.WithdrawRecordingConsentRequest(recording_id=r.recording_id), metadata=a.metadata)
    code, message = await status(b.recordings.RequestRecording(
        rpb.RequestRecordingRequest(session_id=sid), metadata=b.metadata))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "3 times" in message

    # private sessions are never recorded
    (p, q), private = await trio(stack, "en", "pt", privacy=spb.PRIVACY_MODE_PRIVATE)
    code, message = await status(p.recordings.RequestRecording(
        rpb.RequestRecordingRequest(session_id=private), metadata=p.metadata))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "PRIVACY_MODE_STANDARD" in message

    # an ended session's recording can no longer be answered; an expired one is gone
    await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    assert await status(a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid), metadata=a.metadata)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "the session has ended")
    stack.query("UPDATE recordings SET expires_at = now() - interval '1 second' "
                "WHERE recording_id = %s RETURNING 1", (rid,))
    assert (await status(a.recordings.GetRecording(rpb.GetRecordingRequest(
        recording_id=rid), metadata=a.metadata)))[0] == grpc.StatusCode.NOT_FOUND
    ids = {r.recording_id for r in (await a.recordings.ListRecordings(
        rpb.ListRecordingsRequest(session_id=sid), metadata=a.metadata)).recordings}
    assert rid not in ids and len(ids) == 2
    for t in (a, b, stranger, p, q):
        await t.close()


async def test_the_sweeper_deletes_expired_recordings(settings: config.Settings) -> None:
    with scratch_settings(settings, "recsweep") as own:
        own = dataclasses.replace(own, recording=dataclasses.replace(
            own.recording, sweep_interval_s=0.2))
        async with session_stack(own) as s:
            (a, b), sid = await trio(s, "en", "pt")
            rid = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(
                session_id=sid), metadata=a.metadata)).recording.recording_id
            assert s.query("SELECT count(*) FROM recordings WHERE recording_id = %s",
                           (rid,)) == [(1,)]
            s.query("UPDATE recordings SET expires_at = now() WHERE recording_id = %s "
                    "RETURNING 1", (rid,))
            for _ in range(50):
                if s.query("SELECT count(*) FROM recordings WHERE recording_id = %s",
                           (rid,)) == [(0,)]:
                    break
                await asyncio.sleep(0.1)
            assert s.query("SELECT count(*) FROM recording_consents WHERE recording_id = %s",
                           (rid,)) == [(0,)]
            for t in (a, b):
                await t.close()


async def test_export_includes_and_deletion_deletes_the_recordings(
        stack: Stack, fleurs: Path) -> None:
    (a, b), sid = await trio(stack, "en", "pt")
    rid = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid, translated_speech=True), metadata=a.metadata)).recording.recording_id
    await b.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=rid, consent=True), metadata=b.metadata)
    kept = await spoken(a, b, fleurs, "fleurs-en-002")
    await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    data = session_pb2_grpc.SessionDataServiceStub(b.channel)
    export = await data.ExportUserData(session_pb2.ExportUserDataRequest(), metadata=b.metadata)
    assert [r.recording_id for r in export.recordings] == [rid]
    assert export.recordings[0].state == rpb.RECORDING_STATE_STOPPED
    assert export.recordings[0].stop_reason == "session ended"
    assert {u.utterance_id for u in export.recorded_utterances} == kept
    utt = export.recorded_utterances[0]
    assert utt.text and utt.translations and not utt.speech

    deleted = await data.DeleteUserData(session_pb2.DeleteUserDataRequest(), metadata=b.metadata)
    assert deleted.deleted_recording_count == 1
    for table in ("recordings", "recording_consents", "recording_items"):
        assert stack.query(f"SELECT count(*) FROM {table} WHERE recording_id = %s",  # noqa: S608
                           (rid,)) == [(0,)]
    for t in (a, b):
        await t.close()


async def test_key_rotation_re_encrypts_what_recordings_kept(stack: Stack, fleurs: Path) -> None:
    (a, b), sid = await trio(stack, "en", "pt")
    rid = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid), metadata=a.metadata)).recording.recording_id
    await b.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=rid, consent=True), metadata=b.metadata)
    await spoken(a, b, fleurs, "fleurs-en-004")
    await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    old = stack.settings.database.encryption_keys
    new_entry = crypto.new_key_entry("rot2")
    count = stack.query("SELECT count(*) FROM recording_items WHERE key_id <> 'rot2'")[0][0]
    assert count
    async with await db.connect(stack.settings.database) as conn:
        assert await recordings.rotate_keys(conn, crypto.Keyring.parse(f"{new_entry},{old}"),
                                            batch_size=1) == count
        assert stack.query("SELECT DISTINCT key_id FROM recording_items") == [("rot2",)]
        only_new = crypto.Keyring.parse(new_entry)
        for item_id, content in stack.query("SELECT item_id, content FROM recording_items"):
            only_new.unseal("rot2", bytes(content), f"recording_items:{item_id}".encode())  # type: ignore[arg-type]
        # back under the service's key, for the tests after this one
        assert await recordings.rotate_keys(conn, crypto.Keyring.parse(f"{old},{new_entry}")) == count
    for t in (a, b):
        await t.close()


@pytest.mark.parametrize("bruno_opts_in", [True, False])
async def test_the_original_voice_is_kept_only_when_everyone_opted_in(
        stack: Stack, fleurs: Path, bruno_opts_in: bool) -> None:
    (a, b), sid = await trio(stack, "en", "pt")
    asked = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=sid, original_voice=True), metadata=a.metadata)).recording
    assert asked.original_voice_requested and not asked.original_voice
    started = (await b.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=asked.recording_id, consent=True, original_voice=bruno_opts_in),
        metadata=b.metadata)).recording
    assert started.state == rpb.RECORDING_STATE_RECORDING
    assert started.original_voice == bruno_opts_in
    kept = await spoken(a, b, fleurs, "fleurs-en-004")
    download = [r async for r in b.recordings.DownloadRecording(
        rpb.DownloadRecordingRequest(recording_id=asked.recording_id), metadata=b.metadata)]
    utterances = [r.utterance for r in download[1:]]
    assert {u.utterance_id for u in utterances} == kept
    voices = stack.query("SELECT count(*) FROM recording_items WHERE recording_id = %s "
                         "AND kind = 'voice'", (asked.recording_id,))
    if bruno_opts_in:
        assert voices == [(len(kept),)]
        for u in utterances:
            assert u.original_voice_ogg_opus[:4] == b"OggS"
            # the clip is 4.3 s, the recogniser cuts its speech out of the silence around it
            assert 1.0 < ogg.OpusDuration().feed(u.original_voice_ogg_opus) < 4.4
    else:
        assert voices == [(0,)] and not any(u.original_voice_ogg_opus for u in utterances)
    for t in (a, b):
        await t.close()


async def test_leaving_before_answering_declines_and_ending_stops(stack: Stack) -> None:
    (a, b, c), sid = await trio(stack, "en", "pt", "es")
    asked = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=a.metadata)).recording
    await c.sessions.LeaveSession(spb.LeaveSessionRequest(session_id=sid), metadata=c.metadata)
    got = (await b.recordings.GetRecording(rpb.GetRecordingRequest(
        recording_id=asked.recording_id), metadata=b.metadata)).recording
    assert got.state == rpb.RECORDING_STATE_DECLINED and got.stopped_by_participant_id == c.user_id
    assert got.stop_reason == "a participant left before answering"

    again = (await a.recordings.RequestRecording(rpb.RequestRecordingRequest(session_id=sid),
                                                 metadata=a.metadata)).recording
    await b.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=again.recording_id, consent=True), metadata=b.metadata)
    await a.sessions.EndSession(spb.EndSessionRequest(session_id=sid), metadata=a.metadata)
    changes = [e.recording_changed for e in await b.settle()
               if e.WhichOneof("kind") == "recording_changed"]
    assert changes[-1].change == rpb.RECORDING_CHANGE_STOPPED
    assert changes[-1].reason == "session ended"
    assert stack.query("SELECT state, stop_reason FROM recordings WHERE recording_id = %s",
                       (again.recording_id,)) == [("stopped", "session ended")]
    for t in (a, b, c):
        await t.close()
