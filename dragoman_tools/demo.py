"""`dragoman demo`: simulated people talk through the whole mesh.

Alice speaks English, Bruno Portuguese (or Spanish); with three participants
Carla joins too, speaking Spanish. Each "speaks" real recorded utterances
(FLEURS, CC BY 4.0, shipped in dragoman_tools/demo_data) at real-time pace
through the public API with the Python SDK (dragoman_client, clients/python),
exactly as an integrator's client would: register, create a session / join
with the 6-digit code, converse. The terminal shows each
partial and final transcript, its translations (translated partials lighter)
and the per-utterance latency; the translated speech each one hears is written
as WAV, one file per utterance (in simultaneous mode its pieces joined in order). With three, each
listener hears the two others, and the run ends with each listener's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dragoman_client
import grpc
import numpy as np
from dragoman_client import audio as sdk_audio
from dragoman_client import conversation_pb2 as pb
from dragoman_client import events, sessions_pb2

from dragoman import audio
from dragoman.errors import FailedPrecondition

STAGES = tuple(f.name for f in pb.UtteranceLatency.DESCRIPTOR.fields)
"""The per-stage latencies of an utterance, in pipeline order."""
DEMO_DATA = Path(__file__).parent / "demo_data"
RATE_HZ = audio.STT_RATE_HZ
SCRIPTS = {  # who says what, in turn order
    "en": ["fleurs-en-004.ogg", "fleurs-en-003.ogg"],
    "pt": ["fleurs-pt-002.ogg"],
    "es": ["fleurs-es-003.ogg"],
}
TURN_TIMEOUT_S = 60.0
PARTY = (("Alice", "en"), ("Bruno", "pt"), ("Carla", "es"))
"""Who takes part with --participants 3, host first, and the language each speaks."""


@dataclass
class Person:
    name: str
    language: str
    client: dragoman_client.Client
    out_dir: Path | None  # where the translated speech they hear goes, one WAV per utterance
    printer: Printer
    speed: float = 1.0  # how fast they speak: a multiple of real time
    session: dragoman_client.Session | None = None
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    """What the person says, PCM16 at RATE_HZ as captured; None ends the conversation."""
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    partner_ended: set[str] = field(default_factory=set)
    """The others' utterances that have ended for this person, as their listener."""
    errors: list[str] = field(default_factory=list)
    failure: dragoman_client.DragomanError | None = None
    heard: dict[str, list[bytes]] = field(default_factory=dict)
    rates: dict[str, int] = field(default_factory=dict)
    """Sample rate of each utterance being heard, from its first chunk (a last piece with
    nothing new to say is one empty chunk)."""
    wavs: list[Path] = field(default_factory=list)
    latencies: list[pb.UtteranceLatency] = field(default_factory=list)
    heard_latencies: list[pb.UtteranceLatency] = field(default_factory=list)
    """What the others' utterances took to reach this person, as their listener."""
    names: dict[str, str] = field(default_factory=dict)
    """Everyone's name by participant id, shared by the people of one session."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def microphone(self) -> AsyncIterator[bytes]:
        """What `say` captures, for Session.converse, which sends it and leaves at the end."""
        while (chunk := await self.chunks.get()) is not None:
            yield chunk

    async def listen(self, session: dragoman_client.Session) -> None:
        try:
            async for event in session.converse(self.microphone(), sample_rate=RATE_HZ):
                self.on_event(event)
        except dragoman_client.DragomanError as e:  # e.g. RESOURCE_EXHAUSTED: audio sent too fast
            if e.code != grpc.StatusCode.CANCELLED:
                self.failure = e
                self.changed.set()

    def on_event(self, event: events.Event) -> None:
        me = self.printer
        if isinstance(event, events.Transcription) and event.own:
            me.line(self.name, f"{'final  ' if event.is_final else 'partial'} {event.text!r}",
                    final=event.is_final)
        elif isinstance(event, events.Translation) and event.own:
            if event.is_final:
                me.line(self.name, f"→ {event.target_language}: {event.text!r}", final=True)
            elif event.text.strip():  # a stable prefix of a word or two may translate to nothing
                me.line(self.name, f"partial → {event.target_language}: {event.text!r}", final=False,
                        light=True)
        elif isinstance(event, events.ProcessingStarted) and event.own:
            self.started.add(event.utterance_id)
        elif isinstance(event, events.ProcessingEnded):
            # the SDK leaves the per-stage latency in the message (a protobuf UtteranceLatency)
            ended = event.raw.processing_ended
            latency = ended.latency if ended.HasField("latency") else None
            if not event.own:
                self.partner_ended.add(event.utterance_id)
                if latency is not None:
                    self.heard_latencies.append(latency)
            else:
                self.ended.add(event.utterance_id)
                if latency is not None:
                    self.latencies.append(latency)
                    me.line(self.name, f"latency {event.utterance_id}: {format_latency(latency)}", True)
        elif isinstance(event, events.SpeechAudio):
            self.heard.setdefault(event.utterance_id, []).append(event.data)
            if event.sample_rate:
                self.rates.setdefault(event.utterance_id, event.sample_rate)
            if event.piece_index and event.source_text:  # the first chunk of a piece (simultaneous mode)
                who = self.names.get(event.speaker_participant_id, "")
                me.line(self.name, f"hears piece {event.piece_index} of {who or 'the partner'}'s "
                                   f"{event.utterance_id}: {event.source_text!r}", final=True)
            if event.is_last:
                rate_hz = self.rates.pop(event.utterance_id, event.sample_rate)
                self.on_speech(event.utterance_id, b"".join(self.heard.pop(event.utterance_id)), rate_hz,
                               self.names.get(event.speaker_participant_id, ""))
        elif isinstance(event, events.ConversationError):
            self.errors.append(event.message)
            me.line(self.name, f"error: {event.message}", final=True)
        self.changed.set()

    def on_speech(self, utterance_id: str, pcm16: bytes, rate_hz: int, speaker: str = "") -> None:
        """The whole translated speech of one of the others' utterances has arrived; with more
        than two people, `speaker` names who said it."""
        if self.out_dir is None:
            return
        if len(self.names) <= 2:  # two people: the partner is the only speaker
            speaker = ""
        who = f"{speaker.lower()}-" if speaker else ""
        path = audio.write_wav(self.out_dir / f"{self.name.lower()}-hears-{who}{utterance_id}.wav",
                               pcm16, rate_hz)
        self.wavs.append(path)
        heard = f"{speaker}'s translated speech" if speaker else "translated speech"
        self.printer.line(self.name, f"hears {heard} → {path}", final=True)

    async def say(self, name: str, samples: np.ndarray) -> None:
        """Streams `samples` (mono float32 at RATE_HZ) as captured, at `speed` times real time."""
        pad = np.zeros(int(0.3 * RATE_HZ), np.float32)
        tail = np.zeros(int(1.2 * RATE_HZ), np.float32)
        pcm = audio.float_to_pcm16(np.concatenate([pad, samples, tail]))
        self.printer.line(self.name, f"speaks {name} ({len(samples) / RATE_HZ:.1f} s)", True)
        async for chunk in sdk_audio.paced(sdk_audio.split(pcm, RATE_HZ), RATE_HZ, speed=self.speed):
            if self.failure is not None:
                raise self.failure
            await self.chunks.put(chunk)

    async def wait_quiet(self, listeners: Sequence[Person]) -> None:
        """Waits until every utterance this person started has been delivered and each of
        `listeners` has had all of it."""
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while (not self.started or self.started - self.ended
               or any(self.started - p.partner_ended for p in listeners)):
            if self.failure is not None:
                raise self.failure
            for p in (self, *listeners):
                p.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}'s utterances were not delivered in {TURN_TIMEOUT_S:.0f} s")
            waits = [asyncio.ensure_future(p.changed.wait()) for p in (self, *listeners)]
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()


DIM, PLAIN = "\x1b[2m", "\x1b[0m"


class Printer:
    """Live terminal lines; partials overwrite each other on a terminal, and `light` ones
    (translated partials) are dimmed there."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.t0 = time.monotonic()
        self.tty = stream.isatty()
        self._open = False

    def line(self, who: str, text: str, final: bool, light: bool = False) -> None:
        stamp = f"{time.monotonic() - self.t0:6.1f}s"
        msg = f"{stamp}  {who:<6} {text}"
        if self.tty:
            msg = f"{DIM}{msg}{PLAIN}" if light else msg
            self.stream.write(("\r\x1b[2K" if self._open else "") + msg + ("\n" if final else ""))
            self._open = not final
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def format_latency(lat: pb.UtteranceLatency) -> str:
    ms = {s: getattr(lat, s).ToMilliseconds() for s in STAGES}
    return (f"end of speech +{ms['endpointing']} ms → STT final +{ms['recognition']} ms → "
            f"MT +{ms['translation']} ms → TTS first chunk +{ms['synthesis_first_chunk']} ms → "
            f"delivered +{ms['delivery']} ms = {ms['total']} ms")


