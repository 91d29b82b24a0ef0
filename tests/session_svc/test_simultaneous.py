"""Simultaneous mode and translated partials in the speaker pipeline, with a scripted
downstream (plumbing only): pieces, the last piece, revisions, the hard cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from dragoman.errors import Unavailable
from dragoman.mt.v1 import mt_pb2
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2 as spb
from session_svc import outbox
from session_svc.events import EventLog
from session_svc.lexicon import NO_GLOSSARY, Glossary
from session_svc.pipeline import SpeakerPipeline
from session_svc.sessions import Member, Session

CHUNKS = 3


@dataclass(frozen=True)
class Turn:
    """One utterance: the stable prefix of each partial, then the final."""

    stables: tuple[str, ...]
    final: str


@dataclass
class Scripted:
    turns: tuple[Turn, ...]
    gap_s: float = 0.15
    """Wall time after each partial (pieces get spoken meanwhile)."""
    fail: str = ""
    """Translating this text fails."""
    mute: str = ""
    """Translating this text gives nothing (as Bergamot does for a lone filler word)."""
    lose: str = ""
    """After the last partial, instead of the final: "fail" (recognition fails) or "hang"
    (nothing more comes until the pipeline is cancelled)."""
    translated: list[str] = field(default_factory=list)
    synthesised: list[str] = field(default_factory=list)

    async def recognize(
        self, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        async for _ in requests:
            break  # the config
        for i, turn in enumerate(self.turns):
            for stable in turn.stables:
                yield stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
                    utterance_index=i, transcript=f"{stable} uh", stable_prefix=stable,
                    stability=0.6, language_code="en"))
                await asyncio.sleep(self.gap_s)
            if self.lose == "fail":
                raise Unavailable("stt is down")
            if self.lose == "hang":
                await asyncio.Event().wait()
            yield stt_pb2.StreamingRecognizeResponse(speech_event=stt_pb2.SpeechEvent(
                type=stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH, utterance_index=i))
            yield stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
                utterance_index=i, transcript=turn.final, stable_prefix=turn.final,
                is_final=True, stability=1.0, language_code="en"))

    async def translate(self, source: str, target: str, text: str,
                        glossary: Glossary = NO_GLOSSARY) -> mt_pb2.Translation:
        self.translated.append(text)
        if text == self.fail:
            raise Unavailable("mt is down")
        return mt_pb2.Translation(text="" if text == self.mute else text.upper(),
                                  engine="scripted")

    async def synthesize(
        self, text: str, language_code: str, voice: str, rate_hz: int, speed: float = 1.0
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        self.synthesised.append(text)
        for i in range(CHUNKS):
            await asyncio.sleep(0.01)
            yield tts_pb2.SynthesizeResponse(audio=text.encode(), sample_rate_hertz=16_000,
                                             chunk_index=i, is_last=i == CHUNKS - 1)


def _start(down: Scripted, mode: str = "simultaneous", partial_interval_s: float = 0.0,
           max_words: int = 6, sentence_wait_s: float = 0.0, behind_s: float = 0.0,
           ) -> tuple[SpeakerPipeline, Member, Member]:
    session = Session("s1", "123456", time.time())
    alice = Member("a", "Alice", "en", "en", "", EventLog("s1", 1024))
    bruno = Member("b", "Bruno", "pt-BR", "pt", "", EventLog("s1", 1024))
    session.members += [alice, bruno]
    pipeline = SpeakerPipeline(
        session, alice, down, pb.AUDIO_ENCODING_LINEAR16, 16_000,  # type: ignore[arg-type]
        mode=mode, partial_interval_s=partial_interval_s, piece_min_words=3,
        piece_max_words=max_words, sentence_wait_s=sentence_wait_s, sentence_max_hold_s=20.0,
        piece_behind_s=behind_s, piece_max_words_behind=6)
    return pipeline, alice, bruno


async def _run(down: Scripted, mode: str = "simultaneous", partial_interval_s: float = 0.0,
               max_words: int = 6, sentence_wait_s: float = 0.0) -> tuple[Member, Member]:
    pipeline, alice, bruno = _start(down, mode, partial_interval_s, max_words, sentence_wait_s)
    await pipeline.finish(timeout_s=10)
    return alice, bruno


async def _until(member: Member, kind: str, count: int = 1) -> None:
    async with asyncio.timeout(10):
        while len(_kind(member, kind)) < count:
            await asyncio.sleep(0.01)


def _kind(member: Member, kind: str) -> list:  # type: ignore[type-arg]
    return [getattr(e, kind) for e in member.log.kept() if e.WhichOneof("kind") == kind]


def _pieces(member: Member) -> list[tuple[int, bytes]]:
    """(piece_index, data) of each piece, from its chunks."""
    out: list[tuple[int, bytes]] = []
    for a in _kind(member, "speech_audio"):
        if not out or out[-1][0] != a.piece_index:
            out.append((a.piece_index, a.data))
    return out


def _check_run(audio: list[pb.SpeechAudio]) -> None:
    """One utterance's chunks: counted on across pieces, is_last once at the very end."""
    assert [a.chunk_index for a in audio] == list(range(len(audio)))
    assert [a.is_last for a in audio].count(True) == 1 and audio[-1].is_last


