"""End to end: three people, three languages, one session, on the real mesh.

Alice (English, the host), Bruno (Portuguese) and Carla (Spanish) take turns
saying a FLEURS clip through the real gateway, session, STT, MT and TTS. Each
turn ends with the speaker's `leave`, after which the server finishes their
utterances and closes their stream; the speaker then resumes where they
were. Carla's stream drops while Bruno speaks and she resumes later with
`resume_after_sequence`: what she missed is replayed, nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np

from dragoman import audio
from dragoman.v1 import conversation_pb2 as pb
from tests.mesh import MeshAddresses, new_client
from tests.rawclient import RawClient, join_request, speak

CLIPS = {"en": "fleurs-en-004.ogg", "pt": "fleurs-pt-002.ogg", "es": "fleurs-es-003.ogg"}
WAIT_S = 180.0  # a guard against a hang, not a measure: three clips on a loaded 2-core machine
SPEECH_EVENTS = ("processing_started", "transcription", "translation", "speech_audio", "processing_ended")


@dataclasses.dataclass
class Person:
    """One participant: their client, every event of all their streams, and the live one."""

    client: RawClient
    language: str
    events: list[pb.ConversationEvent] = dataclasses.field(default_factory=list)
    queue: asyncio.Queue[pb.ConverseRequest | None] = dataclasses.field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    call: grpc.aio.StreamStreamCall | None = None

    @property
    def id(self) -> str:
        return self.client.user_id

    @property
    def last_sequence(self) -> int:
        return max((e.sequence for e in self.events), default=0)

    def connect(self, session_id: str) -> None:
        """Opens a stream that resumes after the last event seen (0 on the first)."""
        self.queue = asyncio.Queue()
        self.queue.put_nowait(join_request(session_id, audio.STT_RATE_HZ, output_rate_hz=24_000,
                                           resume_after=self.last_sequence))
        self.call = self.client.converse(_requests(self.queue))
        self.reader = asyncio.create_task(self._read(self.call))

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        async for response in call:
            self.events.append(response.event)

    async def drop(self) -> None:
        """The connection is lost: the stream is cancelled, nothing is said."""
        assert self.call is not None and self.reader is not None
        self.call.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)

    async def say(self, clip: Path) -> None:
        """Says `clip` (then 1.5 s of silence) and leaves; returns once the server has
        finished their utterances and closed the stream."""
        samples = audio.decode_file(clip, audio.STT_RATE_HZ)
        pcm = audio.float_to_pcm16(np.concatenate([samples, np.zeros(24_000, np.float32)]))
        async for request in speak(pcm, audio.STT_RATE_HZ, realtime=False):
            await self.queue.put(request)
        await self.leave()

    async def leave(self) -> None:
        await self.queue.put(pb.ConverseRequest(leave=pb.LeaveConversation()))
        await self.queue.put(None)
        assert self.reader is not None
        await asyncio.wait_for(self.reader, WAIT_S)

    def of(self, kind: str, who: pb.Speaker.ValueType | None = None) -> list:  # type: ignore[type-arg]
        """This person's events of one kind, those about `who` only if given."""
        found = [getattr(e, kind) for e in self.events if e.WhichOneof("kind") == kind]
        return [x for x in found if who is None or x.speaker == who]

    def spoken(self) -> list[str]:
        """Ids of this person's own utterances, in the order they started."""
        return [s.utterance_id for s in self.of("processing_started", pb.SPEAKER_SELF)]

    def heard_ended(self, speaker: Person) -> list[str]:
        """Ids of `speaker`'s utterances that ended for this person, in the order they ended."""
        return [e.utterance_id for e in self.of("processing_ended", pb.SPEAKER_PARTNER)
                if e.speaker_participant_id == speaker.id]


async def _requests(queue: asyncio.Queue[pb.ConverseRequest | None]) -> AsyncIterator[pb.ConverseRequest]:
    while (item := await queue.get()) is not None:
        yield item


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), WAIT_S)


def _base(language: str) -> str:
    return language.split("-")[0]


