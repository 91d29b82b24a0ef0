"""Fan-out to several listeners: one translation per language, one synthesis per voice,
whole utterances in order for each listener.

Sessions of three and more are built in memory, members appended to
`Session.members` the way a join adds them; the engines are fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from dragoman import audio, config, languages
from dragoman.coverage import Path as RoutePath
from dragoman.coverage import Route
from dragoman.errors import Unavailable
from dragoman.mt.v1 import mt_pb2
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2 as spb
from mt_svc.engines.fake import FakeEngine as FakeMt
from session_svc.downstream import Downstream
from session_svc.events import EventLog
from session_svc.lexicon import NO_GLOSSARY, Glossary
from session_svc.pipeline import SpeakerPipeline
from session_svc.sessions import Member, Session
from tests.session_svc.conftest import utterance
from tests.session_svc.stack import LANGUAGES, model_services
from tts_svc.cache import MemoryCache
from tts_svc.engines.fake import FakeEngine as FakeTts

CHUNKS = 3


def party(*members: tuple[str, int]) -> Session:
    """A session of (language, output rate) members, the first of whom speaks."""
    session = Session("s1", "123456", time.time(), status=spb.SESSION_STATUS_ACTIVE)
    for language in members:
        add(session, *language)
    return session


def add(session: Session, language_code: str, rate_hz: int = 0) -> Member:
    n = len(session.members)
    member = Member(f"u{n}", f"User {n}", language_code, languages.normalise(language_code), "",
                    EventLog(session.session_id, 4096), output_rate_hz=rate_hz)
    session.members.append(member)
    return member


def of_kind(member: Member, kind: str) -> list[pb.ConversationEvent]:
    return [e for e in member.log.kept() if e.WhichOneof("kind") == kind]


def heard(member: Member) -> list[tuple[str, str, int]]:
    """(utterance id, speaker id, chunk index) of each SpeechAudio the member got."""
    return [(a.utterance_id, a.speaker_participant_id, a.chunk_index)
            for a in (e.speech_audio for e in of_kind(member, "speech_audio"))]


def finals(member: Member) -> list[str]:
    return [t.utterance_id for t in (e.transcription for e in of_kind(member, "transcription"))
            if t.is_final]


# -- over gRPC, fake engines: how often MT and TTS are asked -------------------


@dataclass
class Models:
    down: Downstream
    mt: FakeMt
    tts: FakeTts


@contextlib.asynccontextmanager
async def models_on_loopback(settings: config.Settings) -> AsyncIterator[Models]:
    """The model services with fake engines, the TTS cache off: every request reaches an engine."""
    mt = FakeMt(pairs=[(a, b) for a in LANGUAGES for b in LANGUAGES if a != b])
    tts = FakeTts()
    async with model_services(settings, mt, tts, MemoryCache(0)) as addresses:
        down = Downstream(addresses, timeout_s=30)
        try:
            yield Models(down, mt, tts)
        finally:
            await down.close()


PARTIES = {
    "2": (("en", 0), ("pt", 0)),
    "4": (("en", 0), ("pt", 0), ("es", 0), ("pt", 0)),
    "8": (("en", 0), ("pt", 0), ("es", 0), ("pt", 0), ("es", 24_000), ("en", 0), ("pt-BR", 0),
          ("es", 0)),
}


def served(service: str, method: str) -> float:
    """Calls the service's servicers in this process have answered OK, so far."""
    return REGISTRY.get_sample_value(
        "dragoman_rpc_requests_total", {"service": service, "method": method, "code": "OK"}) or 0.0


MT, TTS = "dragoman.mt.v1.TranslationService", "dragoman.tts.v1.TextToSpeechService"