async def test_pieces_are_spoken_before_the_final_and_the_last_piece_says_the_rest() -> None:
    down = Scripted((Turn(("one two three,", "one two three, four five six."),
                          "one two three, four five six. seven eight"),))
    alice, bruno = await _run(down)
    audio = _kind(bruno, "speech_audio")
    _check_run(audio)
    assert _pieces(bruno) == [(1, b"ONE TWO THREE,"), (2, b"FOUR FIVE SIX."), (3, b"SEVEN EIGHT")]
    assert [a.piece_index for a in audio] == [1] * 3 + [2] * 3 + [3] * 3
    assert [a.source_text for a in audio if a.source_text] == [
        "one two three,", "four five six.", "seven eight"]
    assert [a.source_text for a in audio[1:3]] == ["", ""]  # on each piece's first chunk only
    # the first two pieces were heard before the final transcript came
    kinds = [(e.WhichOneof("kind"), e) for e in bruno.log.kept()]
    final_at = next(i for i, (k, e) in enumerate(kinds) if k == "transcription" and
                    e.transcription.is_final)
    before = [e.speech_audio.piece_index for k, e in kinds[:final_at] if k == "speech_audio"]
    assert set(before) == {1, 2}
    # the caption translates the whole final; each piece was translated alone, once
    final = [t for t in _kind(bruno, "translation") if t.is_final]
    assert [(t.text, t.stability) for t in final] == [
        ("ONE TWO THREE, FOUR FIVE SIX. SEVEN EIGHT", 1.0)]
    assert sorted(down.translated) == sorted([
        "one two three,", "four five six.", "seven eight",
        "one two three, four five six. seven eight"])
    assert sorted(down.synthesised) == ["FOUR FIVE SIX.", "ONE TWO THREE,", "SEVEN EIGHT"]
    ended = _kind(bruno, "processing_ended")
    assert [e.utterance_id for e in ended] == ["1-1"] and ended[0].HasField("latency")
    assert [e.utterance_id for e in _kind(alice, "processing_ended")] == ["1-1"]


async def test_nothing_left_after_the_pieces_makes_one_empty_last_chunk() -> None:
    down = Scripted((Turn(("one two three,",), "one two three,"),))
    _, bruno = await _run(down)
    audio = _kind(bruno, "speech_audio")
    _check_run(audio)
    last = audio[-1]
    assert (last.piece_index, last.data, last.is_last, last.chunk_index) == (2, b"", True, 3)
    assert down.synthesised == ["ONE TWO THREE,"]


async def test_a_revision_after_a_piece_goes_into_the_caption_not_the_audio() -> None:
    down = Scripted((Turn(("one two three,",), "one two tree, four"),))
    _, bruno = await _run(down)
    assert _pieces(bruno) == [(1, b"ONE TWO THREE,"), (2, b"FOUR")]  # "tree" is not re-spoken
    final = [t for t in _kind(bruno, "translation") if t.is_final]
    assert [(t.source_text, t.text) for t in final] == [("one two tree, four", "ONE TWO TREE, FOUR")]


async def test_a_speaker_who_never_pauses_is_cut_at_the_cap() -> None:
    words = "a b c d e f g h i j k l m n".split()
    stables = tuple(" ".join(words[:n]) for n in range(2, 14, 2))
    down = Scripted((Turn(stables, " ".join(words)),))
    _, bruno = await _run(down, max_words=4)
    assert _pieces(bruno) == [
        (1, b"A B C D"), (2, b"E F G H"), (3, b"I J K L"), (4, b"M N")]
    spoken = b" ".join(d for _, d in _pieces(bruno)).decode().lower().split()
    assert spoken == words  # every word once, none repeated


