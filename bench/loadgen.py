"""Load generator for the public API: N sessions talking at real-time pace.

Registers a small pool of users, puts them into N sessions of
`--participants` people (two by default; CreateSession, then JoinSession with
the code), opens every participant's Converse stream and streams 100 ms
LINEAR16 chunks at 16 kHz in real time for `--duration` seconds. The
participants take turns: in each period each speaks `--speech-s` seconds
(low-level noise) in turn while the others send silence, so every stream
carries 10 chunks/s as a live microphone would. They speak `--languages` in
turn (host first). Each measured utterance gives:

- client latency: last speech chunk sent -> first translated audio chunk
  received, by each listener of another language (same process clock), and
- the server's per-stage latency from ProcessingEnded.

It is bounded (at most 2000 sessions of at most 8, for an hour: bench.soak
runs 30 min) and talks only to loopback unless --allow-remote is given.
With real engines, noise is not speech: point
it at a mesh whose STT treats non-zero audio as speech (bench.fakes), or
expect few utterances. It registers two users per pair of its pool (up to 8
pairs) from one address: a gateway started by hand allows 10 a hour
(DRAGOMAN_LIMITS_REGISTRATIONS_PER_HOUR; bench.load lifts it).

With --session-svc ADDRESS instead of --gateway it stands where a gateway
replica stands: it calls session_svc directly over trunks (as the gateway's
router does) and signs each caller's identity assertion with the settings'
auth.identity_key (as a gateway does; dragoman.assertion), so that
session_svc alone can be loaded without a gateway sharing its cores; its
trunks linger --trunk-linger-ms for company, as a gateway's do
(DRAGOMAN_TRUNK_LINGER_MS).

    python -m bench.loadgen --gateway 127.0.0.1:50051 --sessions 10 --duration 30
    python -m bench.loadgen --session-svc 127.0.0.1:50052 --sessions 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import json
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dragoman_client
import grpc
import numpy as np

from bench.common import Participant, latency_ms, linger_ms, stage_summary, summary, table
from dragoman import config, mux, rpc
from dragoman.assertion import Assertions
from dragoman.errors import DragomanError

RATE_HZ = 16_000
CHUNK_MS = 100
MAX_SESSIONS = 2000
MAX_PARTICIPANTS = 8
MAX_DURATION_S = 3600.0
SETUP_CONCURRENCY = 16
DRAIN_S = 3.0
SETUP_TIMEOUT_S = 60.0


@functools.cache
def _chunk(speech: bool, chunk_ms: int = CHUNK_MS) -> bytes:
    n = RATE_HZ * chunk_ms // 1000
    if not speech:
        return bytes(2 * n)
    noise = np.random.default_rng(7).normal(0, 1200, n).clip(-32000, 32000).astype("<i2")
    noise[noise == 0] = 1
    return noise.tobytes()


class GatewayStandIn(dragoman_client.Client):
    """A caller of session_svc as the gateway calls it: no tokens, an identity
    assertion signed with the key gateways and session_svc share. For loading
    session_svc on its own."""

    username = ""
    assertions: Assertions | None = None

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.assertions is None:
            raise RuntimeError("GatewayStandIn needs the assertions of auth.identity_key")
        return self.assertions.metadata(self.user_id, self.username)

    async def register(self, username: str, password: str, *, email: str, language: str = "en") -> str:
        self.user_id, self.username = f"u-{username}", username
        return self.user_id

    async def refresh(self) -> None:
        """Nothing to refresh: each call is signed afresh."""


@dataclass
class Party:
    """One session: who created it (speaker prefix 1), then who joined, in order (2, 3, ...)."""

    session: dragoman_client.Session
    """The host's."""
    people: list[Participant]
    speech_end_sent: dict[str, float] = field(default_factory=dict)  # utterance id -> time
    send_lag_ms: list[float] = field(default_factory=list)


