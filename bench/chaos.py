"""Fault injection: what people in a conversation see when a model service dies.

Starts the mesh on loopback, each service its own process: stt_svc, mt_svc
and tts_svc as calibrated fakes (bench.fakes, stage times as bench.load
takes them) or, with --real, the real services with their default engines;
session_svc and the gateway real, on a scratch PostgreSQL schema. N
two-party sessions talk through the gateway: both people say FLEURS speech
at real-time pace (the first CLIP_S seconds of a clip, then PAUSE_S of
silence: one utterance), over and over. Meanwhile stt_svc, mt_svc and
tts_svc are in turn killed with SIGKILL, kept dead DOWN_S and started again
on the same address; every listener reconnects once per fault, while the
service is down, resuming after the last event it received.

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
  first translated audio heard after it, p50/p95; the restart itself,
  process start to SERVING as a poll of its health sees it (up to a
  reconnect backoff late), is `startup_ms`;
- the status codes clients saw: ConversationError codes and gRPC status
  codes of broken streams.

session_svc runs as two replicas on one database (each records the
sessions it holds; the gateway routes to the holder): the sessions of odd
pairs are created on the second one (through a second gateway), and
everyone talks through the first gateway. The last fault SIGKILLs the
second replica for good: the first takes its sessions over
(session_svc.handover), clients whose stream broke resume on their own,
and its recovery is from the kill, over the pairs it held.

Faults of a gateway, PostgreSQL and Redis are not injected here: they are
listed as not run.

    python -m bench.chaos [--sessions 20] [--real] [--smoke] [--out DIR]

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.common import (
    TESTDATA,
    Child,
    Children,
    Participant,
    free_address,
    machine,
    percentile,
    publish,
    scratch_database,
    service_env,
    summary,
    table,
)
from bench.fakes import Delays
from bench.load import LIMITS_ENV, calibrated_delays
from dragoman import audio
from dragoman.client import Client, join_request
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
REPLICA = "session_svc replica"
"""The fault that SIGKILLs the second session_svc replica, after the model services'."""
FAULTS = (*MODELS, REPLICA)
HANDOVER_AFTER_MS = 1500
"""session.handover_after_ms of the replicas: how soon a silent one's sessions move."""
RESUME_BACKOFF_S, RESUME_GIVE_UP_S = 0.2, 30.0
"""A client whose stream broke UNAVAILABLE opens it again after this, until that long passed."""
NOT_RUN = ("gateway replica", "PostgreSQL", "Redis")
"""Faults of the issue this bench does not inject yet."""
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
        """SIGKILL, and waits until the process is gone."""
        popen = self.processes[role].popen
        popen.send_signal(signal.SIGKILL)
        while popen.poll() is None:
            await asyncio.sleep(0.01)

    async def restart(self, role: str, timeout_s: float = 600.0) -> float:
        """Starts `role` again on its address; returns once it serves, the seconds that took."""
        started = time.monotonic()
        await self.children.wait_serving(self.spawn(role), timeout_s)
        return time.monotonic() - started


class SessionReplicas:
    """Two session_svc replicas on one database, each its own process, each recording
    the sessions it holds at its address; the second can be killed for good."""

    def __init__(self, children: Children, addresses: dict[str, str]) -> None:
        self.children, self.addresses = children, addresses
        self.processes: dict[str, Child] = {}

    async def start(self) -> None:
        for name in ("session", "session2"):
            address = self.addresses[name]
            self.processes[name] = self.children.spawn(name, ["-m", "session_svc.server"], address, {
                "DRAGOMAN_ADDRESSES_SESSION": address,
                "DRAGOMAN_SESSION_ADVERTISE_ADDRESS": address,
                "DRAGOMAN_SESSION_HANDOVER_AFTER_MS": str(HANDOVER_AFTER_MS)})
        for child in self.processes.values():
            await self.children.wait_serving(child)

    async def kill(self) -> None:
        popen = self.processes["session2"].popen
        popen.send_signal(signal.SIGKILL)
        while popen.poll() is None:
            await asyncio.sleep(0.01)