@pytest.mark.parametrize(("unplayed_s", "expected"), [
    (0.0, [(1, b"A B C D"), (2, b"E F G H"), (3, b"I J K L"), (4, b"M N")]),
    (30.0, [(1, b"A B C D E F"), (2, b"G H I J K L"), (3, b"M N")]),
])
async def test_pieces_grow_while_the_listener_is_far_behind(
        unplayed_s: float, expected: list[tuple[int, bytes]]) -> None:
    # 30 s of speech still to hear: a piece would only wait in Bruno's outbox, so it takes up
    # to the longer cap (6 here) instead of 4; keeping up, the cap stays 4.
    words = "a b c d e f g h i j k l m n".split()
    stables = tuple(" ".join(words[:n]) for n in range(2, 14, 2))
    down = Scripted((Turn(stables, " ".join(words)),))
    pipeline, _, bruno = _start(down, max_words=4, behind_s=3.0)
    outbox.of(bruno).backlog.sent(unplayed_s)
    await pipeline.finish(timeout_s=10)
    assert _pieces(bruno) == expected


async def test_a_short_utterance_goes_whole_as_in_utterance_mode() -> None:
    down = Scripted((Turn(("one two",), "one two"),
                     Turn(("three four five,", "three four five, six"), "three four five, six")))
    _, bruno = await _run(down)
    audio = _kind(bruno, "speech_audio")
    first = [a for a in audio if a.utterance_id == "1-1"]
    assert [(a.piece_index, a.chunk_index, a.is_last) for a in first] == [
        (0, 0, False), (0, 1, False), (0, 2, True)]
    assert first[0].source_text == "one two" and first[1].source_text == ""
    _check_run([a for a in audio if a.utterance_id == "1-2"])
    # the short one was translated once, at its final; the long one per piece and whole
    assert sorted(down.translated) == sorted(
        ["one two", "three four five,", "six", "three four five, six"])
    assert [e.utterance_id for e in _kind(bruno, "processing_ended")] == ["1-1", "1-2"]


async def test_utterance_mode_speaks_whole_utterances_after_their_final() -> None:
    down = Scripted((Turn(("one two three,", "one two three, four five six."),
                          "one two three, four five six. seven"),))
    _, bruno = await _run(down, mode="utterance")
    audio = _kind(bruno, "speech_audio")
    assert {a.piece_index for a in audio} == {0}
    assert audio[0].source_text == "one two three, four five six. seven"
    assert down.translated == ["one two three, four five six. seven"]


async def test_translated_partials_caption_the_stable_prefix_until_the_final() -> None:
    down = Scripted((Turn(("one", "one two", "one two three"), "one two three four"),))
    alice, bruno = await _run(down, mode="utterance", partial_interval_s=0.01)
    translations = _kind(bruno, "translation")
    partials = [t for t in translations if not t.is_final]
    assert [(t.source_text, t.text, t.stability) for t in partials] == [
        ("one", "ONE", partials[0].stability), ("one two", "ONE TWO", partials[0].stability),
        ("one two three", "ONE TWO THREE", partials[0].stability)]
    assert abs(partials[0].stability - 0.6) < 1e-6
    assert all(t.speaker == pb.SPEAKER_PARTNER and t.target_language_code == "pt-BR"
               for t in partials)
    assert translations[-1].is_final and translations[-1].stability == 1.0  # nothing after it
    own = _kind(alice, "translation")
    assert [t.is_final for t in own] == [False, False, False, True]
    assert all(t.speaker == pb.SPEAKER_SELF for t in own)


async def test_a_partial_translated_to_nothing_is_not_sent() -> None:
    down = Scripted((Turn(("um", "um one"), "um one two"),), mute="um")
    _, bruno = await _run(down, mode="utterance", partial_interval_s=0.01)
    assert [(t.text, t.is_final) for t in _kind(bruno, "translation")] == [
        ("UM ONE", False), ("UM ONE TWO", True)]


async def test_partials_are_off_at_interval_zero() -> None:
    down = Scripted((Turn(("one", "one two"), "one two three"),))
    _, bruno = await _run(down, mode="utterance")
    assert [t.is_final for t in _kind(bruno, "translation")] == [True]


async def test_simultaneous_mode_does_not_hold_fragments_for_their_sentence() -> None:
    down = Scripted((Turn(("one two",), "one two"), Turn(("three",), "three four.")))
    _, bruno = await _run(down, sentence_wait_s=5.0)
    final = [t for t in _kind(bruno, "translation") if t.is_final]
    assert [(t.utterance_id, t.text, list(t.covers_utterance_ids)) for t in final] == [
        ("1-1", "ONE TWO", []), ("1-2", "THREE FOUR.", [])]