@pytest.mark.parametrize("members", PARTIES.values(), ids=PARTIES.keys())
async def test_each_language_is_translated_once_and_each_voice_synthesised_once(
        settings: config.Settings, fleurs: Path, members: tuple[tuple[str, int], ...]) -> None:
    session = party(*members)
    speaker, listeners = session.members[0], session.members[1:]
    async with models_on_loopback(settings) as models:
        warm_up = len(models.mt.calls)  # mt_svc's own warm-up translations
        translations, syntheses = served(MT, "Translate"), served(TTS, "Synthesize")
        pipeline = SpeakerPipeline(session, speaker, models.down, pb.AUDIO_ENCODING_LINEAR16,  # type: ignore[arg-type]
                                   16_000)
        for chunk in audio.chunks(utterance(fleurs), 16_000):
            pipeline.feed(chunk)
            await asyncio.sleep(0.002)  # lets the audio queue drain to stt_svc
        await pipeline.finish(timeout_s=30)
        translations = served(MT, "Translate") - translations
        syntheses = served(TTS, "Synthesize") - syntheses

    said = finals(speaker)
    assert said  # the fake recogniser heard the speech
    targets = {m.language for m in listeners} - {speaker.language}
    voices = {(m.language, m.voice, m.output_rate_hz) for m in listeners
              if m.language != speaker.language}
    per_target = Counter(b.target for b in models.mt.calls[warm_up:] for _ in b.texts)
    assert per_target == dict.fromkeys(targets, len(said))  # once per language, not per listener
    assert translations == len(targets) * len(said)
    assert syntheses == len(voices) * len(said)  # once per (language, voice, rate)
    for listener in listeners:
        got = heard(listener)
        if listener.language == speaker.language:
            assert not got and finals(listener) == said  # the transcript, and no audio
        else:
            assert got and {who for _, who, _ in got} == {speaker.participant_id}
    print(f"\n{len(session.members)} participants, languages "  # the counts table of the report
          f"{sorted({m.language for m in session.members})}, {len(voices)} (language, voice, rate): "
          f"finals {len(said)}, Translate calls {translations:.0f}, Synthesize calls "
          f"{syntheses:.0f}, listeners with audio {sum(bool(heard(m)) for m in listeners)}")


# -- scripted engines: ordering, languages, joins and leaves -------------------


