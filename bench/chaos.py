"""Fault injection: what people in a conversation see when a model service dies.

Starts the mesh on loopback, each service its own process: stt_svc, mt_svc
and tts_svc as calibrated fakes (bench.fakes, stage times as bench.load
takes them) or, with --real, the real services with their default engines;
session_svc and two gateways real, on a private PostgreSQL and Redis of the
run's own (bench.private; the gateways share rate limits in Redis, the
configuration of several gateway replicas). session_svc runs as two
replicas on that database, each recording the sessions it holds at its
address (the gateways route to the holder); each gateway creates sessions on
a replica of its own, so the odd pairs' sessions are on the second one. N two-party sessions talk
through the gateways, the two people of a session on different ones (as a
load balancer spreads them): both say FLEURS speech at real-time pace (the
first CLIP_S seconds of a clip, then PAUSE_S of silence: one utterance),
over and over. Meanwhile each process of FAULTS in turn is killed with
SIGKILL, kept dead DOWN_S and started again on the same address; every
listener reconnects once per fault, while the process is down, resuming
after the last event it received, and a client whose stream breaks with
UNAVAILABLE reconnects at once to the next gateway and resumes there. The
last fault SIGKILLs the second session_svc replica for good: the first takes
its sessions over (session_svc.handover) and clients whose stream broke
resume on their own.

Per fault (the utterances in flight at the kill or started after it, until
the next fault):
- lost: utterances the listener never heard and nobody was told of (a
  ConversationError naming it); over the whole run, clips said that became
  no utterance are counted too, lost unless an error naming none came;
- reported: utterances that failed with a ConversationError (the speaker is told);
- duplicated / out of order: events a resuming client received twice, or
  past a gap, by their sequence numbers;
- sessions ended: sessions whose stream ended with an error or that ended;
- recovery: per session, from the restart (the new process started) to the
  first translated audio heard after it, p50/p95; for a gateway, whose
  clients go to the other one, from the kill to the first translated audio
  heard by the person whose gateway died; for the session_svc replica, from
  the kill, over the pairs whose sessions it held; the restart itself, process start
  to SERVING (ready, for PostgreSQL and Redis) as a poll sees it, is
  `startup_ms`;
- the status codes clients saw: ConversationError codes and gRPC status
  codes of broken streams.

    python -m bench.chaos [--sessions 20] [--real] [--smoke] [--faults stt,mt,...] [--down-s 0.5] [--out DIR]

It ends with one line: `lost=N duplicated=N sessions_ended=N recovery_p95_ms=N`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import secrets
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dragoman_client
import grpc
import numpy as np
import psycopg
from psycopg import sql

from bench.common import (
    TESTDATA,
    Child,
    Children,
    Participant,
    free_address,
    join_request,
    machine,
    percentile,
    publish,
    raw_converse,
    service_env,
    summary,
    table,
)
from bench.fakes import Delays
from bench.load import LIMITS_ENV, calibrated_delays
from bench.private import Postgres, Redis, Server
from dragoman import audio
from dragoman.db import crypto
from dragoman.v1 import conversation_pb2 as pb

RATE_HZ = audio.STT_RATE_HZ
CHUNK_MS = 100
CLIP_S, PAUSE_S = 3.0, 1.0
"""Speech said per utterance (the start of a FLEURS clip) and the silence after it."""
DOWN_S = 0.5
"""How long a killed service stays dead before it is started again."""
SETTLE_S, WARMUP_S, DRAIN_S = 10.0, 5.0, 20.0
RESUME_WAIT_S = 5.0
MODELS = ("stt", "mt", "tts")
REAL_MODULES = {"stt": "stt_svc.server", "mt": "mt_svc.server", "tts": "tts_svc.server"}
NOT_RUN: tuple[str, ...] = ()
"""Faults of the issue this bench does not inject yet."""
GATEWAYS = 2
"""Gateways, and session_svc replicas: gateway i creates sessions on replica i."""
HANDOVER_AFTER_MS = 1500
"""session.handover_after_ms of the replicas: how soon a silent one's sessions move."""
SCHEMA = "chaos"
FAILOVER_GIVE_UP_S = 30.0
"""How long a client whose stream broke goes on reconnecting, gateway after gateway."""
FAILOVER_BACKOFF_S, FAILOVER_BACKOFF_MAX_S = 0.2, 1.0
"""Wait before the n-th reconnection in a row: n times this (the first goes at once),
at most the max."""
LANGUAGES = ("en", "es")