@dataclass
class Options:
    gateway: str = "127.0.0.1:50051"
    sessions: int = 10
    duration_s: float = 30.0
    speech_s: float = 2.0
    users: int = 0
    channels: int = 4
    languages: tuple[str, ...] = ("en", "es")
    """What the participants speak, in turn: the host the first."""
    participants: int = 2
    """People in each session."""
    drain_s: float = DRAIN_S
    """Silence sent after the last utterance so it can be delivered before leaving."""
    ready_file: Path | None = None
    """Touched when the sessions are set up and talking starts."""
    chunk_ms: int = CHUNK_MS
    """Audio per message."""
    session_svc: bool = False
    """`gateway` is a session_svc: call it as a gateway does (see `GatewayStandIn`)."""
    trunk_linger_ms: float = mux.LINGER_S * 1000
    """With `session_svc`: how long audio waits on the trunks for company."""
    assertions: Assertions | None = None
    """With `session_svc`: signs the callers' identity (the settings' auth.identity_key)."""


def check_target(address: str, allow_remote: bool) -> None:
    host = address.rsplit(":", 1)[0].strip("[]")
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"{address} is not loopback: pass --allow-remote to load a deployment")


def languages_of(opts: Options) -> list[str]:
    """What each participant of a session speaks: `opts.languages` in turn, host first."""
    return [opts.languages[k % len(opts.languages)] for k in range(opts.participants)]


async def _setup(opts: Options, channels: list[grpc.aio.Channel]) -> tuple[list[Party], list[str]]:
    users = opts.users or min(opts.sessions, 8)
    tag = secrets.token_hex(4)
    langs = languages_of(opts)
    pool: list[list[dragoman_client.Client]] = []
    errors: list[str] = []

    async def register(i: int) -> None:
        group = []
        for k, lang in enumerate(langs):
            side = "ab"[k] if opts.participants == 2 else str(k)  # the two-party names as before
            kind = GatewayStandIn if opts.session_svc else dragoman_client.Client
            c = kind(channels[(opts.participants * i + k) % len(channels)])
            if isinstance(c, GatewayStandIn):
                c.assertions = opts.assertions
            await c.register(f"load-{tag}-{i}{side}", "load-password-123",
                             email=f"load-{tag}-{i}{side}@example.org", language=lang)
            group.append(c)
        pool.append(group)

    await asyncio.gather(*(register(i) for i in range(users)))
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    parties: list[Party] = []

    async def gather_party(i: int) -> None:
        host, *guests = pool[i % len(pool)]
        async with gate:
            try:
                created = await host.create_session(langs[0])
                for guest, lang in zip(guests, langs[1:], strict=True):
                    await guest.join_session(created.code, language=lang)
            except dragoman_client.DragomanError as e:
                errors.append(f"setup: {e.code.name}: {e.message}")
                return
        people = [Participant(c, lang) for c, lang in zip(pool[i % len(pool)], langs, strict=True)]
        for person in people:
            person.connect(created.id, RATE_HZ)
        parties.append(Party(created, people))

    await asyncio.gather(*(gather_party(i) for i in range(opts.sessions)))
    return parties, errors


async def _talk(party: Party, opts: Options, start: float, stop: float) -> None:
    """Every stream at real time; in each period the participants speak in turn (of two: the
    host in the first half, the other in the second).

    Each pair's clock starts at a random point of the first chunk period, as
    microphones that were opened at different times do: a load generator
    sending every stream's chunk at the same instant would measure its own
    bursts, not the mesh."""
    speech, silence = _chunk(True, opts.chunk_ms), _chunk(False, opts.chunk_ms)
    start += random.uniform(0.0, opts.chunk_ms / 1000)
    per_turn = round(opts.speech_s * 1000 / opts.chunk_ms)
    period = len(party.people) * per_turn
    phase = random.randrange(period)
    counts = [0] * len(party.people)
    i = 0
    while True:
        due = start + i * opts.chunk_ms / 1000
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        party.send_lag_ms.append(max(0.0, time.monotonic() - due) * 1000)
        speaking = due < stop
        slot = (i + phase) % period
        turn, at = divmod(slot, per_turn)
        for k, person in enumerate(party.people):
            speaks = speaking and k == turn
            person.send(speech if speaks else silence)
            if speaks and at == per_turn - 1:
                counts[k] += 1
                party.speech_end_sent[f"{k + 1}-{counts[k]}"] = time.monotonic()
        if not speaking and now > stop + opts.drain_s:
            return
        i += 1