def latency_table(latencies: list[pb.UtteranceLatency]) -> str:
    rows = [f"{'stage':<24}{'p50 ms':>8}{'p95 ms':>8}{'n':>4}"]
    for stage in STAGES:
        values = sorted(getattr(lat, stage).ToMilliseconds() for lat in latencies)
        if not values:
            continue
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        rows.append(f"{stage:<24}{statistics.median(values):>8.0f}{p95:>8.0f}{len(values):>4}")
    return "\n".join(rows)


@dataclass
class DemoResult:
    latencies: list[pb.UtteranceLatency]
    wavs: list[Path]
    utterances: int


async def converse(people: Sequence[Person], turns: list[tuple[Person, str, np.ndarray]],
                   one_way: bool = False) -> sessions_pb2.EndSessionResponse:
    """One conversation through the public API, as native clients hold it: everyone
    registers, the first of `people` (the host) creates a session, the others join with its
    6-digit code, all Converse; each turn (who, name, mono float32 samples at RATE_HZ) is
    spoken and waited for until every other person has heard all of it; then all leave and
    the host ends the session. `one_way`: only the host speaks, so the session need only
    translate from the host to the others."""
    host, *guests = people
    suffix = secrets.token_hex(3)
    names: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for p in people:
            await stack.enter_async_context(p.client)
            user_id = await p.client.register(f"{p.name.lower()}-{suffix}", "demo-password",
                                              email=f"{p.name.lower()}-{suffix}@example.org",
                                              language=p.language)
            names[user_id] = p.name
            p.names = names
        session = host.session = await host.client.create_session(host.language)
        host.printer.line(host.name, f"created session; pairing code {session.code}", True)
        for i, guest in enumerate(guests):
            joined = guest.session = await guest.client.join_session(
                session.code, language=guest.language, allow_one_way=one_way)
            guest.printer.line(guest.name, f"joined with code {session.code}", True)
            routes = joined.info.routes
            there = routes[0] if routes and i == 0 else None  # the host's speech to them
            if there is not None and not there.available:
                await session.end()
                raise FailedPrecondition(f"{'; '.join(there.missing)}: run `{there.install}`")
        listeners = [asyncio.create_task(p.listen(p.session)) for p in people if p.session is not None]
        try:
            for person, name, samples in turns:
                await person.say(name, samples)
                await person.wait_quiet([p for p in people if p is not person])
        finally:
            for p in people:  # the end of their audio: converse leaves once their last utterance is done
                await p.chunks.put(None)
            await asyncio.wait(listeners, timeout=10)
            for task in listeners:
                task.cancel()
        return await session.end()