@dataclass
class Person(Participant):
    """One participant: says clips, hears the partner, resumes its stream on demand."""

    session_id: str = ""
    last_sequence: int = 0
    started_at: dict[str, float] = field(default_factory=dict)
    """Own utterances: when processing started (time.monotonic())."""
    heard_at: dict[str, float] = field(default_factory=dict)
    """Partner's utterances: when their first translated audio arrived."""
    covered: dict[str, str] = field(default_factory=dict)
    """Partner's utterance -> the utterance whose translation covers it."""
    failed: dict[str, float] = field(default_factory=dict)
    """Own utterances reported failed -> when."""
    unnamed_errors: list[float] = field(default_factory=list)
    """When errors naming no utterance came."""
    clips: list[float] = field(default_factory=list)
    """When each clip's speech ended (time.monotonic())."""
    codes: Counter[str] = field(default_factory=Counter)
    duplicated: int = 0
    out_of_order: int = 0
    gone: bool = False
    """The session ended or the stream broke."""
    leaving: bool = False
    resume_wanted: bool = False
    """Resume the stream at the end of the clip being said (see `talk`)."""
    resumed_at: list[float] = field(default_factory=list)
    broken_since: float | None = None
    """When its stream broke UNAVAILABLE, until it is open again (it resumes on its own)."""

    def open(self, resume_after: int = 0) -> None:
        """Opens the conversation stream, resuming after `resume_after` if not 0."""
        self.requests = asyncio.Queue()
        self.requests.put_nowait(join_request(self.session_id, RATE_HZ, resume_after=resume_after))
        self.task = asyncio.create_task(self._follow(self.requests))

    async def resume(self) -> None:
        """Drops the stream and opens another, resuming after the last event received."""
        old = self.task  # cancelled, not half-closed: a half-close would say "leave"
        if old is not None:
            old.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old
        self.open(self.last_sequence)

    async def _follow(self, requests: asyncio.Queue[pb.ConverseRequest | None]) -> None:
        async def stream() -> Any:
            while (r := await requests.get()) is not None:
                yield r

        try:
            async for response in self.client.converse(stream()):
                self.on_event(response.event)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as e:
            self.codes[f"grpc {e.code().name}"] += 1
            now = time.monotonic()
            if resumable(e) and not self.leaving and (
                    self.broken_since is None or now - self.broken_since < RESUME_GIVE_UP_S):
                # its session_svc replica stopped: another takes the session over
                self.broken_since = self.broken_since or now
                await asyncio.sleep(RESUME_BACKOFF_S)
                unsent = self.requests
                self.open(self.last_sequence)
                while not unsent.empty():  # audio said meanwhile goes on the new stream
                    if (request := unsent.get_nowait()) is not None:
                        self.requests.put_nowait(request)
                return
            self.gone = True
        except Exception as e:  # noqa: BLE001 - recorded and reported, the run goes on
            self.codes[f"client {type(e).__name__}"] += 1
            self.gone = True
        else:
            self.gone = self.gone or not self.leaving

    def on_event(self, event: pb.ConversationEvent) -> None:
        kind, now = event.WhichOneof("kind"), time.monotonic()
        self.broken_since = None
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


async def pair_up(gateway: str, index: int, tag: str,
                  creator_gateway: str = "") -> tuple[Person, Person]:
    """Two people talking through `gateway`, in a session created through
    `creator_gateway` (its replica holds it), by default the same."""
    people = []
    for side, language in enumerate(LANGUAGES):
        client = Client(gateway)
        user = f"chaos-{tag}-{index}-{side}"
        await client.register(user, f"{user}@example.org", "bench-password-1", language)
        people.append(Person(client, language))
    a, b = people
    async with Client(creator_gateway or gateway) as creator:
        creator.tokens = a.client.tokens
        session = await creator.create_session(a.language)
    await b.client.join_session(session.code, b.language)
    for p in people:
        p.session_id = session.session_id
        p.open()
    return a, b


@dataclass
class Fault:
    role: str
    killed: float
    restarted: float = 0.0
    until: float = float("inf")

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
    """Per session, ms from the restart to the first translated audio heard after it;
    and how many sessions heard none."""
    out, none = [], 0
    for people in pairs:
        after = [t for p in people for t in p.heard_at.values()
                 if fault.restarted <= t < fault.until]
        if after:
            out.append((min(after) - fault.restarted) * 1000)
        else:
            none += 1
    return out, none


