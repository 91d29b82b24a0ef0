"""A session's transcript, exported in each format from a real conversation (ExportTranscript)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import srt
import webvtt

from dragoman.v1 import sessions_pb2 as spb
from dragoman_tools import cli
from tests.mesh import PASSWORD, MeshAddresses, OneWay, new_client, one_way

LIVE: dict[str, str] = {}
"""The listener's JSON transcript while the session was still live."""


@pytest.fixture(scope="module")
async def talk(mesh: MeshAddresses, fleurs: Path) -> OneWay:
    """English said to a Portuguese listener at twice real time, the session ended."""
    talk = await one_way(mesh, fleurs / "fleurs-en-001.ogg", "en", "pt-BR", speed=2.0)
    LIVE["json"] = await _export(talk, spb.TRANSCRIPT_FORMAT_JSON)
    await talk.speaker.end_session(talk.session_id)
    return talk


async def _export(talk: OneWay, fmt: spb.TranscriptFormat.ValueType, listener: bool = True) -> str:
    """The transcript as the listener (else the speaker) has it; checks the file's name."""
    client = talk.listener if listener else talk.speaker
    reply = await client.sessions.ExportTranscript(
        spb.ExportTranscriptRequest(session_id=talk.session_id, format=fmt), metadata=client.metadata)
    assert reply.filename.startswith("dragoman-") and talk.session_id[:8] in reply.filename
    return reply.content.decode()


def _translations(talk: OneWay) -> list[str]:
    return [t.text for t in talk.heard("translation") if t.is_final]


def _duration_ms(session: spb.Session) -> float:
    return session.metrics.duration_seconds * 1000


def _check_timings(spans: list[tuple[float, float]], duration_ms: float) -> None:
    """Cues start in order, each ends after it starts, all within the session."""
    assert spans
    starts = [s for s, _ in spans]
    assert starts == sorted(starts), spans
    assert all(0 <= s <= e <= duration_ms for s, e in spans), (spans, duration_ms)
    assert spans[-1][1] > 0, spans


async def test_json_gives_each_utterance_with_the_listeners_translation(talk: OneWay) -> None:
    session = (await talk.listener.sessions.GetSession(
        spb.GetSessionRequest(session_id=talk.session_id), metadata=talk.listener.metadata)).session
    speaker = session.participants[0]
    data = json.loads(await _export(talk, spb.TRANSCRIPT_FORMAT_JSON))
    assert data["session_id"] == talk.session_id and data["language_code"] == "pt-BR"
    assert [p["display_name"] for p in data["participants"]] == [
        p.display_name for p in session.participants]
    lines = data["utterances"]
    assert lines and all(u["speaker_display_name"] == speaker.display_name
                         and u["speaker_participant_id"] == speaker.user_id
                         and u["language_code"] == "en" and u["text"]
                         and u["translation_language_code"] == "pt-BR" for u in lines)
    assert " ".join(u["translation"] for u in lines).split() == " ".join(_translations(talk)).split()
    assert json.loads(LIVE["json"])["utterances"] == lines  # all of it, before the end too
    _check_timings([(u["start_ms"], u["end_ms"]) for u in lines], _duration_ms(session))

    theirs = json.loads(await _export(talk, spb.TRANSCRIPT_FORMAT_JSON, listener=False))
    assert theirs["language_code"] == "en"
    assert [u["text"] for u in theirs["utterances"]] == [u["text"] for u in lines]
    assert all(u["translation"] == "" for u in theirs["utterances"])  # they heard none


async def test_srt_and_webvtt_parse_with_translations_and_timings(talk: OneWay) -> None:
    session = (await talk.speaker.sessions.GetSession(
        spb.GetSessionRequest(session_id=talk.session_id), metadata=talk.speaker.metadata)).session
    name = session.participants[0].display_name
    translations = _translations(talk)

    subtitles = list(srt.parse(await _export(talk, spb.TRANSCRIPT_FORMAT_SRT)))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    assert all(s.content.startswith(f"{name}: ") for s in subtitles)
    said = " ".join(s.content.splitlines()[0].removeprefix(f"{name}: ") for s in subtitles)
    assert said.split() == " ".join(translations).split()
    assert all(s.content.splitlines()[1].startswith("(en) ") for s in subtitles)
    _check_timings([(s.start / timedelta(milliseconds=1), s.end / timedelta(milliseconds=1))
                    for s in subtitles], _duration_ms(session))

    captions = webvtt.from_string(await _export(talk, spb.TRANSCRIPT_FORMAT_WEBVTT)).captions
    assert len(captions) == len(subtitles)
    assert all(c.voice == name for c in captions)
    assert [c.text.splitlines()[0] for c in captions] == [
        s.content.splitlines()[0].removeprefix(f"{name}: ") for s in subtitles]
    _check_timings([(c.start_in_seconds * 1000 + c.start_time.milliseconds,
                     c.end_in_seconds * 1000 + c.end_time.milliseconds) for c in captions],
                   _duration_ms(session))

    text = await _export(talk, spb.TRANSCRIPT_FORMAT_TEXT)
    assert talk.session_id in text and all(t in text for t in translations)


async def test_someone_elses_session_is_not_found(mesh: MeshAddresses, talk: OneWay) -> None:
    stranger = await new_client(mesh.gateway, "en")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stranger.sessions.ExportTranscript(spb.ExportTranscriptRequest(
            session_id=talk.session_id, format=spb.TRANSCRIPT_FORMAT_SRT), metadata=stranger.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stranger.sessions.ExportTranscript(spb.ExportTranscriptRequest(
            session_id="no-such-session", format=spb.TRANSCRIPT_FORMAT_SRT), metadata=stranger.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("fmt", [spb.TRANSCRIPT_FORMAT_UNSPECIFIED, 99])
async def test_a_format_not_offered_is_invalid(talk: OneWay, fmt: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await talk.listener.sessions.ExportTranscript(spb.ExportTranscriptRequest(
            session_id=talk.session_id, format=fmt), metadata=talk.listener.metadata)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TRANSCRIPT_FORMAT_SRT" in (caught.value.details() or "")


async def test_the_cli_signs_in_and_writes_the_file(
    mesh: MeshAddresses, talk: OneWay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "talk.vtt"
    monkeypatch.setenv("DRAGOMAN_PASSWORD", PASSWORD)
    code = await asyncio.to_thread(cli.main, [
        "sessions", "export", talk.session_id, "--format", "vtt", "-o", str(out),
        "--username", talk.listener_username, "--gateway", mesh.gateway])
    assert code == 0
    assert out.read_text() == await _export(talk, spb.TRANSCRIPT_FORMAT_WEBVTT)

    monkeypatch.setenv("DRAGOMAN_PASSWORD", "not the password")
    code = await asyncio.to_thread(cli.main, [
        "sessions", "export", talk.session_id, "--format", "srt", "-o", str(tmp_path / "no.srt"),
        "--username", talk.listener_username, "--gateway", mesh.gateway])
    assert code == 1 and not (tmp_path / "no.srt").exists()