class ModelServices:
    """stt_svc, mt_svc and tts_svc, each in a process of its own, that can be killed
    and started again on the same address: bench.fakes with `delays`, or with
    `delays` None the real services."""

    def __init__(self, children: Children, addresses: dict[str, str],
                 delays: Delays | None) -> None:
        self.children, self.addresses, self.delays = children, addresses, delays
        self.processes: dict[str, Child] = {}

    def _args(self, role: str) -> list[str]:
        if self.delays is None:
            return ["-m", REAL_MODULES[role]]
        d = self.delays
        return ["-m", "bench.fakes", f"--{role}", self.addresses[role],
                "--endpoint-ms", str(d.endpoint_ms), "--recognition-ms", str(d.recognition_ms),
                "--translation-ms", str(d.translation_ms), "--synthesis-ms", str(d.synthesis_ms),
                "--audio-s", f"{d.audio_s:g}"]

    def spawn(self, role: str) -> Child:
        child = self.children.spawn(role, self._args(role), self.addresses[role])
        self.processes[role] = child
        return child

    async def start(self, timeout_s: float = 600.0) -> None:
        for role in MODELS:
            self.spawn(role)
        for role in MODELS:
            await self.children.wait_serving(self.processes[role], timeout_s)

    async def kill(self, role: str) -> None:
        await sigkill(self.processes[role])

    async def restart(self, role: str, timeout_s: float = 600.0) -> float:
        """Starts `role` again on its address; returns once it serves, the seconds that took."""
        return await serving_in(self.children, lambda: self.spawn(role), timeout_s)

    def target(self, role: str) -> Target:
        return Target(lambda: self.kill(role), lambda: self.restart(role))


async def sigkill(child: Child) -> None:
    """SIGKILL, and waits until the process is gone."""
    child.popen.send_signal(signal.SIGKILL)
    while child.popen.poll() is None:
        await asyncio.sleep(0.01)


async def serving_in(children: Children, spawn: Callable[[], Child],
                     timeout_s: float = 600.0) -> float:
    """Starts a process again on its address; returns once it serves, the seconds that took."""
    started = time.monotonic()
    await children.wait_serving(spawn(), timeout_s)
    return time.monotonic() - started


class SessionReplicas:
    """GATEWAYS session_svc replicas on one database, each its own process recording
    the sessions it holds at its address."""

    def __init__(self, children: Children) -> None:
        self.children = children
        self.addresses = [free_address() for _ in range(GATEWAYS)]
        self.processes: list[Child] = []

    async def start(self) -> None:
        for i, address in enumerate(self.addresses):
            self.processes.append(self.children.spawn(
                f"session-{i}", ["-m", "session_svc.server"], address, {
                    "DRAGOMAN_ADDRESSES_SESSION": address,
                    "DRAGOMAN_SESSION_ADVERTISE_ADDRESS": address,
                    "DRAGOMAN_SESSION_HANDOVER_AFTER_MS": str(HANDOVER_AFTER_MS)}))
        for child in self.processes:
            await self.children.wait_serving(child)


class Gateways:
    """GATEWAYS gateway processes, each on an address of its own, gateway i creating
    sessions on session_svc replica i."""

    def __init__(self, children: Children, replicas: SessionReplicas) -> None:
        self.children, self.replicas = children, replicas
        self.addresses = [free_address() for _ in range(GATEWAYS)]
        self.processes: list[Child] = []

    def spawn(self, i: int) -> Child:
        child = self.children.spawn(f"gateway-{i}", ["-m", "gateway.server"], self.addresses[i],
                                    env={"DRAGOMAN_ADDRESSES_GATEWAY": self.addresses[i],
                                         "DRAGOMAN_ADDRESSES_SESSION": self.replicas.addresses[i]})
        if i < len(self.processes):
            self.processes[i] = child
        else:
            self.processes.append(child)
        return child

    async def start(self) -> None:
        for i in range(GATEWAYS):
            self.spawn(i)
        for child in self.processes:
            await self.children.wait_serving(child)

    def target(self, i: int) -> Target:
        return Target(lambda: sigkill(self.processes[i]),
                      lambda: serving_in(self.children, lambda: self.spawn(i)),
                      gateway=self.addresses[i])

    def replica_target(self, i: int) -> Target:
        """session_svc replica i, killed for good: the sessions created through
        gateway i move to another replica."""
        return Target(lambda: sigkill(self.replicas.processes[i]), None,
                      sessions_of=self.addresses[i])


@dataclass(frozen=True)
class Target:
    """What a fault kills and starts again; `restart` returns the seconds to ready,
    None for a process killed for good."""

    kill: Callable[[], Awaitable[None]]
    restart: Callable[[], Awaitable[float]] | None
    gateway: str = ""
    """The gateway address it kills: its clients fail over, recovery counts from the kill."""
    sessions_of: str = ""
    """For a session_svc replica, the gateway that created sessions on it: recovery
    counts from the kill, over those sessions."""


def server_target(server: Server) -> Target:
    return Target(server.kill, server.start)


@dataclass
class Mesh:
    models: ModelServices
    gateways: Gateways
    postgres: Postgres
    redis: Redis


@dataclass(frozen=True)
class FaultSpec:
    name: str
    target: Callable[[Mesh], Target]


FAULTS = (
    FaultSpec("stt", lambda mesh: mesh.models.target("stt")),
    FaultSpec("mt", lambda mesh: mesh.models.target("mt")),
    FaultSpec("tts", lambda mesh: mesh.models.target("tts")),
    FaultSpec("gateway", lambda mesh: mesh.gateways.target(0)),
    FaultSpec("PostgreSQL", lambda mesh: server_target(mesh.postgres)),
    FaultSpec("Redis", lambda mesh: server_target(mesh.redis)),
    FaultSpec("session_svc replica", lambda mesh: mesh.gateways.replica_target(1)),
)
"""Each process killed in turn, in this order; the session_svc replica for good, so last."""


