"""Load generator for the public API: N two-party sessions talking at real-time pace.

Registers a small pool of users, pairs them into N sessions (CreateSession,
JoinSession with the code), opens both Converse streams of every session and
streams 100 ms LINEAR16 chunks at 16 kHz in real time for `--duration`
seconds. The two participants take turns: in each period one speaks
`--speech-s` seconds (low-level noise) while the other sends silence, so
every stream carries 10 chunks/s as a live microphone would. Each measured
utterance gives:

- client latency: last speech chunk sent -> first translated audio chunk
  received by the partner (same process clock), and
- the server's per-stage latency from ProcessingEnded.

It is bounded (at most 2000 sessions, 600 s) and talks only to loopback
unless --allow-remote is given. With real engines, noise is not speech: point
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

import grpc
import numpy as np

from bench.common import Participant, latency_ms, linger_ms, stage_summary, summary, table
from dragoman import config, mux, rpc
from dragoman.assertion import Assertions
from dragoman.client import Client
from dragoman.errors import DragomanError

RATE_HZ = 16_000
CHUNK_MS = 100
MAX_SESSIONS = 2000
MAX_DURATION_S = 600.0
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


class GatewayStandIn(Client):
    """A caller of session_svc as the gateway calls it: no tokens, an identity
    assertion signed with the key gateways and session_svc share. For loading
    session_svc on its own."""

    username = ""
    assertions: Assertions | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.assertions is None:
            raise RuntimeError("GatewayStandIn needs the assertions of auth.identity_key")
        return self.assertions.metadata(self.user_id, self.username)

    async def register(self, username: str, email: str, password: str, language: str) -> str:
        self.user_id, self.username = f"u-{username}", username
        return self.user_id


@dataclass
class Pair:
    """One session: who created it (speaker prefix 1) and who joined (2)."""

    session_id: str
    a: Participant
    b: Participant
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
    languages: tuple[str, str] = ("en", "es")
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


async def _setup(opts: Options, channels: list[grpc.aio.Channel]) -> tuple[list[Pair], list[str]]:
    users = opts.users or min(opts.sessions, 8)
    tag = secrets.token_hex(4)
    pool: list[tuple[Client, Client]] = []
    errors: list[str] = []

    async def register(i: int) -> None:
        pair = []
        for side, lang in zip("ab", opts.languages, strict=True):
            kind = GatewayStandIn if opts.session_svc else Client
            c = kind(opts.gateway, channel=channels[(2 * i + (side == "b")) % len(channels)])
            if isinstance(c, GatewayStandIn):
                c.assertions = opts.assertions
            await c.register(f"load-{tag}-{i}{side}", f"load-{tag}-{i}{side}@example.org",
                             "load-password-123", lang)
            pair.append(c)
        pool.append((pair[0], pair[1]))

    await asyncio.gather(*(register(i) for i in range(users)))
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    pairs: list[Pair] = []

    async def pair_up(i: int) -> None:
        ca, cb = pool[i % len(pool)]
        async with gate:
            try:
                created = await ca.create_session(opts.languages[0])
                await cb.join_session(created.code, opts.languages[1])
            except grpc.aio.AioRpcError as e:
                errors.append(f"setup: {e.code().name}: {e.details()}")
                return
        a, b = Participant(ca, opts.languages[0]), Participant(cb, opts.languages[1])
        a.connect(created.session_id, RATE_HZ)
        b.connect(created.session_id, RATE_HZ)
        pairs.append(Pair(created.session_id, a, b))

    await asyncio.gather(*(pair_up(i) for i in range(opts.sessions)))
    return pairs, errors


async def _talk(pair: Pair, opts: Options, start: float, stop: float) -> None:
    """Both streams at real time; a speaks in the first half of each period, b in the second.

    Each pair's clock starts at a random point of the first chunk period, as
    microphones that were opened at different times do: a load generator
    sending every stream's chunk at the same instant would measure its own
    bursts, not the mesh."""
    speech, silence = _chunk(True, opts.chunk_ms), _chunk(False, opts.chunk_ms)
    start += random.uniform(0.0, opts.chunk_ms / 1000)
    per_turn = round(opts.speech_s * 1000 / opts.chunk_ms)
    period = 2 * per_turn
    phase = random.randrange(period)
    counts = {"1": 0, "2": 0}
    i = 0
    while True:
        due = start + i * opts.chunk_ms / 1000
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        pair.send_lag_ms.append(max(0.0, time.monotonic() - due) * 1000)
        speaking = due < stop
        slot = (i + phase) % period
        a_speaks = speaking and slot < per_turn
        b_speaks = speaking and slot >= per_turn
        pair.a.send(speech if a_speaks else silence)
        pair.b.send(speech if b_speaks else silence)
        for prefix, speaks, last in (("1", a_speaks, slot == per_turn - 1),
                                     ("2", b_speaks, slot == period - 1)):
            if speaks and last:
                counts[prefix] += 1
                pair.speech_end_sent[f"{prefix}-{counts[prefix]}"] = time.monotonic()
        if not speaking and now > stop + opts.drain_s:
            return
        i += 1


def _collect(pairs: list[Pair]) -> dict[str, Any]:
    client_ms: list[float] = []
    stages: list[dict[str, float]] = []
    lag: list[float] = []
    expected = measured = 0
    errors: list[str] = []
    for pair in pairs:
        lag.extend(pair.send_lag_ms)
        errors.extend(pair.a.errors + pair.b.errors)
        for utt_id, sent in pair.speech_end_sent.items():
            speaker, listener = (pair.a, pair.b) if utt_id.startswith("1-") else (pair.b, pair.a)
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
    if not 0 < opts.duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S:.0f}] s")
    channels = [mux.channel(opts.gateway, linger_s=opts.trunk_linger_ms / 1000) if opts.session_svc
                else grpc.aio.insecure_channel(opts.gateway, options=rpc.CHANNEL_OPTIONS)
                for _ in range(max(1, opts.channels))]
    t0 = time.monotonic()
    pairs: list[Pair] = []
    end_errors: list[str] = []
    try:
        pairs, setup_errors = await asyncio.wait_for(
            _setup(opts, channels), SETUP_TIMEOUT_S + opts.sessions * 0.4)
        setup_s = time.monotonic() - t0
        start = time.monotonic() + 0.5
        if opts.ready_file is not None:
            opts.ready_file.touch()
        await asyncio.gather(*(_talk(p, opts, start, start + opts.duration_s) for p in pairs))
        await asyncio.gather(*(person.leave(2.0) for p in pairs for person in (p.a, p.b)))
        # end them, as a client does: a replica counts live sessions against its limit
        ended = await asyncio.gather(*(p.a.client.end_session(p.session_id) for p in pairs),
                                     return_exceptions=True)
        end_errors = [f"end: {e.code().name}: {e.details()}" for e in ended
                      if isinstance(e, grpc.aio.AioRpcError)]
    finally:
        for p in pairs:
            for person in (p.a, p.b):
                if person.task is not None:
                    person.task.cancel()
        for ch in channels:
            await ch.close()
    raw = _collect(pairs)
    raw["errors"] = setup_errors + raw["errors"] + end_errors
    return {
        "gateway": opts.gateway, "target": "session_svc" if opts.session_svc else "gateway",
        "sessions": opts.sessions, "sessions_started": len(pairs),
        "duration_s": opts.duration_s, "speech_s": opts.speech_s, "setup_s": round(setup_s, 2),
        "chunk_ms": opts.chunk_ms, "chunks_per_s": 2 * len(pairs) * 1000 / opts.chunk_ms,
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
    head = (f"{result['sessions_started']}/{result['sessions']} sessions, "
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
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of talking")
    parser.add_argument("--speech-s", type=float, default=2.0, help="length of each utterance")
    parser.add_argument("--users", type=int, default=0, help="user pairs to register (default min(N, 8))")
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections to share")
    parser.add_argument("--languages", default="en,es", help="creator,joiner")
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
    a, b = args.languages.split(",")
    opts = Options(address, args.sessions, args.duration, args.speech_s, args.users,
                   args.channels, (a, b), args.drain, args.ready_file, args.chunk_ms,
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
