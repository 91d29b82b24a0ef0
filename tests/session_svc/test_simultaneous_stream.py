"""Simultaneous mode over real gRPC (fake engines): pieces reach a listener's stream before
the final, and a listener who drops mid-piece and resumes misses nothing and gets nothing
twice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman import config
from dragoman.v1 import conversation_pb2 as pb
from tests.rawclient import speak
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import Stack, session_stack


@pytest.fixture(scope="module")
async def simultaneous(settings: config.Settings) -> AsyncIterator[Stack]:
    session = dataclasses.replace(
        settings.session, mode="simultaneous", piece_min_words=2, piece_max_words=3)
    async with session_stack(dataclasses.replace(settings, session=session)) as stack:
        yield stack


@pytest.fixture(scope="module")
async def behind(settings: config.Settings) -> AsyncIterator[Stack]:
    """Simultaneous mode where 0.3 s of unplayed speech is a backlog to catch up on."""
    session = dataclasses.replace(
        settings.session, mode="simultaneous", piece_min_words=2, piece_max_words=3,
        catchup_backlog_ms=300, catchup_max_speed=1.5)
    async with session_stack(dataclasses.replace(settings, session=session)) as stack:
        yield stack


async def _pair(address: str, name: str) -> tuple[Caller, Caller, str]:
    a, b = Caller(address, f"alice-{name}"), Caller(address, f"bruno-{name}")
    session = await a.create("en")
    await b.join(session.code, "pt")
    return a, b, session.session_id


async def _talking(address: str, name: str) -> tuple[Caller, Caller, str, object, object]:
    """Alice and Bruno paired, each with a conversation stream, Bruno seeing Alice's."""
    a, b, sid = await _pair(address, name)
    a_call = a.converse(sid)
    b_call = b.converse(sid)
    await b.collect(b_call, "partner_connected")
    return a, b, sid, a_call, b_call


async def _say(caller: Caller, fleurs: Path) -> None:
    """Faster than real time, slow enough for stt_svc to make partials as it goes."""
    async for request in speak(utterance(fleurs), 16000, speed=3.0):
        await caller.requests.put(request)


def _audio(events: list[pb.ConversationEvent]) -> list[pb.SpeechAudio]:
    return [e.speech_audio for e in events if e.WhichOneof("kind") == "speech_audio"]


def _check_utterances(events: list[pb.ConversationEvent]) -> None:
    """Every utterance's chunks once each, in order, the last one last."""
    audio = _audio(events)
    for utterance_id in {a.utterance_id for a in audio}:
        mine = [a for a in audio if a.utterance_id == utterance_id]
        assert [a.chunk_index for a in mine] == list(range(len(mine))), utterance_id
        assert [a.is_last for a in mine].count(True) == 1 and mine[-1].is_last
        pieces = [a.piece_index for a in mine]
        assert pieces == sorted(pieces)


async def test_pieces_reach_the_listener_before_the_final(simultaneous: Stack, fleurs: Path) -> None:
    a, b, sid = await _pair(simultaneous.session, "early")
    a.converse(sid)
    b_call = b.converse(sid)
    await _say(a, fleurs)
    events = await b.collect(b_call, "processing_ended")
    audio = _audio(events)
    assert audio and audio[0].piece_index == 1 and audio[0].source_text
    utterance_id = audio[0].utterance_id
    kinds = [(e.WhichOneof("kind"), e) for e in events]
    final_at = next(i for i, (k, e) in enumerate(kinds) if k == "transcription"
                    and e.transcription.is_final and e.transcription.utterance_id == utterance_id)
    assert any(k == "speech_audio" for k, _ in kinds[:final_at])
    _check_utterances(events)
    # each word the final said is spoken once, in the pieces' source_text
    final = kinds[final_at][1].transcription.text.split()
    spoken = " ".join(x.source_text for x in audio if x.utterance_id == utterance_id).split()
    assert spoken == final[:len(spoken)] and len(spoken) == len(final)
    for c in (a, b):
        await c.close()


async def test_a_listener_who_drops_mid_piece_resumes_without_gap_or_duplicate(
        simultaneous: Stack, fleurs: Path) -> None:
    a, b, sid, a_call, b_call = await _talking(simultaneous.session, "drop")
    await _say(a, fleurs)
    before = await b.collect(b_call, "speech_audio")  # the first chunk of the first piece
    b_call.cancel()  # type: ignore[attr-defined]  # Bruno's network drops mid-piece
    last_seen = before[-1].sequence
    assert before[-1].speech_audio.piece_index == 1 and not before[-1].speech_audio.is_last
    await a.collect(a_call, "processing_ended")
    b.events = []
    after = await b.collect(b.converse(sid, resume_after=last_seen), "processing_ended")
    seqs = [e.sequence for e in before + after if e.WhichOneof("kind") != "heartbeat"]
    assert seqs == list(range(1, len(seqs) + 1))
    _check_utterances(before + after)
    assert _audio(after)[0].chunk_index == 1  # it went on where it stopped
    for c in (a, b):
        await c.close()


async def test_a_speaker_who_drops_mid_utterance_leaves_the_listener_a_whole_end(
        simultaneous: Stack, fleurs: Path) -> None:
    a, b, _, a_call, b_call = await _talking(simultaneous.session, "gone")
    saying = asyncio.create_task(_say(a, fleurs))
    heard = await b.collect(b_call, "speech_audio")  # a piece, before the utterance's final
    a_call.cancel()  # type: ignore[attr-defined]  # Alice's network drops mid-utterance
    saying.cancel()
    utterance_id = heard[-1].speech_audio.utterance_id
    events = await b.collect(b_call, "partner_disconnected")  # all since it joined
    _check_utterances(events)  # it ends with an is_last chunk
    kinds = [(e.WhichOneof("kind"), e) for e in events]
    last_audio = max(i for i, (k, e) in enumerate(kinds) if k == "speech_audio"
                     and e.speech_audio.utterance_id == utterance_id)
    assert [i for i, (k, e) in enumerate(kinds) if k == "processing_ended"
            and e.processing_ended.utterance_id == utterance_id] == [
        next(i for i, (k, _) in enumerate(kinds) if k == "processing_ended" and i > last_audio)]
    await b.close()


async def test_a_listener_behind_hears_the_later_pieces_faster(behind: Stack, fleurs: Path) -> None:
    # The fake voice speaks 50 ms a character at once and the speaker talks at 3x: the
    # listener gets speech far faster than they can play it, so the backlog grows.
    a, b, sid = await _pair(behind.session, "behind")
    a.converse(sid)
    b_call = b.converse(sid)
    behind.tts.requests.clear()
    await _say(a, fleurs)
    events = await b.collect(b_call, "processing_ended")
    _check_utterances(events)
    speeds = [r.speed for r in behind.tts.requests]
    assert len(speeds) >= 3, speeds
    assert speeds[0] == 1.0  # nothing sent yet
    assert max(speeds) == 1.5, speeds
    # what the listener got is shorter for it: the fake voice's samples scale with 1 / speed
    audio = _audio(events)
    seconds = sum(len(x.data) for x in audio) / 2 / audio[0].sample_rate_hertz
    own_rate_s = sum(max(200, 50 * len(r.text)) for r in behind.tts.requests) / 1000
    assert seconds < own_rate_s * 0.95, (seconds, own_rate_s)
    for c in (a, b):
        await c.close()
