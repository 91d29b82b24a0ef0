"""Fragments of a sentence translated as one (session.sentence_wait_ms), over real gRPC.

The fake STT never punctuates, so each of its finals is a fragment; the real
VAD cuts FLEURS speech where we put silence.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dragoman import audio, config
from dragoman.errors import InvalidArgument
from dragoman.v1 import conversation_pb2 as pb
from session_svc.sentences import ends_sentence, join
from tests.session_svc.stack import session_stack
from tests.session_svc.test_conversation import pair

RATE_HZ = 16_000


def _speech(fleurs: Path, pauses_s: list[float], tail_s: float = 2.0) -> bytes:
    """fleurs-en-004 cut into len(pauses_s) + 1 pieces of 1.4 s with silence between."""
    speech = audio.decode_file(fleurs / "fleurs-en-004.ogg")
    piece = int(1.4 * RATE_HZ)
    parts = [np.zeros(4800, np.float32)]
    for i, pause in enumerate([*pauses_s, tail_s]):
        parts += [speech[i * piece:(i + 1) * piece], np.zeros(int(pause * RATE_HZ), np.float32)]
    return audio.float_to_pcm16(np.concatenate(parts))


def _of(events: list[pb.ConversationEvent], kind: str) -> list:  # type: ignore[type-arg]
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


def _sentences(settings: config.Settings, wait_ms: int, max_hold_ms: int = 20_000) -> config.Settings:
    return dataclasses.replace(settings, session=dataclasses.replace(
        settings.session, sentence_wait_ms=wait_ms, sentence_max_hold_ms=max_hold_ms))


async def _say_and_leave(
        settings: config.Settings, pcm: bytes) -> tuple[list[str], list[pb.ConversationEvent]]:
    """Alice says `pcm` and leaves; the ids of her utterances and Bruno's events about them."""
    async with session_stack(settings) as stack:
        a, b, sid = await pair(stack.session)
        a_call, b_call = a.converse(sid), b.converse(sid)
        await b.collect(b_call, "partner_connected")
        await a.say(pcm)
        await a.requests.put(pb.ConverseRequest(leave=pb.LeaveConversation()))
        await a.requests.put(None)
        # After `leave` the server finishes every utterance, then closes her stream.
        own = [r.event async for r in a_call]  # type: ignore[attr-defined]
        ids = [s.utterance_id for s in _of(own, "processing_started")]
        await b.collect(b_call, "processing_ended", count=len(ids))
        for c in (a, b):
            await c.close()
    return ids, b.events


async def test_the_fragments_of_a_sentence_are_translated_once(
        settings: config.Settings, fleurs: Path) -> None:
    ids, events = await _say_and_leave(_sentences(settings, 5_000), _speech(fleurs, [0.7]))
    assert len(ids) >= 2
    finals = [t.text for t in _of(events, "transcription") if t.is_final]
    (translation,) = _of(events, "translation")
    assert list(translation.covers_utterance_ids) == ids and translation.utterance_id == ids[-1]
    assert translation.source_text == " ".join(f for f in finals if f)
    assert translation.text == f"{translation.source_text} [fake:en>pt]"
    assert {a.utterance_id for a in _of(events, "speech_audio")} == {ids[-1]}
    ended = _of(events, "processing_ended")
    assert [e.utterance_id for e in ended] == ids  # each in spoken order, none lost
    # The held fragment's translation stage counts its wait for the rest of the sentence.
    assert ended[0].latency.translation.ToNanoseconds() >= ended[-1].latency.translation.ToNanoseconds()
    assert all(e.HasField("latency") for e in ended)


async def test_each_final_is_translated_alone_without_a_wait(
        settings: config.Settings, fleurs: Path) -> None:
    ids, events = await _say_and_leave(_sentences(settings, 0), _speech(fleurs, [0.7]))
    finals = {t.utterance_id: t.text for t in _of(events, "transcription") if t.is_final}
    translations = _of(events, "translation")
    assert [t.utterance_id for t in translations] == [u for u in ids if finals.get(u)]
    assert len(translations) >= 2
    assert not any(t.covers_utterance_ids for t in translations)
    assert [t.source_text for t in translations] == [finals[t.utterance_id] for t in translations]


async def test_a_fragment_the_speaker_does_not_follow_goes_alone_after_the_wait(
        settings: config.Settings, fleurs: Path) -> None:
    """Silence longer than the wait after a fragment: the next speech is another sentence."""
    wait_ms = 600
    async with session_stack(_sentences(settings, wait_ms)) as stack:
        a, b, sid = await pair(stack.session)
        _a_call, b_call = a.converse(sid), b.converse(sid)
        await a.say(_speech(fleurs, [], tail_s=1.0))
        await b.collect(b_call, "processing_ended")
        await a.say(_speech(fleurs, [], tail_s=1.0), first_sequence=10_000)
        await b.collect(b_call, "processing_ended")
        translations = _of(b.events, "translation")
        assert len(translations) == 2 and not any(t.covers_utterance_ids for t in translations)
        first = _of(b.events, "processing_ended")[0]
        assert first.latency.translation.ToMilliseconds() >= wait_ms  # it waited, then went
        for c in (a, b):
            await c.close()


def test_sentence_ends_by_script() -> None:
    for text in ("It rained.", "Did it?", "Yes!", '"Go home."', "Ir a casa.»", "雨が降った。",
                 "你好吗？", "هل أنت بخير؟", "यह अच्छा है।"):
        assert ends_sentence(text), text
    for text in ("", "   ", "and then", "and then...", "so…", "the island, and"):
        assert not ends_sentence(text), text


def test_fragments_join_with_the_language_spacing() -> None:
    assert join(["It rained ", "", " all day."], "en") == "It rained all day."
    assert join(["雨が", "降った。"], "ja-JP") == "雨が降った。"
    assert join(["Biber said that... Although... ...", "... not here...", "nor there..."], "en") == (
        "Biber said that... Although not here nor there...")  # only the cuts' ellipses go


def test_negative_waits_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="sentence_max_hold_ms must be 0 or more"):
        config.load(env={"DRAGOMAN_SESSION_SENTENCE_MAX_HOLD_MS": "-1"})
