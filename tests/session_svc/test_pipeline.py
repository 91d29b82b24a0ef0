"""The speaker pipeline's ordering and lookahead, with a scripted downstream (plumbing only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dragoman import rpc
from dragoman.errors import Unavailable
from dragoman.mt.v1 import mt_pb2
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2
from dragoman.v1 import conversation_pb2 as pb
from session_svc.catchup import CatchUp
from session_svc.events import EventLog
from session_svc.lexicon import NO_GLOSSARY, Glossary
from session_svc.pipeline import SpeakerPipeline
from session_svc.sessions import Member, Session

CHUNK_DELAY_S = 0.15
CHUNKS = 3


@dataclass
class Scripted:
    """Two finals back to back; each synthesis makes CHUNKS chunks, CHUNK_DELAY_S apart."""

    texts: tuple[str, ...] = ("one two three", "four five six")
    fail: str = ""
    fail_synthesis: str = ""
    """Synthesis of this text fails after its first chunk."""
    gap_s: float = 0.0
    """Wall time between one final and the next utterance's events."""
    synthesis: list[tuple[str, float, float]] = field(default_factory=list)
    """(text, started, finished) of each synthesis."""
    chunk_s: float = 0.0
    """Seconds of speech each chunk says it holds (audio_duration)."""
    speeds: list[tuple[str, float]] = field(default_factory=list)
    """(text, speed) asked of each synthesis."""

    async def recognize(
        self, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        async for _ in requests:
            break  # the config
        for i, text in enumerate(self.texts):
            if i:
                await asyncio.sleep(self.gap_s)
            yield stt_pb2.StreamingRecognizeResponse(speech_event=stt_pb2.SpeechEvent(
                type=stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH, utterance_index=i))
            yield stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
                utterance_index=i, transcript=text, is_final=True, language_code="en"))

    async def translate(self, source: str, target: str, text: str,
                        glossary: Glossary = NO_GLOSSARY) -> mt_pb2.Translation:
        if text == self.fail:
            raise Unavailable("mt is down")
        return mt_pb2.Translation(text=text.upper(), engine="scripted")

    async def synthesize(
        self, text: str, language_code: str, voice: str, rate_hz: int, speed: float = 1.0
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        started = time.monotonic()
        self.speeds.append((text, speed))
        for i in range(CHUNKS):
            await asyncio.sleep(CHUNK_DELAY_S)
            yield tts_pb2.SynthesizeResponse(audio=text.encode(), sample_rate_hertz=16_000,
                                             chunk_index=i, is_last=i == CHUNKS - 1,
                                             audio_duration=rpc.duration(self.chunk_s / speed))
            if text == self.fail_synthesis:
                raise Unavailable("tts is down")
        self.synthesis.append((text, started, time.monotonic()))


def _session() -> tuple[Session, Member, Member]:
    session = Session("s1", "123456", time.time())
    alice = Member("a", "Alice", "en", "en", "", EventLog("s1", 256))
    bruno = Member("b", "Bruno", "pt-BR", "pt", "", EventLog("s1", 256))
    session.members += [alice, bruno]
    return session, alice, bruno


async def _run(down: Scripted, sentence_wait_s: float = 0.0,
               sentence_max_hold_s: float = 20.0, catchup: CatchUp | None = None) -> tuple[Session, Member]:
    session, alice, bruno = _session()
    pipeline = SpeakerPipeline(session, alice, down, pb.AUDIO_ENCODING_LINEAR16, 16_000,  # type: ignore[arg-type]
                               sentence_wait_s=sentence_wait_s, sentence_max_hold_s=sentence_max_hold_s,
                               catchup=catchup)
    await pipeline.finish(timeout_s=10)
    return session, bruno


def _events(member: Member) -> list[pb.ConversationEvent]:
    return member.log.kept()


async def test_the_next_utterance_is_synthesised_while_the_first_is_delivered_in_order() -> None:
    down = Scripted()
    _, bruno = await _run(down)
    audio = [e.speech_audio for e in _events(bruno) if e.WhichOneof("kind") == "speech_audio"]
    assert [(a.data, a.chunk_index) for a in audio] == [
        (b"ONE TWO THREE", 0), (b"ONE TWO THREE", 1), (b"ONE TWO THREE", 2),
        (b"FOUR FIVE SIX", 0), (b"FOUR FIVE SIX", 1), (b"FOUR FIVE SIX", 2),
    ]  # never interleaved
    (first, start1, end1), (second, start2, _) = sorted(down.synthesis, key=lambda s: s[1])
    assert (first, second) == ("ONE TWO THREE", "FOUR FIVE SIX")
    assert start2 < end1 - CHUNK_DELAY_S  # the second began well before the first was done
    ended = [e.processing_ended for e in _events(bruno) if e.WhichOneof("kind") == "processing_ended"]
    assert [e.utterance_id for e in ended] == ["1-1", "1-2"]
    # The second's first audio went out right after the first's last chunk, not a synthesis later.
    assert ended[1].latency.synthesis_first_chunk.ToMilliseconds() < 2 * CHUNKS * CHUNK_DELAY_S * 1000


async def test_a_failed_translation_skips_that_utterance_only() -> None:
    down = Scripted(fail="one two three")
    session, bruno = await _run(down)
    kinds = [e.WhichOneof("kind") for e in _events(bruno)]
    audio = [e.speech_audio.data for e in _events(bruno) if e.WhichOneof("kind") == "speech_audio"]
    assert audio == [b"FOUR FIVE SIX"] * CHUNKS
    assert kinds.count("processing_ended") == 2 and session.errors == 1
    alice_errors = [e.error for e in _events(session.members[0]) if e.WhichOneof("kind") == "error"]
    # the scripted failure is Unavailable ("mt is down"): the service, not the text, failed
    assert [e.code for e in alice_errors] == [pb.ERROR_CODE_SERVICE_UNAVAILABLE]


async def test_a_final_that_ends_a_sentence_releases_the_fragments_held_before_it() -> None:
    down = Scripted(texts=("one two", "three four.", "five six?"))
    _, bruno = await _run(down, sentence_wait_s=5.0)  # never reached: the punctuation decides
    translations = [e.translation for e in _events(bruno) if e.WhichOneof("kind") == "translation"]
    assert [(t.utterance_id, t.source_text, t.text, list(t.covers_utterance_ids))
            for t in translations] == [
        ("1-2", "one two three four.", "ONE TWO THREE FOUR.", ["1-1", "1-2"]),
        ("1-3", "five six?", "FIVE SIX?", []),
    ]
    audio = [(e.speech_audio.utterance_id, e.speech_audio.data) for e in _events(bruno)
             if e.WhichOneof("kind") == "speech_audio"]
    assert audio == [("1-2", b"ONE TWO THREE FOUR.")] * CHUNKS + [("1-3", b"FIVE SIX?")] * CHUNKS
    ended = [e.processing_ended for e in _events(bruno) if e.WhichOneof("kind") == "processing_ended"]
    assert [e.utterance_id for e in ended] == ["1-1", "1-2", "1-3"]
    assert all(e.HasField("latency") for e in ended)


async def test_held_fragments_keep_their_latency_when_the_speech_fails_midway() -> None:
    down = Scripted(texts=("one two", "three four."), fail_synthesis="ONE TWO THREE FOUR.")
    session, bruno = await _run(down, sentence_wait_s=5.0)
    ended = [e.processing_ended for e in _events(bruno) if e.WhichOneof("kind") == "processing_ended"]
    assert [e.utterance_id for e in ended] == ["1-1", "1-2"] and session.errors == 1
    assert all(e.HasField("latency") for e in ended)  # the first chunk did go out


async def test_a_fragment_held_past_the_cap_goes_alone() -> None:
    down = Scripted(texts=("one two", "three four."), gap_s=0.6)
    _, bruno = await _run(down, sentence_wait_s=5.0, sentence_max_hold_s=0.2)
    translations = [e.translation for e in _events(bruno) if e.WhichOneof("kind") == "translation"]
    assert [(t.utterance_id, t.text, list(t.covers_utterance_ids)) for t in translations] == [
        ("1-1", "ONE TWO", []), ("1-2", "THREE FOUR.", [])]


async def test_a_listener_behind_hears_the_next_utterance_faster() -> None:
    # 3 chunks of 2 s each: 6 s of speech sent in 0.45 s; the next final comes 0.6 s later,
    # with ~5.4 s unplayed, past twice the 2 s threshold: the fastest speed.
    down = Scripted(texts=("one two three", "four five six", "seven eight nine"), gap_s=0.6,
                    chunk_s=2.0)
    await _run(down, catchup=CatchUp(backlog_s=2.0, max_speed=1.3))
    speeds = dict(down.speeds)
    assert speeds["ONE TWO THREE"] == 1.0  # nothing sent yet
    assert speeds["FOUR FIVE SIX"] == 1.3
    assert speeds["SEVEN EIGHT NINE"] == 1.3


async def test_no_catch_up_while_the_listener_keeps_up() -> None:
    down = Scripted(texts=("one two three", "four five six"), gap_s=0.6, chunk_s=0.1)
    await _run(down, catchup=CatchUp(backlog_s=2.0, max_speed=1.3))
    assert [speed for _, speed in down.speeds] == [1.0, 1.0]