async def run(gateway: str, out_dir: Path, partner_language: str = "pt",
              stream: TextIO = sys.stdout, participants: int = 2, speed: float = 1.0) -> DemoResult:
    """Runs the conversation against a running mesh at `gateway`: Alice and Bruno (who speaks
    `partner_language`) or, with three `participants`, Alice, Bruno and Carla (PARTY); they
    speak at `speed` times real time."""
    if participants not in (2, 3):
        raise ValueError(f"the demo has 2 or 3 participants, not {participants}")
    printer = Printer(stream)
    out_dir.mkdir(parents=True, exist_ok=True)
    cast = [("Alice", "en"), ("Bruno", partner_language)] if participants == 2 else list(PARTY)
    people = [Person(name, language, await dragoman_client.connect(gateway), out_dir, printer, speed)
              for name, language in cast]
    alice, bruno = people[:2]
    turns = [(alice, SCRIPTS["en"][0]), (bruno, SCRIPTS[bruno.language][0])]
    turns += [(p, SCRIPTS[p.language][0]) for p in people[2:]] + [(alice, SCRIPTS["en"][1])]
    ended = await converse(people, [(person, clip, audio.decode_file(DEMO_DATA / clip, RATE_HZ))
                                    for person, clip in turns])
    latencies = [lat for p in people for lat in p.latencies]
    wavs = [path for p in people for path in p.wavs]
    m = ended.metrics
    stream.write(f"\nsession ended: {m.utterance_count} utterances, mean {m.mean_latency_ms:.0f} ms, "
                 f"min {m.min_latency_ms:.0f} ms, max {m.max_latency_ms:.0f} ms, errors {m.error_count}, "
                 f"unsure transcripts {m.low_confidence_share:.0%}\n\n")
    if participants == 2:
        stream.write("end of speech → first translated audio delivered, per stage:\n")
        stream.write(latency_table(latencies) + "\n\ntranslated speech:\n")
        for path in wavs:
            stream.write(f"  {path}\n")
    else:
        stream.write("translated speech:\n" + "".join(f"  {path}\n" for path in wavs))
        stream.write("\nend of speech → first translated audio delivered, per stage, per listener:\n")
        for p in people:
            speakers = ", ".join(o.name for o in people if o is not p)
            stream.write(f"\n{p.name} ({p.language}) hearing {speakers}:\n"
                         f"{latency_table(p.heard_latencies)}\n")
    stream.flush()
    return DemoResult(latencies, wavs, m.utterance_count)