async def test_a_piece_that_fails_is_skipped_and_the_utterance_goes_on() -> None:
    down = Scripted((Turn(("one two three,", "one two three, four five six,"),
                          "one two three, four five six, seven"),), fail="one two three,")
    alice, bruno = await _run(down)
    assert _pieces(bruno) == [(2, b"FOUR FIVE SIX,"), (3, b"SEVEN")]
    _check_run(_kind(bruno, "speech_audio"))
    assert [e.code for e in _kind(alice, "error")] == [pb.ERROR_CODE_SERVICE_UNAVAILABLE]
    assert [e.utterance_id for e in _kind(bruno, "processing_ended")] == ["1-1"]


def _check_lost(bruno: Member, pieces: list[tuple[int, bytes]]) -> None:
    """The pieces made before the final was lost, then one empty last chunk, then the end."""
    audio = _kind(bruno, "speech_audio")
    _check_run(audio)
    assert _pieces(bruno) == [*pieces, (len(pieces) + 1, b"")]
    assert audio[-1].data == b"" and audio[-1].is_last and audio[-1].sample_rate_hertz == 16_000
    kinds = [e.WhichOneof("kind") for e in bruno.log.kept()]
    assert kinds.count("processing_ended") == 1
    assert kinds.index("processing_ended") > max(
        i for i, k in enumerate(kinds) if k == "speech_audio")
    ended = _kind(bruno, "processing_ended")[0]
    assert ended.utterance_id == "1-1" and not ended.HasField("latency")


async def test_pieces_whose_final_is_lost_to_a_failure_end_with_an_empty_last_chunk() -> None:
    down = Scripted((Turn(("one two three,", "one two three, four five six,"), ""),),
                    lose="fail")
    alice, bruno = await _run(down)
    await _until(bruno, "processing_ended")
    _check_lost(bruno, [(1, b"ONE TWO THREE,"), (2, b"FOUR FIVE SIX,")])
    assert [(e.code, e.utterance_id) for e in _kind(alice, "error")] == [
        (pb.ERROR_CODE_SERVICE_UNAVAILABLE, "1-1")]
    assert [e.utterance_id for e in _kind(alice, "processing_ended")] == ["1-1"]


async def test_pieces_whose_final_is_lost_to_a_closed_stream_end_with_an_empty_last_chunk(
        ) -> None:
    down = Scripted((Turn(("one two three,",), ""),), lose="hang")
    pipeline, alice, bruno = _start(down)
    await _until(bruno, "speech_audio", CHUNKS)
    await pipeline.cancel()  # the speaker's stream closed mid-utterance
    await _until(bruno, "processing_ended")
    _check_lost(bruno, [(1, b"ONE TWO THREE,")])
    assert [e.utterance_id for e in _kind(alice, "processing_ended")] == ["1-1"]


async def test_a_listener_who_leaves_mid_piece_and_one_who_joins_mid_utterance() -> None:
    """Bruno leaves during the first piece: nothing more reaches him and the others go on.
    Carla (Bruno's language and voice) and Dora (another language) join after it was spoken:
    they get the utterance at its final, Carla every piece of it from the first, whole."""
    down = Scripted((Turn(("one two three,", "one two three, four five six,"),
                          "one two three, four five six, seven"),), gap_s=0.3)
    pipeline, alice, bruno = _start(down)
    carla = Member("c", "Carla", "pt-BR", "pt", "", EventLog("s1", 1024))
    dora = Member("d", "Dora", "es", "es", "", EventLog("s1", 1024))
    await _until(bruno, "speech_audio")
    bruno.state = spb.PARTICIPANT_STATE_LEFT
    left_at = len(bruno.log.kept())
    async with asyncio.timeout(10):  # the second piece is being spoken: they join after it
        while len(down.synthesised) < 2:
            await asyncio.sleep(0.01)
    pipeline.session.members += [carla, dora]
    await pipeline.finish(timeout_s=10)
    await _until(carla, "processing_ended")
    assert all(e.WhichOneof("kind") != "speech_audio" for e in bruno.log.kept()[left_at:])
    assert _kind(bruno, "processing_ended") == []
    audio = _kind(carla, "speech_audio")
    _check_run(audio)
    assert _pieces(carla) == [(1, b"ONE TWO THREE,"), (2, b"FOUR FIVE SIX,"), (3, b"SEVEN")]
    assert [e.utterance_id for e in _kind(carla, "processing_ended")] == ["1-1"]
    assert _kind(dora, "speech_audio") == []  # no synthesis was made in her language and voice
    assert [(t.is_final, t.text, t.target_language_code) for t in _kind(dora, "translation")] == [
        (True, "ONE TWO THREE, FOUR FIVE SIX, SEVEN", "es")]
    await _until(dora, "processing_ended")
    ended = _kind(alice, "processing_ended")
    assert [e.utterance_id for e in ended] == ["1-1"] and ended[0].HasField("latency")