async def _end(party: Party) -> None:
    """The host ends the session (the SDK refreshes the access token a run longer than its
    lifetime, 15 min by default, outlived)."""
    await party.session.end()


def _collect(parties: list[Party]) -> dict[str, Any]:
    """Each utterance counts once per listener of another language (who hears it translated)."""
    client_ms: list[float] = []
    stages: list[dict[str, float]] = []
    lag: list[float] = []
    expected = measured = 0
    errors: list[str] = []
    for party in parties:
        lag.extend(party.send_lag_ms)
        errors.extend(e for person in party.people for e in person.errors)
        for utt_id, sent in party.speech_end_sent.items():
            speaker = party.people[int(utt_id.split("-")[0]) - 1]
            for listener in party.people:
                if listener is speaker or listener.language == speaker.language:
                    continue
                expected += 1
                heard = listener.first_audio_s.get(utt_id)
                if heard is not None:
                    measured += 1
                    client_ms.append((heard - sent) * 1000)
            if utt_id in speaker.latencies:
                stages.append(latency_ms(speaker.latencies[utt_id]))
    return {"utterances_expected": expected, "utterances_measured": measured,
            "client_ms": client_ms, "stages": stages, "send_lag_ms": lag, "errors": errors}


async def run(opts: Options) -> dict[str, Any]:
    """Runs the load and returns the raw samples and their summary."""
    if not 1 <= opts.sessions <= MAX_SESSIONS:
        raise ValueError(f"sessions must be 1..{MAX_SESSIONS}")
    if not 2 <= opts.participants <= MAX_PARTICIPANTS:
        raise ValueError(f"participants must be 2..{MAX_PARTICIPANTS}")
    if not 0 < opts.duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S:.0f}] s")
    channels = [mux.channel(opts.gateway, linger_s=opts.trunk_linger_ms / 1000) if opts.session_svc
                else grpc.aio.insecure_channel(opts.gateway, options=rpc.CHANNEL_OPTIONS)
                for _ in range(max(1, opts.channels))]
    t0 = time.monotonic()
    parties: list[Party] = []
    end_errors: list[str] = []
    try:
        parties, setup_errors = await asyncio.wait_for(
            _setup(opts, channels), SETUP_TIMEOUT_S + opts.sessions * 0.2 * opts.participants)
        setup_s = time.monotonic() - t0
        start = time.monotonic() + 0.5
        if opts.ready_file is not None:
            opts.ready_file.touch()
        await asyncio.gather(*(_talk(p, opts, start, start + opts.duration_s) for p in parties))
        await asyncio.gather(*(person.leave(2.0) for p in parties for person in p.people))
        # end them, as a client does: a replica counts live sessions against its limit
        ended = await asyncio.gather(*(_end(p) for p in parties), return_exceptions=True)
        end_errors = [f"end: {e.code.name}: {e.message}" for e in ended
                      if isinstance(e, dragoman_client.DragomanError)]
    finally:
        for p in parties:
            for person in p.people:
                if person.task is not None:
                    person.task.cancel()
        for ch in channels:
            await ch.close()
    raw = _collect(parties)
    raw["errors"] = setup_errors + raw["errors"] + end_errors
    return {
        "gateway": opts.gateway, "target": "session_svc" if opts.session_svc else "gateway",
        "sessions": opts.sessions, "sessions_started": len(parties),
        "participants": opts.participants, "languages": languages_of(opts),
        "duration_s": opts.duration_s, "speech_s": opts.speech_s, "setup_s": round(setup_s, 2),
        "chunk_ms": opts.chunk_ms,
        "chunks_per_s": opts.participants * len(parties) * 1000 / opts.chunk_ms,
        **raw,
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of the raw samples (of one run or several merged)."""
    return {
        "client_latency": summary(result["client_ms"]),
        "server_stages": stage_summary(result["stages"]),
        "send_lag": summary(result["send_lag_ms"]),
        "error_count": len(result["errors"]),
        "error_samples": sorted(set(result["errors"]))[:5],
    }


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"sessions": 0, "sessions_started": 0, "utterances_expected": 0,
                              "utterances_measured": 0, "client_ms": [], "stages": [],
                              "send_lag_ms": [], "errors": [], "setup_s": 0.0}
    for r in results:
        for key in ("sessions", "sessions_started", "utterances_expected", "utterances_measured"):
            merged[key] += r[key]
        for key in ("client_ms", "stages", "send_lag_ms", "errors"):
            merged[key].extend(r[key])
        merged["setup_s"] = max(merged["setup_s"], r["setup_s"])
    return merged


def report(result: dict[str, Any]) -> str:
    s = summarise(result)
    rows = [["client: last speech chunk sent -> first audio heard",
             *(s["client_latency"][k] for k in ("n", "p50_ms", "p95_ms", "p99_ms", "max_ms"))]]
    for stage, v in s["server_stages"].items():
        rows.append([f"server: {stage}", *(v[k] for k in ("n", "p50_ms", "p95_ms", "p99_ms", "max_ms"))])
    rows.append(["client send lag (late chunks)",
                 *(s["send_lag"][k] for k in ("n", "p50_ms", "p95_ms", "p99_ms", "max_ms"))])
    head = (f"{result['sessions_started']}/{result['sessions']} sessions of "
            f"{result.get('participants', 2)}, "
            f"{result['utterances_measured']}/{result['utterances_expected']} utterances heard, "
            f"{s['error_count']} errors")
    return head + "\n" + table(["measure", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--gateway", default="127.0.0.1:50051", help="the public API (default)")
    target.add_argument("--session-svc", metavar="ADDRESS",
                        help="load session_svc directly, standing where a gateway stands")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--participants", type=int, default=2,
                        choices=range(2, MAX_PARTICIPANTS + 1), metavar="2..8",
                        help="people in each session, taking turns (default 2)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of talking")
    parser.add_argument("--speech-s", type=float, default=2.0, help="length of each utterance")
    parser.add_argument("--users", type=int, default=0,
                        help="groups of --participants users to register (default min(N, 8))")
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections to share")
    parser.add_argument("--languages", default="en,es",
                        help="what the participants speak, in turn, host first (default en,es)")
    parser.add_argument("--json", type=Path, help="write the raw result here")
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--drain", type=float, default=DRAIN_S,
                        help="seconds of silence after the last utterance (> the mesh's latency)")
    parser.add_argument("--ready-file", type=Path, help="touched when talking starts")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--chunk-ms", type=int, default=CHUNK_MS, choices=(20, 50, 100, 200, 250),
                        help="audio per message")
    parser.add_argument("--trunk-linger-ms", type=linger_ms,
                        help="with --session-svc: how long audio waits on the trunks for other "
                             "frames to share its message (default: DRAGOMAN_TRUNK_LINGER_MS, else "
                             f"{mux.LINGER_S * 1000:g})")
    args = parser.parse_args(argv)
    linger = args.trunk_linger_ms
    if linger is None:
        try:
            linger = config.load().trunk_linger_ms
        except DragomanError as e:
            parser.error(str(e))
    assertions = None
    if args.session_svc:
        try:
            assertions = Assertions.from_settings(config.load().auth)
        except DragomanError as e:
            parser.error(str(e))
    address = args.session_svc or args.gateway
    check_target(address, args.allow_remote)
    opts = Options(address, args.sessions, args.duration, args.speech_s, args.users,
                   args.channels, tuple(args.languages.split(",")), participants=args.participants,
                   drain_s=args.drain, ready_file=args.ready_file, chunk_ms=args.chunk_ms,
                   session_svc=bool(args.session_svc), trunk_linger_ms=linger,
                   assertions=assertions)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run(opts))
        if args.json:
            args.json.write_text(json.dumps(result))
        if not args.quiet:
            sys.stdout.write(report(result) + "\n")


if __name__ == "__main__":
    main()