@dataclass
class Person(Participant):
    """One participant: says clips, hears the partner, resumes its stream on demand."""

    session_id: str = ""
    last_sequence: int = 0
    started_at: dict[str, float] = field(default_factory=dict)
    """Own utterances: when processing started (time.monotonic())."""
    heard_at: dict[str, float] = field(default_factory=dict)
    """Partner's utterances: when their first translated audio arrived."""
    heard_until: dict[str, float] = field(default_factory=dict)
    """Partner's utterances: when their last translated audio arrived."""
    covered: dict[str, str] = field(default_factory=dict)
    """Partner's utterance -> the utterance whose translation covers it."""
    failed: dict[str, float] = field(default_factory=dict)
    """Own utterances reported failed -> when."""
    unnamed_errors: list[float] = field(default_factory=list)
    """When errors naming no utterance came."""
    clips: list[float] = field(default_factory=list)
    """When each clip's speech ended (time.monotonic())."""
    codes: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    """Status and message of each broken stream."""
    duplicated: int = 0
    out_of_order: int = 0
    gone: bool = False
    """The session ended or the stream broke."""
    leaving: bool = False
    resume_wanted: bool = False
    """Resume the stream at the end of the clip being said (see `talk`)."""
    resumed_at: list[float] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    """The gateways this person's client knows, theirs first; it moves on at UNAVAILABLE."""
    address: str = ""
    """The gateway the client is on now."""
    spare_clients: list[dragoman_client.Client] = field(default_factory=list)
    """Clients of gateways moved away from (closed at the end)."""
    failovers: list[float] = field(default_factory=list)
    """When the stream broke and moved to another gateway."""
    tries: int = 0
    """Reconnections since the last event received."""
    broken_since: float | None = None
    """When its stream broke, until an event comes on a new one."""

    def open(self, resume_after: int = 0) -> None:
        """Opens the conversation stream, resuming after `resume_after` if not 0."""
        self.requests = asyncio.Queue()
        self.requests.put_nowait(join_request(self.session_id, RATE_HZ, resume_after=resume_after))
        self.task = asyncio.create_task(self._follow(self.requests))

    async def resume(self) -> None:
        """Drops the stream and opens another, resuming after the last event received."""
        old = self.task  # cancelled, not half-closed: a half-close would say "leave"
        while old is not None:
            old.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old
            old = self.task if self.task is not old else None  # it failed over meanwhile
        self.open(self.last_sequence)

    async def _follow(self, requests: asyncio.Queue[pb.ConverseRequest | None]) -> None:
        async def stream() -> Any:
            while (r := await requests.get()) is not None:
                yield r

        try:
            async for response in await raw_converse(self.client, stream()):
                self.on_event(response.event)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as e:
            self.codes[f"grpc {e.code().name}"] += 1
            self.details[f"grpc {e.code().name}: {e.details()}"] += 1
            requests.put_nowait(None)  # ends the broken call's request reader
            now = time.monotonic()
            self.broken_since = self.broken_since or now
            if resumable(e) and not self.leaving and now - self.broken_since < FAILOVER_GIVE_UP_S:
                await asyncio.sleep(min(FAILOVER_BACKOFF_S * self.tries, FAILOVER_BACKOFF_MAX_S))
                self.fail_over(requests)
            else:
                self.gone = True
        except Exception as e:  # noqa: BLE001 - recorded and reported, the run goes on
            self.codes[f"client {type(e).__name__}"] += 1
            self.gone = True
        else:
            self.gone = self.gone or not self.leaving

    def fail_over(self, unsent: asyncio.Queue[pb.ConverseRequest | None]) -> None:
        """Moves to the next gateway (the same tokens: any gateway takes them) and
        resumes there, as a client behind a load balancer would; the audio the broken
        call did not send, and what was said meanwhile, goes on the new stream."""
        self.tries += 1
        self.failovers.append(time.monotonic())
        self.address = self.gateways[(self.gateways.index(self.address) + 1) % len(self.gateways)]
        self.spare_clients.append(self.client)
        self.client = self.client.through(grpc.aio.insecure_channel(self.address))
        self.open(self.last_sequence)
        while not unsent.empty():
            if (request := unsent.get_nowait()) is not None:
                self.requests.put_nowait(request)

    def on_event(self, event: pb.ConversationEvent) -> None:
        kind, now = event.WhichOneof("kind"), time.monotonic()
        self.tries, self.broken_since = 0, None
        if kind != "heartbeat":  # a heartbeat repeats the last sequence
            if event.sequence <= self.last_sequence:
                self.duplicated += 1
                return
            if event.sequence != self.last_sequence + 1:
                self.out_of_order += 1
            self.last_sequence = event.sequence
        if kind == "processing_started" and event.processing_started.speaker == pb.SPEAKER_SELF:
            self.started_at.setdefault(event.processing_started.utterance_id, now)
        elif kind == "speech_audio":
            self.heard_at.setdefault(event.speech_audio.utterance_id, now)
            self.heard_until[event.speech_audio.utterance_id] = now
        elif kind == "translation" and event.translation.speaker == pb.SPEAKER_PARTNER:
            for covered in event.translation.covers_utterance_ids:
                self.covered[covered] = event.translation.utterance_id
        elif kind == "error":
            self.codes[pb.ErrorCode.Name(event.error.code)] += 1
            if event.error.utterance_id:
                self.failed.setdefault(event.error.utterance_id, now)
            else:
                self.unnamed_errors.append(now)
        elif kind == "session_ended":
            self.gone = True

    async def leave(self, timeout_s: float = 5.0) -> None:
        self.leaving = True
        await super().leave(timeout_s)


