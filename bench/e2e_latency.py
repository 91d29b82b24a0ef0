"""End-to-end latency: real speech through the whole mesh, per stage and language pair.

Starts the five services as separate processes (real engines, a scratch
PostgreSQL schema) and, for each language pair, has two people take turns
saying FLEURS clips at real-time pace (100 ms chunks, 0.3 s of silence before
and 1.2 s after each clip) through the public API. Per utterance it keeps the
server's stages from ProcessingEnded (end of speech -> STT final -> MT done ->
TTS first chunk -> first audio handed to the partner's stream) and, per
clip, the client-side "last speech chunk sent -> first translated audio
received by the partner". The goal is judged on the server's total. Beside
it, "listener wait": the part of the total the partner spends in silence,
not still hearing the translation of the utterance before (audio goes out in
the order it was spoken, so an utterance that ends while the previous one's
translation plays waits for it; the partner is listening meanwhile).

    python -m bench.e2e_latency [--smoke] [--pairs en-es,en-pt] [--clips 5]

--smoke: one clip each way on en-es, with the deterministic fake engines
(plumbing only; the numbers mean nothing) and results in a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import dragoman_client
import numpy as np

from bench.common import (
    STAGES,
    TESTDATA,
    Children,
    Participant,
    free_address,
    latency_ms,
    machine,
    scratch_database,
    service_env,
    stage_summary,
    summary,
    table,
    write_result,
)
from dragoman import audio

RATE_HZ = audio.STT_RATE_HZ
CHUNK_MS = 100
PAD_S, TAIL_S = 0.3, 1.2
CHUNK_SAMPLES = RATE_HZ * CHUNK_MS // 1000
PAD_CHUNKS = round(PAD_S * 1000 / CHUNK_MS)
TURN_TIMEOUT_S = 60.0
SMOKE_CLIP_S = 3.0
GOAL_PAIR, GOAL_P50_MS, GOAL_P95_MS = "en<>es", 1500, 2000
GOAL = {"pair": GOAL_PAIR, "total_p50_ms": GOAL_P50_MS, "total_p95_ms": GOAL_P95_MS}
SERVICES = (("stt", "stt_svc.server"), ("mt", "mt_svc.server"), ("tts", "tts_svc.server"),
            ("session", "session_svc.server"), ("gateway", "gateway.server"))
FAKE_ENGINES = {"DRAGOMAN_STT_ENGINE": "fake", "DRAGOMAN_MT_ENGINES": "fake",
                "DRAGOMAN_TTS_ENGINES": "fake"}

P = TypeVar("P", bound=Participant)

def fleurs_dir() -> Path:
    return TESTDATA / "speech" / "fleurs"


def clips(language: str, count: int) -> list[Path]:
    found = sorted(fleurs_dir().glob(f"fleurs-{language}-*.ogg"))[:count]
    if not found:
        raise SystemExit(f"no FLEURS clips for {language!r} in {fleurs_dir()}")
    return found


def speech_end(samples: np.ndarray, frame: int = RATE_HZ * CHUNK_MS // 1000) -> int:
    """Sample index where the clip's speech ends: the end of the last 100 ms frame within
    24 dB of the loudest one (FLEURS clips carry up to 2 s of background noise at the end)."""
    return speech_span(samples, frame)[1]


def speech_span(samples: np.ndarray, frame: int = RATE_HZ * CHUNK_MS // 1000) -> tuple[int, int]:
    """Sample indices where the clip's speech starts and ends: the first and last 100 ms
    frames within 24 dB of the loudest one (the whole clip if none is)."""
    n = len(samples) // frame
    if n == 0:
        return 0, len(samples)
    rms = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame)), axis=1))
    loud = np.nonzero(rms > max(float(rms.max()) * 10 ** (-24 / 20), 1e-4))[0]
    return (int(loud[0]) * frame, int(loud[-1] + 1) * frame) if len(loud) else (0, len(samples))


async def say(person: Participant, clip: Path, max_s: float = 0.0) -> float:
    """Streams the clip (its first `max_s` seconds if set) at real-time pace; returns when
    the chunk with its last speech was sent."""
    samples = audio.decode_file(clip, RATE_HZ)
    if max_s:
        samples = samples[: int(max_s * RATE_HZ)]
    sent = await speak(person, samples)
    return sent[PAD_CHUNKS + (speech_end(samples) - 1) // CHUNK_SAMPLES]


async def speak(person: Participant, samples: np.ndarray, tail_s: float = TAIL_S) -> list[float]:
    """Streams 16 kHz samples at real-time pace in CHUNK_MS chunks, after PAD_S and before
    `tail_s` of silence; returns when each chunk was sent (time.monotonic()): samples
    [i * CHUNK_SAMPLES, (i + 1) * CHUNK_SAMPLES) went in chunk PAD_CHUNKS + i."""
    speech = audio.float_to_pcm16(samples)
    step = 2 * CHUNK_SAMPLES
    chunks = ([bytes(step)] * PAD_CHUNKS
              + [speech[i:i + step] for i in range(0, len(speech), step)]
              + [bytes(step)] * round(tail_s * 1000 / CHUNK_MS))
    start = time.monotonic()
    sent = []
    for i, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, start + i * CHUNK_MS / 1000 - time.monotonic()))
        person.send(chunk)
        sent.append(time.monotonic())
    return sent


async def pair_up(
    gateway: str, first: str, second: str, name: str, kind: type[P],
) -> tuple[P, P, str]:
    """Two new users, speaking `first` and `second`, in one session, both connected."""
    (a, b), session_id = await gather(gateway, [first, second], name, kind)
    return a, b, session_id


async def gather(gateway: str, languages: list[str], name: str, kind: type[P]) -> tuple[list[P], str]:
    """New users, one speaking each of `languages`, in one session (the first creates it, the
    others join in order), all connected."""
    tag = secrets.token_hex(3)
    people: list[P] = []
    for i, lang in enumerate(languages):
        client = await dragoman_client.connect(gateway)
        user = f"{name}-{tag}-{i}"
        await client.register(user, "bench-password-1", email=f"{user}@example.org", language=lang)
        people.append(kind(client, lang))
    host, *guests = people
    session = await host.client.create_session(host.language)
    for guest in guests:
        await guest.client.join_session(session.code, language=guest.language)
    for person in people:
        person.connect(session.id, RATE_HZ)
    return people, session.id


async def part(a: Participant, b: Participant, session_id: str) -> None:
    """Both leave, the session ends, their channels close."""
    await disperse([a, b], session_id)


async def disperse(people: list[Participant], session_id: str) -> None:
    """Everyone leaves, the first (the host) ends the session, their channels close."""
    await asyncio.gather(*(p.leave() for p in people))
    await (await people[0].client.get_session(session_id)).end()
    for p in people:
        await p.client.close()


async def converse(gateway: str, pair: str, per_side: int, max_s: float = 0.0) -> dict[str, Any]:
    """One session of the pair: turns alternate, `per_side` clips each."""
    first, second = pair.split("-")
    a, b, session_id = await pair_up(gateway, first, second, "e2e", Participant)
    turns: list[dict[str, Any]] = []
    try:
        script = [(a, b, c) for c in clips(first, per_side)]
        others = [(b, a, c) for c in clips(second, per_side)]
        order = [t for pair_ in zip(script, others, strict=False) for t in pair_]
        for speaker, listener, clip in order:
            before = set(speaker.started)
            end_sent = await say(speaker, clip, max_s)
            quiet = await speaker.wait_quiet(TURN_TIMEOUT_S)
            new = sorted(speaker.started - before, key=lambda u: int(u.rsplit("-", 1)[1]))
            heard = listener.first_audio_s.get(new[-1]) if new else None
            stages = {u: latency_ms(speaker.latencies[u]) for u in new if u in speaker.latencies}
            waits = [listener.listener_wait_ms(u, st["total"]) for u, st in stages.items()]
            turns.append({
                "direction": f"{speaker.language}-{listener.language}", "clip": clip.name,
                "utterances": new, "completed": quiet,
                "client_ms": (heard - end_sent) * 1000 if heard is not None else None,
                "stages": list(stages.values()),
                "listener_wait_ms": [w for w in waits if w is not None],
            })
    finally:
        await part(a, b, session_id)
    return {"pair": pair, "turns": turns, "errors": a.errors + b.errors}


def by_pair(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Summaries per pair, both ways ("en<>es"), and per direction ("en-es", "es-en")."""
    out: dict[str, Any] = {}
    for pair in sorted({"<>".join(sorted(t["direction"].split("-"), key=lambda x: x != "en"))
                        for t in turns}):
        ends = set(pair.split("<>"))
        out[pair] = _summarise([t for t in turns if set(t["direction"].split("-")) == ends])
        for direction in sorted({t["direction"] for t in turns
                                 if set(t["direction"].split("-")) == ends}):
            out[direction] = _summarise([t for t in turns if t["direction"] == direction])
    return out