@dataclass
class Scripted:
    """Each speaker (by language) says `script[language]`: (seconds before, text) per final;
    each synthesis makes CHUNKS chunks of its text, `chunk_delay_s` apart."""

    script: dict[str, list[tuple[float, str]]]
    chunk_delay_s: float = 0.05
    fail_target: str = ""
    before_final: Callable[[str, int], None] = lambda language, index: None
    translated: list[tuple[str, str]] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    """The recognition task of each stream."""
    partial_modes: list[int] = field(default_factory=list)
    """The partial mode of each stream."""
    synthesised: list[tuple[str, str]] = field(default_factory=list)

    async def recognize(
        self, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        config_request = await anext(aiter(requests))
        language = config_request.config.language_code
        self.tasks.append(config_request.config.task)
        self.partial_modes.append(config_request.config.partial_mode)
        for i, (wait_s, text) in enumerate(self.script[language]):
            await asyncio.sleep(wait_s)
            yield stt_pb2.StreamingRecognizeResponse(speech_event=stt_pb2.SpeechEvent(
                type=stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH, utterance_index=i))
            self.before_final(language, i)
            yield stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
                utterance_index=i, transcript=text, is_final=True, language_code=language))

    async def translate(self, source: str, target: str, text: str,
                        glossary: Glossary = NO_GLOSSARY) -> mt_pb2.Translation:
        self.translated.append((target, text))
        if target == self.fail_target:
            raise Unavailable("mt is down")
        return mt_pb2.Translation(text=f"{text} [{target}]", engine="scripted")

    async def synthesize(
        self, text: str, language_code: str, voice: str, rate_hz: int, speed: float = 1.0
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        self.synthesised.append((language_code, text))
        for i in range(CHUNKS):
            await asyncio.sleep(self.chunk_delay_s)
            yield tts_pb2.SynthesizeResponse(audio=text.encode(), sample_rate_hertz=16_000,
                                             chunk_index=i, is_last=i == CHUNKS - 1)


async def speak(session: Session, down: Scripted, *speakers: Member,
                same_language_audio: bool = False, mode: str = "utterance") -> None:
    pipelines = [SpeakerPipeline(session, s, down, pb.AUDIO_ENCODING_LINEAR16, 16_000,  # type: ignore[arg-type]
                                 same_language_audio=same_language_audio, mode=mode)
                 for s in speakers]
    await asyncio.gather(*(p.finish(timeout_s=20) for p in pipelines))


async def test_two_speakers_at_once_reach_each_listener_whole_and_in_order() -> None:
    session = party(("en", 0), ("pt", 0), ("es", 0), ("pt", 0))
    alice, bruno, carla, dora = session.members
    down = Scripted({
        "en": [(0.0, "a one"), (0.1, "a two"), (0.1, "a three")],
        "pt": [(0.05, "b one"), (0.1, "b two"), (0.1, "b three")],
    })
    await speak(session, down, alice, bruno)

    for listener in (alice, bruno, carla, dora):
        got = heard(listener)
        runs = [got[i:i + CHUNKS] for i in range(0, len(got), CHUNKS)]
        for run in runs:  # each utterance whole, chunk 0..2, before the next begins
            assert [c for _, _, c in run] == list(range(CHUNKS))
            assert len({(u, who) for u, who, _ in run}) == 1
            utterance_id, who, _ = run[0]
            assert who == session.members[int(utterance_id.split("-")[0]) - 1].participant_id
        # in the order the finals came, across both speakers
        order = [run[0][0] for run in runs]
        assert order == [u for u in finals(listener) if u in order]
    assert {u for u, _, _ in heard(carla)} == {"1-1", "1-2", "1-3", "2-1", "2-2", "2-3"}
    assert {who for _, who, _ in heard(carla)} == {alice.participant_id, bruno.participant_id}
    # one translation per language and utterance: carla and dora don't double alice's
    assert Counter(t for t, _ in down.translated) == {"pt": 3, "es": 6, "en": 3}
    assert session.utterances == 6  # each utterance counted once, however many heard it
    # alice's three reach bruno, carla and dora; bruno's reach alice and carla (dora shares pt)
    assert [len(m.heard_ms) for m in session.members] == [3, 3, 6, 3]
    assert [m.spoken for m in session.members] == [3, 3, 0, 0]


async def test_a_listener_of_the_speakers_language_reads_and_does_not_hear() -> None:
    session = party(("pt", 0), ("en", 0), ("pt-PT", 0))
    bruno, alice, dora = session.members
    await speak(session, Scripted({"pt": [(0.0, "bom dia")]}), bruno)
    assert [t.transcription.text for t in of_kind(dora, "transcription")] == ["bom dia"]
    assert of_kind(dora, "transcription")[0].transcription.speaker_participant_id == "u0"
    assert not heard(dora) and not of_kind(dora, "translation")
    assert [e.processing_ended.utterance_id for e in of_kind(dora, "processing_ended")] == ["1-1"]
    assert heard(alice) == [("1-1", "u0", i) for i in range(CHUNKS)]
    translations = [e.translation for e in of_kind(bruno, "translation")]
    assert [(t.target_language_code, t.text) for t in translations] == [("en", "bom dia [en]")]


async def test_same_language_audio_speaks_the_transcript() -> None:
    session = party(("pt", 0), ("en", 0), ("pt-PT", 0))
    bruno, _, dora = session.members
    down = Scripted({"pt": [(0.0, "bom dia")]})
    await speak(session, down, bruno, same_language_audio=True)
    spoken = [e.speech_audio.data for e in of_kind(dora, "speech_audio")]
    assert spoken == [b"bom dia"] * CHUNKS and not of_kind(dora, "translation")
    assert sorted(down.synthesised) == [("en", "bom dia [en]"), ("pt-PT", "bom dia")]


async def test_a_failed_language_leaves_the_others() -> None:
    session = party(("en", 0), ("pt", 0), ("es", 0))
    alice, bruno, carla = session.members
    await speak(session, Scripted({"en": [(0.0, "one"), (0.0, "two")]}, fail_target="es"), alice)
    assert [u for u, _, _ in heard(bruno)] == ["1-1"] * CHUNKS + ["1-2"] * CHUNKS
    assert not heard(carla)
    ended = [e.processing_ended for e in of_kind(carla, "processing_ended")]
    assert [e.utterance_id for e in ended] == ["1-1", "1-2"]
    assert not any(e.HasField("latency") for e in ended)
    errors = [e.error for e in of_kind(alice, "error")]
    assert [e.code for e in errors] == [pb.ERROR_CODE_SERVICE_UNAVAILABLE] * 2  # mt was down
    assert session.errors == 2 and session.utterances == 2


async def test_who_joins_hears_what_ends_after_and_who_leaves_hears_no_more() -> None:
    session = party(("en", 0), ("pt", 0), ("es", 0))
    alice, bruno, carla = session.members
    joined: list[Member] = []

    def before_final(language: str, index: int) -> None:
        if index == 1:  # mid-utterance: carla leaves, emma joins
            carla.state = spb.PARTICIPANT_STATE_LEFT
            joined.append(add(session, "es"))

    down = Scripted({"en": [(0.0, "one"), (0.0, "two")]}, before_final=before_final)
    await speak(session, down, alice)
    (emma,) = joined
    assert {u for u, _, _ in heard(emma)} == {"1-2"} and finals(emma) == ["1-2"]
    assert "1-2" not in {u for u, _, _ in heard(carla)} and finals(carla) == ["1-1"]
    assert not [e for e in of_kind(carla, "processing_ended")
                if e.processing_ended.utterance_id == "1-2"]
    assert [u for u, _, _ in heard(bruno)] == ["1-1"] * CHUNKS + ["1-2"] * CHUNKS
    ended = [e.processing_ended for e in of_kind(alice, "processing_ended")]
    assert [e.utterance_id for e in ended] == ["1-1", "1-2"] and ended[1].HasField("latency")


async def test_a_speaker_cut_off_mid_utterance_does_not_hold_up_the_listeners() -> None:
    session = party(("en", 0), ("pt", 0), ("es", 0))
    alice, bruno, carla = session.members
    down = Scripted({"en": [(0.0, "long one")], "pt": [(0.3, "bom dia")]}, chunk_delay_s=0.2)
    cut = SpeakerPipeline(session, alice, down, pb.AUDIO_ENCODING_LINEAR16, 16_000)  # type: ignore[arg-type]
    while not heard(carla):  # alice's speech has begun reaching carla
        await asyncio.sleep(0.01)
    await cut.cancel()  # her stream closed
    await speak(session, down, bruno)
    assert [u for u, _, _ in heard(carla)][-CHUNKS:] == ["2-1"] * CHUNKS
    assert [u for u, _, _ in heard(alice)] == ["2-1"] * CHUNKS


@pytest.mark.parametrize(("mode", "partial_mode"), [
    ("utterance", stt_pb2.PARTIAL_MODE_STEADY), ("simultaneous", stt_pb2.PARTIAL_MODE_EARLY)])
async def test_simultaneous_mode_asks_for_early_partials(mode: str, partial_mode: int) -> None:
    """Pieces wait on stable words, so a simultaneous speaker's stream asks stt_svc for them
    sooner; utterance mode keeps the steadier partials."""
    session = party(("en", 0), ("pt", 0))
    down = Scripted({"en": [(0.0, "good morning")]})
    await speak(session, down, session.members[0], mode=mode)
    assert down.partial_modes == [partial_mode]
    assert heard(session.members[1])


async def test_speech_translation_to_one_listener_makes_every_final_english() -> None:
    session = party(("ko", 0), ("en", 0), ("pt", 0), ("ko", 0))
    speaker, eve, bruno, kim = session.members
    session.routes["ko", "en"] = Route("ko", "en", RoutePath.SPEECH, ("whisper",))
    down = Scripted({"ko": [(0.0, "good morning")]})
    await speak(session, down, speaker, same_language_audio=True)
    assert down.tasks == [stt_pb2.RECOGNITION_TASK_TRANSLATE_TO_ENGLISH]
    assert down.translated == [("pt", "good morning")]  # from the English; none for eve
    (to_eve,) = [e.translation for e in of_kind(eve, "translation")]
    assert (to_eve.text, to_eve.path) == ("good morning", pb.TRANSLATION_PATH_SPEECH_TRANSLATION)
    assert heard(eve) and heard(bruno)
    # kim reads the English transcript and hears nothing: it is not in her language
    (final,) = [e.transcription for e in of_kind(kim, "transcription")]
    assert final.translated_to_english and final.text == "good morning"
    assert not heard(kim) and not of_kind(kim, "translation")