def resumable(e: grpc.aio.AioRpcError) -> bool:
    """A stream that broke for want of its server, not for something the client did:
    UNAVAILABLE, or INTERNAL "Internal error from Core" when the client was writing
    audio as the call ended (grpc/grpc#36066 hides the server's UNAVAILABLE then)."""
    return e.code() == grpc.StatusCode.UNAVAILABLE or (
        e.code() == grpc.StatusCode.INTERNAL and "Internal error from Core" in (e.details() or ""))


def speech(language: str, clip_s: float) -> list[tuple[list[bytes], int]]:
    """Each FLEURS clip of `language`: its first `clip_s` seconds then PAUSE_S of silence,
    as 100 ms chunks; and how many of them are speech."""
    step = 2 * RATE_HZ * CHUNK_MS // 1000
    out = []
    for path in sorted((TESTDATA / "speech" / "fleurs").glob(f"fleurs-{language}-*.ogg")):
        samples = audio.decode_file(path, RATE_HZ)[: int(clip_s * RATE_HZ)]
        samples = np.concatenate([samples, np.zeros(int(PAUSE_S * RATE_HZ), np.float32)])
        pcm = audio.float_to_pcm16(samples)
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        spoken = -(-len(samples[: int(clip_s * RATE_HZ)]) * 2 // step)
        # the fakes hear any chunk that is not all zeros as speech: none in the clip is
        out.append(([c if i >= spoken or c.strip(b"\0") else b"\1\0" + c[2:]
                     for i, c in enumerate(chunks)], spoken))
    if not out:
        raise SystemExit(f"no FLEURS clips for {language!r} in {TESTDATA / 'speech' / 'fleurs'}")
    return out


async def talk(person: Person, partner: Person, clips: list[tuple[list[bytes], int]],
               stop: asyncio.Event, offset: int) -> None:
    """Says the clips in turn at real-time pace until `stop`. Asked to resume its stream,
    it does so between clips once its speech became utterances and they were heard or
    reported (RESUME_WAIT_S at most): a dropped stream cancels its own utterances in
    flight, which is not what a resuming client is here to measure."""
    i = offset
    start, sent = time.monotonic(), 0
    while not stop.is_set() and not person.gone:
        chunks, spoken = clips[i % len(clips)]
        i += 1
        for n, chunk in enumerate(chunks):
            await asyncio.sleep(max(0.0, start + sent * CHUNK_MS / 1000 - time.monotonic()))
            person.send(chunk)
            sent += 1
            if n == spoken - 1:
                person.clips.append(time.monotonic())
        if person.resume_wanted:
            deadline = time.monotonic() + RESUME_WAIT_S
            while ((pending(person, partner) or unheard_clips(person))
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.05)
            person.resume_wanted = False
            person.resumed_at.append(time.monotonic())
            await person.resume()
            start, sent = time.monotonic(), 0


def unheard_clips(person: Person) -> int:
    """Clips said that no utterance came of yet (their audio may be queued for a
    recogniser that is restarting)."""
    return max(0, len(person.clips) - len(person.started_at))


def pending(speaker: Person, listener: Person) -> int:
    """The speaker's utterances neither heard by the listener nor reported failed."""
    return sum(resolved(u, speaker, listener) is None for u in speaker.started_at)


async def pair_up(gateways: list[str], index: int, tag: str) -> tuple[Person, Person]:
    """Two people of a new session, each on another gateway."""
    people = []
    for side, language in enumerate(LANGUAGES):
        mine = (index + side) % len(gateways)
        client = await dragoman_client.connect(gateways[mine])
        user = f"chaos-{tag}-{index}-{side}"
        await client.register(user, "bench-password-1", email=f"{user}@example.org", language=language)
        people.append(Person(client, language, gateways=gateways[mine:] + gateways[:mine],
                             address=gateways[mine]))
    a, b = people
    session = await a.client.create_session(a.language)
    await b.client.join_session(session.code, language=b.language)
    for p in people:
        p.session_id = session.id
        p.open()
    return a, b


@dataclass
class Fault:
    role: str
    killed: float
    restarted: float = 0.0
    until: float = float("inf")
    listeners: set[int] | None = None
    """id() of the people whose gateway or session_svc replica it killed: recovery is
    theirs, from the kill."""

    def window(self, t: float) -> bool:
        return self.killed <= t < self.until


def resolved(utt: str, speaker: Person, listener: Person) -> float | None:
    """When the utterance was heard (its first translated audio) or reported failed."""
    times = [t for t in (listener.heard_at.get(utt), listener.heard_at.get(listener.covered.get(utt, "")),
                         speaker.failed.get(utt)) if t is not None]
    return min(times) if times else None


def owned(started: float, done: float | None, faults: list[Fault]) -> float:
    """The time by which an utterance is counted: when it started, or the kill it was
    in flight at (started before, resolved after)."""
    for fault in faults:
        if started < fault.killed and (done is None or done > fault.killed):
            return fault.killed
    return started


def account(pairs: list[tuple[Person, Person]], window: Any, faults: list[Fault]
            ) -> dict[str, Any]:
    """What happened to the utterances counted in `window` (a time predicate; see `owned`)."""
    counts = Counter[str]()
    for people in pairs:
        for speaker, listener in (people, people[::-1]):
            for utt, started in speaker.started_at.items():
                if not window(owned(started, resolved(utt, speaker, listener), faults)):
                    continue
                counts["utterances"] += 1
                heard = utt in listener.heard_at or listener.covered.get(utt) in listener.heard_at
                if heard:
                    counts["heard"] += 1
                elif utt in speaker.failed:
                    counts["reported"] += 1
                else:
                    counts["lost"] += 1
    return {k: counts[k] for k in ("utterances", "heard", "reported", "lost")}


def silent_clips(pairs: list[tuple[Person, Person]]) -> dict[str, int]:
    """Clips said that became no utterance over the run (each became one or more, but
    for audio lost while a recogniser was down), and how many of them errors naming no
    utterance account for. Counted over the whole run: an utterance starts up to a
    restart after its clip, so a fault's window cannot hold both."""
    missing = unnamed = 0
    for person in (p for pair in pairs for p in pair):
        gap = max(0, len(person.clips) - len(person.started_at))
        missing += gap
        unnamed += min(gap, len(person.unnamed_errors))
    return {"clips": sum(len(p.clips) for pair in pairs for p in pair),
            "without_utterance": missing, "reported": unnamed, "lost": missing - unnamed}


def recoveries(pairs: list[tuple[Person, Person]], fault: Fault) -> tuple[list[float], int]:
    """Per session, ms from the restart to the first translated audio heard after it
    (from the kill, by those whose gateway or replica died, for those); and how many
    of the sessions it touched heard none."""
    out, none = [], 0
    since = fault.restarted if fault.listeners is None else fault.killed
    for people in pairs:
        if fault.listeners is not None and not any(id(p) in fault.listeners for p in people):
            continue  # a session the killed replica did not hold
        after = [t for p in people for t in p.heard_at.values()
                 if since <= t < fault.until
                 and (fault.listeners is None or id(p) in fault.listeners)]
        if after:
            out.append((min(after) - since) * 1000)
        else:
            none += 1
    return out, none


async def run(n: int, real: bool, work: Path, settle_s: float, clip_s: float,
              faults_run: tuple[FaultSpec, ...] = FAULTS, down_s: float = DOWN_S
              ) -> dict[str, Any]:
    delays, source = (None, "real engines (settings defaults)") if real else calibrated_delays()
    addresses = {name: free_address() for name in MODELS}
    faults: list[Fault] = []
    pairs: list[tuple[Person, Person]] = []
    startup: dict[str, float] = {}
    setup_s = 0.0
    postgres, redis = Postgres(), Redis(work)
    began = time.monotonic()
    try:
        await asyncio.to_thread(postgres.init)
        await postgres.start()
        await redis.start()
        db_env = database_env(postgres.url)
        children = Children(work / "logs", service_env(addresses, {
            **db_env, **LIMITS_ENV, "DRAGOMAN_AUTH_IDENTITY_KEY": secrets.token_urlsafe(48),
            "DRAGOMAN_AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            "DRAGOMAN_SESSION_MAX_LIVE_SESSIONS": "0", "DRAGOMAN_LIMITS_REDIS_URL": redis.url}))
        replicas = SessionReplicas(children)
        mesh = Mesh(ModelServices(children, addresses, delays), Gateways(children, replicas),
                    postgres, redis)
        try:
            await mesh.models.start()
            await replicas.start()
            await mesh.gateways.start()
            tag = secrets.token_hex(3)
            pairs = [await pair_up(mesh.gateways.addresses, i, tag) for i in range(n)]
            setup_s = time.monotonic() - began
            await converse(pairs, mesh, faults_run, faults, startup, settle_s, clip_s, real,
                           down_s)
        finally:
            for people in pairs:
                for p in people:
                    for client in (p.client, *p.spare_clients):
                        await client.close()
            await children.stop(3.0)
        logs = await stored_logs(postgres.url, SCHEMA)
    finally:
        await redis.stop()
        await postgres.stop()
    result = _result(pairs, faults, startup, n, real, source, delays, setup_s, settle_s, clip_s,
                     down_s)
    result["totals"]["translation_logs"] = journaled(pairs, logs, faults)
    return result


def journaled(pairs: list[tuple[Person, Person]], stored: set[tuple[str, str]],
              faults: list[Fault]) -> dict[str, Any]:
    """How the translations heard compare with the translation logs `stored`
    ((session_id, utterance_id) rows). A log is kept per translation, so per utterance
    a listener heard speech for: one covering others (session.sentence_wait_ms) logs
    them all in one row. Cut off: heard, then reported failed (in flight at a
    replica's kill, they end with no log). Missing: heard, not cut off, not stored,
    each with the kill nearest its last audio and how long before that kill the
    audio came (negative: after it)."""
    heard: dict[tuple[str, str], float] = {}
    cut: set[tuple[str, str]] = set()
    for people in pairs:
        for speaker, listener in (people, people[::-1]):
            for utt in listener.heard_at:
                unit = (speaker.session_id, utt)
                heard[unit] = listener.heard_until[utt]
                covered = [c for c, by in listener.covered.items() if by == utt]
                if any(u in speaker.failed for u in (utt, *covered)):
                    cut.add(unit)
    missing = []
    for unit in sorted(set(heard) - cut - stored):
        last = heard[unit]
        kill = min(faults, key=lambda f: abs(f.killed - last), default=None)
        missing.append({"utterance_id": unit[1], "fault": kill.role if kill else None,
                        "last_audio_before_kill_ms":
                            round((kill.killed - last) * 1000) if kill else None})
    return {"heard": len(heard), "stored": len(stored), "cut_off": len(cut),
            "missing": missing, "not_heard": len(stored - set(heard))}


def database_env(url: str) -> dict[str, str]:
    """DRAGOMAN_DATABASE_* of the mesh: the run's own PostgreSQL (gone with it)."""
    return {"DRAGOMAN_DATABASE_URL": url, "DRAGOMAN_DATABASE_SCHEMA": SCHEMA,
            "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": crypto.new_key_entry("chaos"),
            "DRAGOMAN_DATABASE_POOL_MAX_SIZE": "8"}


async def stored_logs(url: str, schema: str) -> set[tuple[str, str]]:
    """(session_id, utterance_id) of the translation logs session_svc wrote."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT session_id, utterance_id FROM {}.translation_logs").format(
                sql.Identifier(schema)))
        return {(str(a), str(b)) for a, b in await cur.fetchall()}


async def converse(pairs: list[tuple[Person, Person]], mesh: Mesh,
                   faults_run: tuple[FaultSpec, ...], faults: list[Fault],
                   startup: dict[str, float], settle_s: float, clip_s: float, real: bool,
                   down_s: float = DOWN_S) -> None:
    """The sessions talk while each fault of `faults_run` happens in turn (recorded in
    `faults`, restart times in `startup`); then they finish what was said and leave."""
    clips = {lang: speech(lang, clip_s) for lang in LANGUAGES}
    stop = asyncio.Event()
    talkers = [asyncio.create_task(talk(p, other, clips[p.language], stop, i))
               for i, (a, b) in enumerate(pairs) for p, other in ((a, b), (b, a))]
    await asyncio.sleep(WARMUP_S)
    for spec in faults_run:
        target = spec.target(mesh)
        fault = Fault(spec.name, time.monotonic())
        if faults:
            faults[-1].until = fault.killed
        faults.append(fault)
        if target.gateway:  # its clients fail over: recovery counts from the kill
            fault.listeners = {id(p) for pair in pairs for p in pair
                               if p.address == target.gateway}
        elif target.sessions_of:  # the creator's own gateway created the session
            fault.listeners = {id(p) for pair in pairs for p in pair
                               if pair[0].gateways[0] == target.sessions_of}
        await target.kill()
        sys.stderr.write(f"killed {spec.name}\n")
        if target.restart is None:  # for good: clients resume on the replica taking over
            fault.restarted = time.monotonic()
            await asyncio.sleep(settle_s)
            continue
        for _, listener in pairs:  # they resume while the process is down
            listener.resume_wanted = True
        await asyncio.sleep(max(0.0, fault.killed + down_s - time.monotonic()))
        fault.restarted = time.monotonic()
        startup[spec.name] = round(await target.restart() * 1000)
        sys.stderr.write(f"restarted {spec.name} ({startup[spec.name]} ms to ready)\n")
        await asyncio.sleep(settle_s)
    stop.set()
    await asyncio.gather(*talkers)
    if faults:
        faults[-1].until = time.monotonic()
    await drain(pairs, DRAIN_S * (3 if real else 1))  # real engines may lag behind
    for people in pairs:
        await asyncio.gather(*(p.leave() for p in people))


async def drain(pairs: list[tuple[Person, Person]], timeout_s: float) -> None:
    """Waits until every utterance started was heard or reported (or `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(pending(a, b) or pending(b, a) for a, b in pairs):
            return
        await asyncio.sleep(0.2)


def _result(pairs: list[tuple[Person, Person]], faults: list[Fault], startup: dict[str, float],
            n: int, real: bool, source: str, delays: Delays | None, setup_s: float,
            settle_s: float, clip_s: float, down_s: float = DOWN_S) -> dict[str, Any]:
    people = [p for pair in pairs for p in pair]
    rows = []
    first = faults[0].killed if faults else float("inf")
    baseline = account(pairs, lambda t: t < first, faults)
    for i, fault in enumerate(faults):
        times, none = recoveries(pairs, fault)
        rows.append({
            "fault": (f"{fault.role} SIGKILL + restart" if fault.role in startup
                      else f"{fault.role} SIGKILL (1 of {GATEWAYS}, taken over)"),
            **account(pairs, fault.window, faults),
            "recovery": summary(times),
            "sessions_without_recovery": none,
            "startup_ms": startup.get(fault.role),
            "down_ms": round((fault.restarted - fault.killed) * 1000),
            "index": i,
        })
    all_recoveries = [t for f in faults for t in recoveries(pairs, f)[0]]
    sessions_ended = sum(any(p.gone for p in pair) for pair in pairs)
    codes, details = Counter[str](), Counter[str]()
    for p in people:
        codes.update(p.codes)
        details.update(p.details)
    clips = silent_clips(pairs)
    totals = {
        "lost": baseline["lost"] + sum(r["lost"] for r in rows) + clips["lost"],
        "reported": baseline["reported"] + sum(r["reported"] for r in rows) + clips["reported"],
        "heard": baseline["heard"] + sum(r["heard"] for r in rows),
        "duplicated": sum(p.duplicated for p in people),
        "out_of_order": sum(p.out_of_order for p in people),
        "sessions_ended": sessions_ended,
        "failovers": sum(len(p.failovers) for p in people),
        "recovery_p95_ms": percentile(all_recoveries, 95),
    }
    return {
        "benchmark": "chaos",
        "machine": machine(),
        "sessions": n,
        "engines": "real" if real else f"calibrated fakes ({source})",
        "delays": None if delays is None else dataclasses.asdict(delays),
        "method": (f"N two-party sessions through the gateway, both people saying {clip_s:g} s "
                   f"of FLEURS speech then {PAUSE_S:g} s of silence, over and over; after "
                   f"{WARMUP_S:g} s each process in turn gets SIGKILL (a model service, one "
                   f"of {GATEWAYS} gateways, a private PostgreSQL, a private Redis), stays dead "
                   f"{down_s:g} s and starts again on its address, then {settle_s:g} s pass; "
                   "every listener resumes its stream once per fault while the process is "
                   "down; a stream broken with UNAVAILABLE resumes on the next gateway; "
                   f"last, the second of {GATEWAYS} session_svc replicas gets SIGKILL for good "
                   f"(session.handover_after_ms={HANDOVER_AFTER_MS}) and {settle_s:g} s pass"),
        "setup_s": round(setup_s, 1),
        "baseline": baseline,
        "clips": clips,
        "faults": rows,
        "not_run": list(NOT_RUN),
        "status_codes": dict(sorted(codes.items())),
        "broken_streams": dict(sorted(details.items())),
        "totals": totals,
    }


def summary_line(result: dict[str, Any]) -> str:
    t = result["totals"]
    p95 = t["recovery_p95_ms"]
    return (f"lost={t['lost']} duplicated={t['duplicated']} sessions_ended={t['sessions_ended']} "
            f"recovery_p95_ms={'none' if p95 is None else round(p95)}")


def journal_line(logs: dict[str, Any] | None) -> str:
    """The report's line on translation logs (older results have none)."""
    if not logs:
        return "translation logs: not counted"
    if "missing" not in logs:  # counted before translations were matched to logs by id
        return (f"translation logs stored {logs['stored']} of {logs['heard']} utterances heard, "
                f"{logs['cut_off']} of them cut off by a replica's kill")
    missing = logs["missing"]
    said = (f"translation logs stored {logs['stored']} of {logs['heard']} translations heard "
            f"({logs['not_heard']} stored for none heard), {logs['cut_off']} cut off by a "
            f"replica's kill, missing {len(missing)}")
    return said + "".join(f"; {m['utterance_id']} at the {m['fault']} kill, its last audio "
                          f"{m['last_audio_before_kill_ms']} ms before it" for m in missing)


def report(result: dict[str, Any]) -> str:
    rows = []
    for r in result["faults"]:
        rows.append([r["fault"], r["utterances"], r["heard"], r["reported"], r["lost"],
                     r["recovery"]["p50_ms"], r["recovery"]["p95_ms"],
                     r["sessions_without_recovery"], r["startup_ms"]])
    for name in result["not_run"]:
        rows.append([f"{name}: not run", "", "", "", "", "", "", "", ""])
    t, b, c = result["totals"], result["baseline"], result["clips"]
    m = result["machine"]
    return "\n".join([
        f"{result['sessions']} sessions, engines: {result['engines']}; load average "
        f"{m['load_average']} on {m['cpu_count']} cores",
        f"before the first fault: {b['utterances']} utterances, {b['heard']} heard, "
        f"{b['reported']} reported, {b['lost']} lost",
        table(["fault", "utterances", "heard", "reported", "lost", "recovery p50 ms",
               "recovery p95 ms", "sessions not recovered", "restart to SERVING ms"], rows),
        f"clips said: {c['clips']}; {c['without_utterance']} became no utterance, "
        f"{c['reported']} of them reported by an error naming none",
        f"duplicated {t['duplicated']}, out of order {t['out_of_order']} (at clients that "
        f"resumed); sessions ended {t['sessions_ended']}; streams moved to another gateway "
        f"{t['failovers']}",
        journal_line(t.get("translation_logs")),
        "status codes seen: " + (", ".join(f"{k} x{v}" for k, v in result["status_codes"].items())
                                 or "none"),
    ])


READING = """\
How to read it:
- reported: utterances the speaker was told of with a ConversationError naming them
  (ERROR_CODE_SERVICE_UNAVAILABLE). At an stt_svc crash, session_svc sends the audio
  not yet recognised in full to a new stream once stt_svc is back, and holds new
  audio for it meanwhile (RECOGNITION_WAIT_S in session_svc/downstream.py); a
  translation or synthesis that found its service down is sent again once it is
  back. So a restart within those waits costs delay, not utterances.
- recovery = the restart of the killed process (start to SERVING, mostly Python
  starting up on a busy machine) + the time until session_svc's channel is
  connected again (reconnect backoff 0.1 to 1 s, rpc.RECONNECT_BACKOFF_MS) and the
  next utterance is heard. For the gateway it is from the kill to the first audio
  heard by those whose gateway died (they resume on the other one at once); for
  PostgreSQL and Redis, which the conversation does not wait on, it is only the
  wait for the next utterance after the restart.
- gateway: the two people of a session are on different gateways; a speaker whose
  stream broke has what they had said finished for the listener (session_svc
  finishes a dropped stream's pipeline); audio the broken call had not sent, and
  what is said while reconnecting, goes on the new stream.
- PostgreSQL: a private cluster, SIGKILLed with all its backends and started again
  (crash recovery). No conversation event waits on it: the gateways take a
  login's standing answer up to 60 s old while it is down (gateway.auth), pooled
  connections are checked as lent, and translation logs are tried again for 30 s;
  "translation logs stored" counts what reached it.
- Redis: a private redis-server holding the gateways' shared rate limits; while it
  is down the limits let calls through (with a warning) and no call fails.
- duplicated / out of order: at listeners that dropped their stream and resumed
  with resume_after_sequence while the service was down.
- session_svc replica: its streams end UNAVAILABLE (or INTERNAL "Internal error
  from Core", grpc/grpc#36066, when the client was writing as the call ended);
  clients open them again, gateway after gateway, with resume_after_sequence and
  get UNAVAILABLE until the other replica takes the session over, once the lease
  is HANDOVER_AFTER_MS old (docs/handover.md). reported: the utterances in flight
  at the kill (ERROR_CODE_REPLICA_LOST naming them; "cut off" when their first
  translated audio had been heard already: they are counted heard, and no
  translation log is written of them); recovery: from the kill to the first
  translated audio heard, over the sessions the killed replica held.
- translation logs: matched to the translations heard by (session, utterance id),
  one per translation (one covering several utterances logs them in one row).
  Missing: heard, not cut off, and not stored. The hand-over writer stores an
  event tail only after the journal's pending logs, so an utterance the adopter
  counts as ended has its log, even when the replica dies inside the journal's
  linger (tests/session_svc/test_handover.py)."""


def markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        "# bench.chaos: a process of the mesh dies mid-conversation", "",
        f"Command: `{result['command']}`", "",
        f"Method: {result['method']}.", "",
        "```", report(result), summary_line(result), "```", "",
        READING, "",
    ])


def faults_arg(text: str) -> tuple[FaultSpec, ...]:
    """argparse type of --faults."""
    by_name = {f.name.lower(): f for f in FAULTS}
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown) or '(none)'}; known: {', '.join(by_name)}")
    return tuple(by_name[name] for name in names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--real", action="store_true", help="the real services, not the fakes")
    parser.add_argument("--smoke", action="store_true",
                        help="2 sessions, short clips and settling (the test suite's run)")
    parser.add_argument("--faults", type=faults_arg, default=FAULTS,
                        help="comma-separated, of " + ",".join(f.name for f in FAULTS)
                        + " (default: all, in that order)")
    parser.add_argument("--down-s", type=float, default=DOWN_S,
                        help=f"how long a killed process stays dead (default {DOWN_S:g})")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args(argv)
    n = 2 if args.smoke else args.sessions
    settle_s = 4.0 if args.smoke else SETTLE_S
    clip_s = 1.5 if args.smoke else CLIP_S
    with tempfile.TemporaryDirectory(prefix="dragoman-chaos-") as tmp:
        result = asyncio.run(run(n, args.real, args.logs or Path(tmp), settle_s, clip_s,
                                 args.faults, args.down_s))
    result["not_run"] = [*NOT_RUN, *(f.name for f in FAULTS if f not in args.faults)]
    result["smoke"] = args.smoke
    result["command"] = shlex.join(["python", "-m", "bench.chaos", *(argv or sys.argv[1:])])
    publish("chaos", result, args.out, markdown(result), report(result), summary_line(result))


if __name__ == "__main__":
    main()