def _summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    stages = [s for t in turns for s in t["stages"]]
    client = [t["client_ms"] for t in turns if t["client_ms"] is not None]
    return {"utterances": len(stages), "clips": len(turns),
            "clips_heard": len(client), "stages": stage_summary(stages),
            "client_last_chunk_to_first_audio": summary(client),
            "listener_wait": summary([w for t in turns for w in t["listener_wait_ms"]])}


@contextlib.asynccontextmanager
async def serve(work: Path, fake: bool, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """The five services as processes, with real engines or (`fake`) the fake ones, on a
    scratch schema, with `env` (settings) on top; yields the gateway's address."""
    addresses = {name: free_address() for name, _ in SERVICES}
    with scratch_database("bench") as db_env:
        children = Children(work / "logs", service_env(
            addresses, {**db_env, **(FAKE_ENGINES if fake else {}),
                        "DRAGOMAN_LIMITS_SESSIONS_PER_HOUR": "1000", **(env or {})}))
        try:
            started = time.monotonic()
            for name, module in SERVICES:  # models load in parallel; session and gateway after
                children.spawn(name, ["-m", module], addresses[name])
            for child in children.children:
                await children.wait_serving(child, 600.0)
            sys.stderr.write(f"mesh up in {time.monotonic() - started:.0f} s\n")
            yield addresses["gateway"]
        finally:
            await children.stop(5.0)


async def run(pairs: list[str], per_side: int, fake: bool, work: Path) -> dict[str, Any]:
    """Smoke runs (`fake`) say only the first SMOKE_CLIP_S of each clip."""
    sessions: list[dict[str, Any]] = []
    async with serve(work, fake) as gateway:
        for pair in pairs:
            sessions.append(await converse(gateway, pair, per_side, SMOKE_CLIP_S if fake else 0.0))
    all_turns = [t for s in sessions for t in s["turns"]]
    pairs_summary = by_pair(all_turns)
    result = {
        "benchmark": "e2e_latency",
        "machine": machine(),
        "engines": "fake (smoke: plumbing only)" if fake else "real (settings defaults)",
        "method": ("services as separate processes; FLEURS clips at real-time pace in 100 ms "
                   f"chunks with {PAD_S} s silence before and {TAIL_S} s after; two people "
                   "take turns; stages from ProcessingEnded, client time from the last speech "
                   "chunk sent to the first translated audio chunk received by the partner"),
        "clips_per_side": per_side,
        "pairs": pairs_summary,
        "all_pairs": _summarise(all_turns),
        "goal": GOAL,
        "errors": [e for s in sessions for e in s["errors"]],
        "turns": all_turns,
    }
    goal_pair = pairs_summary.get(GOAL_PAIR)
    if goal_pair is not None:
        total = goal_pair["stages"]["total"]
        result["goal_met"] = (total["p50_ms"] is not None and total["p50_ms"] <= GOAL_P50_MS
                              and total["p95_ms"] <= GOAL_P95_MS)
    return result


def report(result: dict[str, Any]) -> str:
    rows = []
    for pair, s in result["pairs"].items():
        for stage in STAGES:
            v = s["stages"][stage]
            rows.append([f"{pair} {stage}", v["n"], v["p50_ms"], v["p95_ms"]])
        c = s["client_last_chunk_to_first_audio"]
        rows.append([f"{pair} client: last chunk sent -> first audio", c["n"], c["p50_ms"],
                     c["p95_ms"]])
        w = s["listener_wait"]
        rows.append([f"{pair} listener wait (not while hearing the previous)", w["n"],
                     w["p50_ms"], w["p95_ms"]])
    lines = [table(["pair / stage", "n", "p50 ms", "p95 ms"], rows)]
    if "goal_met" in result:
        lines.append(f"goal {GOAL_PAIR}: total p50 <= {GOAL_P50_MS} ms and p95 <= "
                     f"{GOAL_P95_MS} ms: {'met' if result['goal_met'] else 'NOT met'}")
    return framed(result, lines)


def framed(result: dict[str, Any], lines: list[str]) -> str:
    """A report's `lines` after the engines and how busy the machine was, before the first
    errors."""
    m = result["machine"]
    head = (f"engines: {result['engines']}; load average {m['load_average']} on "
            f"{m['cpu_count']} cores ({m['cpu_model']}); CPU probe {m['cpu_probe_ms']} ms, "
            f"{m['cpu_probe_all_cores_ms']} ms on every core at once")
    tail = [f"errors: {result['errors'][:5]}"] if result["errors"] else []
    return "\n".join([head, *lines, *tail])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--pairs", default="en-es,en-pt")
    parser.add_argument("--clips", type=int, default=5, help="clips per side and pair")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    pairs = ["en-es"] if args.smoke else args.pairs.split(",")
    per_side = 1 if args.smoke else args.clips
    with tempfile.TemporaryDirectory(prefix="dragoman-e2e-") as tmp:
        result = asyncio.run(run(pairs, per_side, args.smoke, Path(tmp)))
    result["smoke"] = args.smoke
    path = write_result("e2e", result, **({"out_dir": args.out} if args.out else {}))
    sys.stdout.write(report(result) + f"\n\nwritten to {path}\n")


if __name__ == "__main__":
    main()