async def run(n: int, real: bool, work: Path, settle_s: float, clip_s: float,
              chosen: tuple[str, ...] = FAULTS) -> dict[str, Any]:
    delays, source = (None, "real engines (settings defaults)") if real else calibrated_delays()
    addresses = {name: free_address()
                 for name in ("gateway", "gateway2", "session", "session2", *MODELS)}
    faults: list[Fault] = []
    pairs: list[tuple[Person, Person]] = []
    startup: dict[str, float] = {}
    setup_s = 0.0
    with scratch_database("chaos") as db_env:
        children = Children(work / "logs", service_env(addresses, {
            **db_env, **LIMITS_ENV, "DRAGOMAN_AUTH_IDENTITY_KEY": secrets.token_urlsafe(48),
            "DRAGOMAN_AUTH_JWT_SECRET": secrets.token_urlsafe(48),  # two gateways, one sign-in
            "DRAGOMAN_SESSION_MAX_LIVE_SESSIONS": "0"}))
        models = ModelServices(children, addresses, delays)
        try:
            began = time.monotonic()
            await models.start()
            replicas = SessionReplicas(children, addresses)
            await replicas.start()
            for gateway, replica in (("gateway", "session"), ("gateway2", "session2")):
                await children.wait_serving(children.spawn(
                    gateway, ["-m", "gateway.server"], addresses[gateway],
                    {"DRAGOMAN_ADDRESSES_GATEWAY": addresses[gateway],
                     "DRAGOMAN_ADDRESSES_SESSION": addresses[replica]}))
            tag = secrets.token_hex(3)
            # odd pairs' sessions on the second replica; everyone talks through the first gateway
            pairs = [await pair_up(addresses["gateway"], i, tag,
                                   addresses["gateway2"] if i % 2 else "") for i in range(n)]
            setup_s = time.monotonic() - began
            clips = {lang: speech(lang, clip_s) for lang in LANGUAGES}
            stop = asyncio.Event()
            talkers = [asyncio.create_task(talk(p, other, clips[p.language], stop, i))
                       for i, (a, b) in enumerate(pairs) for p, other in ((a, b), (b, a))]
            await asyncio.sleep(WARMUP_S)
            for role in chosen:
                fault = Fault(role, time.monotonic())
                if faults:
                    faults[-1].until = fault.killed
                faults.append(fault)
                if role == REPLICA:  # for good: clients resume on the replica taking over
                    await replicas.kill()
                    fault.restarted = time.monotonic()
                    sys.stderr.write(f"killed {role}\n")
                    await asyncio.sleep(settle_s)
                    continue
                await models.kill(role)
                sys.stderr.write(f"killed {role}\n")
                for _, listener in pairs:  # they resume while the service is down
                    listener.resume_wanted = True
                await asyncio.sleep(max(0.0, fault.killed + DOWN_S - time.monotonic()))
                fault.restarted = time.monotonic()
                startup[role] = round(await models.restart(role) * 1000)
                sys.stderr.write(f"restarted {role} ({startup[role]} ms to SERVING)\n")
                await asyncio.sleep(settle_s)
            stop.set()
            await asyncio.gather(*talkers)
            faults[-1].until = time.monotonic()
            await drain(pairs, DRAIN_S * (3 if real else 1))  # real engines may lag behind
            for people in pairs:
                await asyncio.gather(*(p.leave() for p in people))
        finally:
            for people in pairs:
                for p in people:
                    await p.client.channel.close()
            await children.stop(3.0)
    return _result(pairs, faults, startup, n, real, source, delays, setup_s, settle_s, clip_s)


