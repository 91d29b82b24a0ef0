"""End to end: a recording on the real mesh (real gateway, engines and speech, PostgreSQL).

Alice (English) asks to record, Bruno (Portuguese) consents on the event he gets, Alice
says a FLEURS clip, Bruno withdraws, Alice says another. The recording holds the first
clip's utterances, with their transcripts, translations and Bruno's translated speech as
Ogg Opus, and nothing of the second: the database says so. Playback comes through the
gateway, to participants only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest

from dragoman import audio, config, ogg
from dragoman.v1 import auth_pb2
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import recording_pb2 as rpb
from dragoman_tools import cli
from tests.e2e.test_multiparty import Person, _until
from tests.mesh import PASSWORD, MeshAddresses, new_client, new_user

log = logging.getLogger(__name__)


def _query(settings: config.Settings, statement: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    database = settings.database
    with psycopg.connect(database.url, options=f"-c search_path={database.schema}") as conn:
        return conn.execute(statement.encode(), params).fetchall()


def _translated(person: Person) -> set[str]:
    """Utterances of the others translated for `person` so far."""
    return {t.utterance_id for t in person.of("translation", pb.SPEAKER_PARTNER) if t.is_final}


def _changes(person: Person) -> list[int]:
    return [e.change for e in person.of("recording_changed")]


async def test_a_consented_recording_plays_back_and_keeps_nothing_after_the_withdrawal(
        mesh: MeshAddresses, fleurs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = Person(await new_client(mesh.gateway, "en"), "en")
    bruno_client, bruno_name = await new_user(mesh.gateway, "pt")
    bruno = Person(bruno_client, "pt")
    session = await alice.client.create_session("en")
    await bruno.client.join_session(session.code, "pt")
    for p in (alice, bruno):
        p.connect(session.session_id)

    asked = (await alice.client.recordings.RequestRecording(rpb.RequestRecordingRequest(
        session_id=session.session_id, translated_speech=True),
        metadata=alice.client.metadata)).recording
    await _until(lambda: rpb.RECORDING_CHANGE_REQUESTED in _changes(bruno))
    await bruno.client.recordings.AnswerRecordingConsent(rpb.AnswerRecordingConsentRequest(
        recording_id=asked.recording_id, consent=True), metadata=bruno.client.metadata)
    await _until(lambda: rpb.RECORDING_CHANGE_STARTED in _changes(alice))

    await alice.say(fleurs / "fleurs-en-000.ogg")
    await _until(lambda: set(alice.spoken()) <= set(bruno.heard_ended(alice)))
    said = set(alice.spoken())
    recorded = _translated(bruno)  # an utterance with nothing to say is not translated, nor kept
    alice.connect(session.session_id)

    await bruno.client.recordings.WithdrawRecordingConsent(rpb.WithdrawRecordingConsentRequest(
        recording_id=asked.recording_id), metadata=bruno.client.metadata)
    withdrawn = datetime.now(UTC)  # what it kept was written before it answered
    await _until(lambda: rpb.RECORDING_CHANGE_WITHDRAWN in _changes(alice))
    await alice.say(fleurs / "fleurs-en-003.ogg")
    await _until(lambda: set(alice.spoken()) <= set(bruno.heard_ended(alice)))
    later = _translated(bruno) - recorded
    assert recorded and later and recorded <= said

    # what the database kept: the first clip's utterances only, none after the withdrawal
    rows = _query(mesh.settings, "SELECT utterance_id, kind, language_code FROM recording_items "
                  "WHERE recording_id = %s", (asked.recording_id,))
    assert {u for u, _, _ in rows} == recorded
    assert {(k, lang) for _, k, lang in rows} == {
        ("transcript", "en"), ("translation", "pt"), ("speech", "pt")}
    assert _query(mesh.settings, "SELECT count(*) FROM recording_items i JOIN recordings r "
                  "USING (recording_id) WHERE r.recording_id = %s AND (i.spoken_at < r.started_at "
                  "OR i.spoken_until >= r.stopped_at OR i.created_at > %s)",
                  (asked.recording_id, withdrawn)) == [(0,)]
    def logged() -> set[object]:  # written a moment after it is heard (session_svc.store.Journal)
        return {u for (u,) in _query(mesh.settings, "SELECT utterance_id FROM translation_logs "
                                     "WHERE session_id = %s", (session.session_id,))}
    await _until(lambda: later <= logged())  # said and translated, not recorded

    # playback through the gateway: Bruno hears what he heard live
    download = [r async for r in bruno.client.recordings.DownloadRecording(
        rpb.DownloadRecordingRequest(recording_id=asked.recording_id, language_codes=["pt"]),
        metadata=bruno.client.metadata)]
    recording = download[0].recording
    assert recording.state == rpb.RECORDING_STATE_STOPPED
    utterances = [r.utterance for r in download[1:]]
    assert {u.utterance_id for u in utterances} == recorded
    heard_s = dict.fromkeys(recorded, 0.0)
    for chunk in bruno.of("speech_audio"):
        if chunk.utterance_id in heard_s:
            heard_s[chunk.utterance_id] += len(chunk.data) / 2 / chunk.sample_rate_hertz
    translations = {t.utterance_id: t.text for t in bruno.of("translation", pb.SPEAKER_PARTNER)
                    if t.is_final}
    speech_s = 0.0
    for u in utterances:
        assert u.text and u.language_code == "en"
        assert [(t.target_language_code, t.text) for t in u.translations] == [
            ("pt", translations[u.utterance_id])]
        [speech] = u.speech
        played = ogg.OpusDuration().feed(speech.ogg_opus)
        assert abs(played - heard_s[u.utterance_id]) < 0.1, (played, heard_s[u.utterance_id])
        speech_s += played
    clip_s = len(audio.decode_file(fleurs / "fleurs-en-000.ogg", audio.STT_RATE_HZ)) / audio.STT_RATE_HZ
    by_kind = dict(_query(mesh.settings, "SELECT kind, sum(octet_length(content)) FROM "
                          "recording_items WHERE recording_id = %s GROUP BY kind",
                          (asked.recording_id,)))
    log.warning("recording storage: %d bytes (by kind %s) for a %.2f s clip translated into "
                "%.2f s of speech: %.0f KiB per minute of the clip, %.0f KiB per minute heard",
                recording.size_bytes, by_kind, clip_s, speech_s,
                recording.size_bytes / 1024 / (clip_s / 60), recording.size_bytes / 1024 / (speech_s / 60))

    # the command line saves it: the texts as JSON, the speech as .ogg files
    monkeypatch.setenv("DRAGOMAN_PASSWORD", PASSWORD)
    assert await asyncio.to_thread(cli.main, [
        "recordings", "download", asked.recording_id, "-o", str(tmp_path), "--username",
        bruno_name, "--gateway", mesh.gateway]) == 0
    saved = json.loads((tmp_path / "recording.json").read_text())
    assert saved["recording"]["recordingId"] == asked.recording_id
    assert [u["utteranceId"] for u in saved["utterances"]] == [u.utterance_id for u in utterances]
    assert sorted(p.name for p in tmp_path.glob("*.ogg")) == sorted(
        f"{u.utterance_id}-pt-{u.speech[0].voice}.ogg" if u.speech[0].voice
        else f"{u.utterance_id}-pt.ogg" for u in utterances)

    # someone else: no such recording
    stranger = await new_client(mesh.gateway, "en")
    try:
        await stranger.recordings.GetRecording(rpb.GetRecordingRequest(
            recording_id=asked.recording_id), metadata=stranger.metadata)
        raise AssertionError("a stranger got the recording")
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND

    # Bruno's export has it; deleting his account deletes it (for Alice too)
    export = await bruno.client.auth.ExportMyData(auth_pb2.ExportMyDataRequest(),
                                                  metadata=bruno.client.metadata)
    assert [r.recording_id for r in export.recordings] == [asked.recording_id]
    assert {u.utterance_id for u in export.recorded_utterances} == recorded
    await alice.client.end_session(session.session_id)
    deleted = await bruno.client.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(
        password=PASSWORD), metadata=bruno.client.metadata)
    assert deleted.deleted_recording_count == 1, bruno_name
    assert _query(mesh.settings, "SELECT count(*) FROM recording_items WHERE recording_id = %s",
                  (asked.recording_id,)) == [(0,)]
    listed = await alice.client.recordings.ListRecordings(rpb.ListRecordingsRequest(),
                                                          metadata=alice.client.metadata)
    assert not listed.recordings