async def test_three_people_each_hear_the_two_others_in_their_own_language(
        mesh: MeshAddresses, fleurs: Path) -> None:
    alice, bruno, carla = people = [Person(await new_client(mesh.gateway, lang), lang)
                                    for lang in ("en", "pt", "es")]
    session = await alice.client.create_session("en")
    for p in (bruno, carla):
        await p.client.join_session(session.code, p.language)
    for p in people:
        p.connect(session.session_id)

    await alice.say(fleurs / CLIPS["en"])
    await _until(lambda: all(set(alice.spoken()) <= set(p.heard_ended(alice)) for p in (bruno, carla)))
    alice.connect(session.session_id)

    # Carla's connection drops while Bruno speaks, once his speech has reached her, and
    # comes back when Alice has heard something of his that Carla has not
    bruno_says = asyncio.create_task(bruno.say(fleurs / CLIPS["pt"]))
    await _until(lambda: any(t.speaker_participant_id == bruno.id for t in carla.of("transcription")))
    await carla.drop()
    dropped_at = carla.last_sequence
    await _until(lambda: bool(alice.heard_ended(bruno)))
    carla.connect(session.session_id)  # resumes after `dropped_at`
    await bruno_says
    await _until(lambda: all(set(bruno.spoken()) <= set(p.heard_ended(bruno)) for p in (alice, carla)))
    bruno.connect(session.session_id)

    await carla.say(fleurs / CLIPS["es"])
    await _until(lambda: all(set(carla.spoken()) <= set(p.heard_ended(carla)) for p in (alice, bruno)))
    for p in (alice, bruno):
        await p.leave()
    await alice.client.end_session(session.session_id)

    assert dropped_at < carla.last_sequence
    for listener in people:
        _assert_gap_free(listener)
        for speaker in people:
            if speaker is not listener:
                _assert_heard(listener, speaker)
        _assert_own_translations(listener, [p for p in people if p is not listener])
    # turns were one after another: each listener heard them in the order they ended
    for listener in people:
        heard = [c.speaker_participant_id for c in listener.of("speech_audio")]
        order = [p.id for p in people if p is not listener]
        assert _runs(heard) == order, (listener.language, _runs(heard))


def _runs(values: list[str]) -> list[str]:
    """`values` with each run of equal neighbours made one."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def _assert_gap_free(person: Person) -> None:
    """Over all of the person's streams, sequences count from 1 without a gap or a repeat."""
    sequences = [e.sequence for e in person.events if e.WhichOneof("kind") != "heartbeat"]
    assert sequences == list(range(1, len(sequences) + 1)), (person.language, sequences)


def _assert_heard(listener: Person, speaker: Person) -> None:
    """Every utterance of `speaker` reached `listener`, once, in order, in the listener's own
    language, named as the speaker's, with the transcript the speaker saw."""
    spoken = speaker.spoken()
    assert spoken, f"{speaker.language}: nothing recognised"
    assert listener.heard_ended(speaker) == spoken, (listener.language, speaker.language)
    about = [getattr(e, kind) for e in listener.events if (kind := e.WhichOneof("kind")) in SPEECH_EVENTS]
    theirs = [x for x in about if x.utterance_id in spoken]
    assert all(x.speaker_participant_id == speaker.id for x in theirs)
    assert all(x.speaker == pb.SPEAKER_PARTNER for x in theirs if not isinstance(x, pb.SpeechAudio))
    assert all(x.speaker_display_name for x in theirs)

    finals = {t.utterance_id: t.text for t in listener.of("transcription")
              if t.is_final and t.utterance_id in spoken}
    own = {t.utterance_id: t.text for t in speaker.of("transcription", pb.SPEAKER_SELF) if t.is_final}
    assert finals == own, "transcribed once, the same text for everyone"

    translations = [t for t in listener.of("translation") if t.utterance_id in spoken and t.is_final]
    assert translations, (listener.language, speaker.language)
    covered = {u for t in translations for u in (*t.covers_utterance_ids, t.utterance_id)}
    assert covered == set(spoken)
    for tr in translations:
        assert _base(tr.source_language_code) == speaker.language
        assert _base(tr.target_language_code) == listener.language
        assert tr.text and tr.text != tr.source_text

    chunks = [c for c in listener.of("speech_audio") if c.utterance_id in spoken]
    said = [c.utterance_id for c in chunks]
    assert _runs(said) == [t.utterance_id for t in translations], "whole utterances, in order"
    for utt in set(said):
        mine = [c for c in chunks if c.utterance_id == utt]
        assert [c.chunk_index for c in mine] == list(range(len(mine))) and mine[-1].is_last
        assert all(c.sample_rate_hertz == 24_000 and c.data for c in mine)
    assert not [c for c in speaker.of("speech_audio") if c.utterance_id in spoken], "nobody hears themselves"


def _assert_own_translations(speaker: Person, listeners: list[Person]) -> None:
    """The speaker sees each final translation made for their listeners, one per language."""
    spoken = set(speaker.spoken())
    mine = [t for t in speaker.of("translation", pb.SPEAKER_SELF) if t.is_final and t.utterance_id in spoken]
    for listener in listeners:
        theirs = [(t.utterance_id, t.text) for t in listener.of("translation")
                  if t.is_final and t.utterance_id in spoken]
        assert theirs == [(t.utterance_id, t.text) for t in mine
                          if _base(t.target_language_code) == listener.language], "translated once"