async def drain(pairs: list[tuple[Person, Person]], timeout_s: float) -> None:
    """Waits until every utterance started was heard or reported (or `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(pending(a, b) or pending(b, a) for a, b in pairs):
            return
        await asyncio.sleep(0.2)


def _result(pairs: list[tuple[Person, Person]], faults: list[Fault], startup: dict[str, float],
            n: int, real: bool, source: str, delays: Delays | None, setup_s: float,
            settle_s: float, clip_s: float) -> dict[str, Any]:
    people = [p for pair in pairs for p in pair]
    rows = []
    first = faults[0].killed if faults else float("inf")
    baseline = account(pairs, lambda t: t < first, faults)
    for i, fault in enumerate(faults):
        # a replica's loss touches the pairs it held (the odd ones), from the kill
        times, none = recoveries(pairs[1::2] if fault.role == REPLICA else pairs, fault)
        rows.append({
            "fault": (f"{fault.role} SIGKILL (1 of 2, taken over)" if fault.role == REPLICA
                      else f"{fault.role} SIGKILL + restart"),
            **account(pairs, fault.window, faults),
            "recovery": summary(times),
            "sessions_without_recovery": none,
            "startup_ms": startup.get(fault.role),
            "down_ms": round((fault.restarted - fault.killed) * 1000),
            "index": i,
        })
    all_recoveries = [t for f in faults for t in recoveries(
        pairs[1::2] if f.role == REPLICA else pairs, f)[0]]
    sessions_ended = sum(any(p.gone for p in pair) for pair in pairs)
    codes = Counter[str]()
    for p in people:
        codes.update(p.codes)
    clips = silent_clips(pairs)
    totals = {
        "lost": baseline["lost"] + sum(r["lost"] for r in rows) + clips["lost"],
        "reported": baseline["reported"] + sum(r["reported"] for r in rows) + clips["reported"],
        "duplicated": sum(p.duplicated for p in people),
        "out_of_order": sum(p.out_of_order for p in people),
        "sessions_ended": sessions_ended,
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
                   f"{WARMUP_S:g} s each model service in turn gets SIGKILL, stays dead "
                   f"{DOWN_S:g} s and starts again on its address, then {settle_s:g} s pass; "
                   "every listener resumes its stream once per fault while the service is down; "
                   "then the second of two session_svc replicas gets SIGKILL for good "
                   f"(session.handover_after_ms={HANDOVER_AFTER_MS}) and {settle_s:g} s pass"),
        "setup_s": round(setup_s, 1),
        "baseline": baseline,
        "clips": clips,
        "faults": rows,
        "not_run": list(NOT_RUN),
        "status_codes": dict(sorted(codes.items())),
        "totals": totals,
    }


def summary_line(result: dict[str, Any]) -> str:
    t = result["totals"]
    p95 = t["recovery_p95_ms"]
    return (f"lost={t['lost']} duplicated={t['duplicated']} sessions_ended={t['sessions_ended']} "
            f"recovery_p95_ms={'none' if p95 is None else round(p95)}")


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
        f"resumed); sessions ended {t['sessions_ended']}",
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
  next utterance is heard.
- duplicated / out of order: at listeners that dropped their stream and resumed
  with resume_after_sequence while the service was down.
- session_svc replica: its streams end UNAVAILABLE; clients open them again every
  RESUME_BACKOFF_S with resume_after_sequence (audio said meanwhile goes on the new
  stream) and get UNAVAILABLE until the other replica takes the session over, once
  the lease is HANDOVER_AFTER_MS old (docs/handover.md). reported: the utterances in
  flight at the kill (ERROR_CODE_REPLICA_LOST naming them); recovery: from the kill
  to the first translated audio heard, over the sessions the killed replica held."""


def markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        "# bench.chaos: a service dies mid-conversation", "",
        f"Command: `{result['command']}`", "",
        f"Method: {result['method']}.", "",
        "```", report(result), summary_line(result), "```", "",
        READING, "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--real", action="store_true", help="the real services, not the fakes")
    parser.add_argument("--smoke", action="store_true",
                        help="2 sessions, short clips and settling (the test suite's run)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS),
                        help="the faults to inject, in this order (default: all)")
    args = parser.parse_args(argv)
    n = 2 if args.smoke else args.sessions
    settle_s = 4.0 if args.smoke else SETTLE_S
    clip_s = 1.5 if args.smoke else CLIP_S
    with tempfile.TemporaryDirectory(prefix="dragoman-chaos-") as tmp:
        result = asyncio.run(run(n, args.real, Path(tmp), settle_s, clip_s, tuple(args.faults)))
    result["smoke"] = args.smoke
    result["command"] = shlex.join(["python", "-m", "bench.chaos", *(argv or sys.argv[1:])])
    publish("chaos", result, args.out, markdown(result), report(result), summary_line(result))


if __name__ == "__main__":
    main()
