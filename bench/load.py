"""Load benchmark: N sessions (of two, or of --participants) through gateway and session_svc.

Starts, each in its own process: calibrated fake model services
(bench.fakes: they sleep the measured real stage times; their purpose is
to load the plumbing, not to measure models), session_svc and the gateway
(both real, on a scratch PostgreSQL schema, rate limits raised for the
load), then for each N runs bench.loadgen in a few client processes:
N sessions x 2 participants x 10 chunks/s (5 with --chunk-ms 200), real-time pace.
With --participants 2,4,8 each N runs once per session size, the
participants taking turns and speaking --languages in turn (en, es, pt, en,
...), and the result is multiparty_load.json: session_svc's CPU per
participant beside the added latency each listener of another language
sees.

Added latency (the mesh's own cost) of an utterance =
  client-measured (last speech chunk sent -> first translated audio heard)
  - (endpoint silence + recognition + translation + synthesis sleeps of the fakes).
CPU per session is the CPU time session_svc (and gateway) used during the
run divided by run time and N; memory per session is the RSS growth over N.
The load generator and the fakes share the same cores: on a small machine
the numbers are a lower bound of what the services can do alone.

With --session-svc there is no gateway: the load generator stands where a
gateway replica stands and calls session_svc over trunks, as the gateway's
router does, so that session_svc's own capacity is measured without a
gateway on the same cores (result: load_session_svc.json). The gateway's
figures come from the default run.

session_svc admits at most the live sessions the capacity model set for a
pod (bench/results/capacity.json, as deploy/k8s/session.yaml does) in the
default run, so an N beyond it shows what a full replica does: it refuses
the sessions it cannot carry (RESOURCE_EXHAUSTED, counted as not admitted)
and keeps the latency of those it holds. The --session-svc run has no limit:
it measures where the limit should be. --max-live-sessions overrides both.

    python -m bench.load [--smoke] [--sessions 10,50,200,1000] [--duration 20] [--chunk-ms 200]
    python -m bench.load --session-svc --sessions 100,200,400
    python -m bench.load --session-svc --participants 2,4,8 --sessions 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import loadgen
from bench.common import (
    Children,
    free_address,
    linger_ms,
    machine,
    read_result,
    scratch_database,
    service_env,
    summary,
    table,
    write_result,
)
from bench.fakes import Delays
from bench.probe import cpu_probe_ms
from dragoman import mux

DEFAULT_DELAYS = Delays()
IDLE_S = 5.0
STREAMS_PER_CLIENT_PROCESS = 500
ADDED_P99_LIMIT_MS = 100.0
GOAL_SESSIONS_PER_CORE, GOAL_P99_MS = 500, 50.0
LINGER_MS = mux.LINGER_S * 1000
LIMITS_ENV = {  # the load comes from a few users on one address: lift their limits
    "DRAGOMAN_LIMITS_REQUESTS_PER_MINUTE": "1000000",
    "DRAGOMAN_LIMITS_SESSIONS_PER_HOUR": "1000000",
    "DRAGOMAN_LIMITS_REGISTRATIONS_PER_HOUR": "1000000",
    "DRAGOMAN_LIMITS_AUDIO_BURST_CHUNKS": "50",
    "DRAGOMAN_LOG_LEVEL": "WARNING",
}


def calibrated_delays() -> tuple[Delays, str]:
    """Fake stage times from bench/results/e2e.json (p50 over all pairs), else defaults."""
    e2e = read_result("e2e")
    try:
        stages = e2e["all_pairs"]["stages"]  # type: ignore[index]
        return Delays(
            endpoint_ms=DEFAULT_DELAYS.endpoint_ms,
            recognition_ms=round(stages["recognition"]["p50_ms"]),
            translation_ms=round(stages["translation"]["p50_ms"]),
            synthesis_ms=round(stages["synthesis_first_chunk"]["p50_ms"]),
        ), f"p50 of bench/results/e2e.json ({e2e['machine']['time']})"  # type: ignore[index]
    except (TypeError, KeyError):
        return DEFAULT_DELAYS, "defaults (no bench/results/e2e.json): " + ", ".join(
            f"{k}={getattr(DEFAULT_DELAYS, k)}" for k in ("recognition_ms", "translation_ms",
                                                          "synthesis_ms"))


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


class Sampler:
    """CPU time and memory of some processes (a name may stand for several) between two points."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.procs = {name: [psutil.Process(pid) for pid in group] for name, group in pids.items()}
        self.t0 = 0.0
        self.cpu0: dict[str, float] = {}
        self.machine0 = psutil.cpu_times()

    def start(self) -> dict[str, float]:
        self.t0 = time.monotonic()
        self.cpu0 = {n: _cpu(group) for n, group in self.procs.items()}
        self.machine0 = psutil.cpu_times()
        return self.rss_mb()

    def rss_mb(self) -> dict[str, float]:
        return {n: sum(p.memory_info().rss for p in group) / 2**20
                for n, group in self.procs.items()}

    def cores(self) -> dict[str, float]:
        """Average cores each process used since start()."""
        wall = time.monotonic() - self.t0
        used = {n: (_cpu(group) - self.cpu0[n]) / wall for n, group in self.procs.items()}
        now = psutil.cpu_times()
        idle = (now.idle + now.iowait) - (self.machine0.idle + self.machine0.iowait)
        total = sum(now) - sum(self.machine0)
        used["machine_busy"] = (total - idle) / total * (psutil.cpu_count() or 1) if total else 0.0
        used["other_processes"] = used["machine_busy"] - sum(
            v for k, v in used.items() if k != "machine_busy")
        return used


async def _load_step(
    children: Children, target: str, n: int, duration_s: float, sampler: Sampler, work: Path,
    users: int = 0, drain_s: float = loadgen.DRAIN_S, chunk_ms: int = loadgen.CHUNK_MS,
    direct: bool = False, participants: int = 2, languages: str = "en,es",
) -> dict[str, Any]:
    procs = max(1, math.ceil(n * participants / STREAMS_PER_CLIENT_PROCESS))
    share = [n // procs + (i < n % procs) for i in range(procs)]
    rss0 = sampler.rss_mb()
    gens = []
    for i, count in enumerate(share):
        out, ready = work / f"load-{n}-{i}.json", work / f"ready-{n}-{i}"
        gens.append((out, ready, children.spawn(f"loadgen-{n}-{i}", [
            "-m", "bench.loadgen", "--session-svc" if direct else "--gateway", target,
            "--sessions", str(count),
            "--duration", str(duration_s), "--json", str(out), "--quiet",
            "--ready-file", str(ready), "--channels", str(max(2, count // 50)),
            "--users", str(users), "--drain", f"{drain_s:.1f}", "--chunk-ms", str(chunk_ms),
            "--participants", str(participants), "--languages", languages])))
    peak = dict(rss0)
    cores: dict[str, float] = {}
    steady: dict[str, float] = {}
    talking = 0.0
    deadline = time.monotonic() + duration_s + 120 + n * 0.25
    while any(g.popen.poll() is None for _, _, g in gens):
        if time.monotonic() > deadline:
            for _, _, g in gens:
                g.popen.kill()
            break
        await asyncio.sleep(0.5)
        peak = {k: max(v, peak[k]) for k, v in sampler.rss_mb().items()}
        if not talking and all(r.exists() or g.popen.poll() is not None for _, r, g in gens) \
                and any(r.exists() for _, r, _ in gens):
            talking = time.monotonic()
            sampler.start()  # CPU over the talking only, not the setup
        elif talking and not cores and time.monotonic() - talking > duration_s:
            cores, steady = sampler.cores(), sampler.rss_mb()
    if not cores:
        steady = sampler.rss_mb()
        cores = sampler.cores() if talking else dict.fromkeys(
            [*sampler.procs, "machine_busy", "other_processes"], 0.0)
    results: list[dict[str, Any]] = []
    for out, _, g in gens:
        try:
            results.append(json.loads(out.read_text()))
        except (OSError, ValueError):
            results.append({"sessions": 0, "sessions_started": 0, "utterances_expected": 0,
                            "utterances_measured": 0, "client_ms": [], "stages": [],
                            "send_lag_ms": [], "setup_s": 0.0,
                            "errors": [f"load generator failed: {g.tail(3)}"]})
    merged = loadgen.merge(results)
    return {"merged": merged, "cores": cores, "rss0_mb": rss0, "rss_peak_mb": peak,
            "rss_steady_mb": steady, "participants": participants,
            "client_processes": procs}


def _step_row(n: int, step: dict[str, Any], baseline_ms: float) -> dict[str, Any]:
    merged = step["merged"]
    s = loadgen.summarise(merged)
    added = [ms - baseline_ms for ms in merged["client_ms"]]
    server_added = [st["total"] - baseline_ms for st in merged["stages"]]
    started = max(1, merged["sessions_started"])
    people = step["participants"]
    cores, rss0, peak = step["cores"], step["rss0_mb"], step["rss_peak_mb"]
    steady = step["rss_steady_mb"]
    return {
        "sessions": n,
        "participants": people,
        "sessions_started": merged["sessions_started"],
        "client_processes": step["client_processes"],
        "setup_s": merged["setup_s"],
        "utterances_expected": merged["utterances_expected"],
        "utterances_measured": merged["utterances_measured"],
        "delivery_ratio": merged["utterances_measured"] / max(1, merged["utterances_expected"]),
        "added_latency": summary(added),
        "server_added_latency": summary(server_added),
        "client_latency": s["client_latency"],
        "server_stages": s["server_stages"],
        "client_send_lag": s["send_lag"],
        "cores": {k: round(v, 3) for k, v in cores.items()},
        "cpu_per_session_millicores": {k: round(1000 * v / started, 3) for k, v in cores.items()
                                       if k in rss0},
        "cpu_per_participant_millicores": {k: round(1000 * v / (started * people), 3)
                                           for k, v in cores.items() if k in rss0},
        "rss_mb_start": {k: round(v, 1) for k, v in rss0.items()},
        "rss_mb_steady": {k: round(v, 1) for k, v in steady.items()},
        "rss_mb_peak": {k: round(v, 1) for k, v in peak.items()},
        "memory_per_session_kb": {
            k: round(1024 * max(0.0, steady[k] - rss0[k]) / started, 1) for k in steady},
        "error_count": s["error_count"],
        "error_samples": s["error_samples"],
    }


def deployed_limit() -> int:
    """session_svc's admission limit per pod in the capacity model (0: none yet)."""
    model = read_result("capacity")
    return int(((model or {}).get("services", {}).get("session_svc") or {}).get("max_live_sessions") or 0)


async def run(sessions: list[int], duration_s: float, work: Path, users: int = 0,
              chunk_ms: int = loadgen.CHUNK_MS, direct: bool = False,
              max_live: int = 0, linger_ms: float = LINGER_MS,
              participants: tuple[int, ...] = (2,), languages: str = "en,es",
              people: int = 0) -> dict[str, Any]:
    """`direct`: no gateway, the load generator calls session_svc as a gateway does.
    `max_live`: session_svc's admission limit (session.max_live_sessions; 0: none).
    `linger_ms`: how long audio waits on every trunk for company (trunk_linger_ms).
    `participants`: the session sizes to run each N with; `languages`: what they speak;
    `people`: if set, each size runs people / size sessions instead of `sessions`."""
    delays, source = calibrated_delays()
    probe_before = cpu_probe_ms()
    baseline_ms = delays.endpoint_ms + delays.recognition_ms + delays.translation_ms + delays.synthesis_ms
    addresses = {name: free_address() for name in ("gateway", "session", "stt", "mt", "tts")}
    steps: list[dict[str, Any]] = []
    with scratch_database("bench") as db_env:
        children = Children(work / "logs", service_env(addresses, {
            **db_env, **LIMITS_ENV, "DRAGOMAN_SESSION_MAX_LIVE_SESSIONS": str(max_live),
            # shared by session_svc and the gateway or, --session-svc, the load generator
            "DRAGOMAN_AUTH_IDENTITY_KEY": secrets.token_urlsafe(48),
            "DRAGOMAN_TRUNK_LINGER_MS": f"{linger_ms:g}"}))
        try:
            fakes = [children.spawn(f"fake-{role}", [
                "-m", "bench.fakes", f"--{role}", addresses[role],
                "--endpoint-ms", str(delays.endpoint_ms),
                "--recognition-ms", str(delays.recognition_ms),
                "--translation-ms", str(delays.translation_ms),
                "--synthesis-ms", str(delays.synthesis_ms)], addresses[role])
                for role in ("stt", "mt", "tts")]  # a process each, as the real services run
            for fake in fakes:
                await children.wait_serving(fake)
            session = children.spawn("session", ["-m", "session_svc.server"], addresses["session"])
            await children.wait_serving(session)
            pids = {"session_svc": [session.pid], "fakes": [f.pid for f in fakes]}
            if not direct:
                gateway = children.spawn("gateway", ["-m", "gateway.server"], addresses["gateway"])
                await children.wait_serving(gateway)
                pids["gateway"] = [gateway.pid]
            sampler = Sampler(pids)
            idle: dict[str, float] | None = None
            if participants != (2,):  # what session_svc costs with nobody talking, to set apart
                sampler.start()
                await asyncio.sleep(IDLE_S)
                idle = {k: round(v, 3) for k, v in sampler.cores().items()}
            runs = [(size, people // size if people else n) for size in participants
                    for n in ([0] if people else sessions)]
            for size, n in runs:
                step = await _load_step(
                    children, addresses["session" if direct else "gateway"], n, duration_s,
                    sampler, work, users, drain_s=baseline_ms / 1000 + loadgen.DRAIN_S,
                    chunk_ms=chunk_ms, direct=direct, participants=size, languages=languages)
                row = _step_row(n, step, baseline_ms)
                if idle is not None:
                    busy = row["cores"]["session_svc"] - idle["session_svc"]
                    row["cpu_per_participant_above_idle_millicores"] = round(
                        1000 * busy / (max(1, row["sessions_started"]) * size), 3)
                steps.append(row)
                sys.stderr.write(f"N={n} x {size}: added p50 {row['added_latency']['p50_ms']} "
                                 f"p99 {row['added_latency']['p99_ms']} ms, "
                                 f"{row['utterances_measured']}/{row['utterances_expected']} heard\n")
                for child in children.children:
                    if not child.name.startswith("loadgen") and child.popen.poll() is not None:
                        raise RuntimeError(f"{child.name} died at N={n}:\n{child.tail()}")
        finally:
            await children.stop()
    result = _result(steps, delays, source, baseline_ms, duration_s, chunk_ms, direct)
    result["languages"] = languages
    if idle is not None:
        result["idle_cores"] = idle
    result["session_admission_limit"] = max_live
    result["trunk_linger_ms"] = linger_ms
    result["machine"]["cpu_probe_ms_before"] = probe_before
    return result


def _crossing(steps: list[dict[str, Any]], limit_ms: float) -> int | None:
    """Smallest N whose p99 added latency exceeds `limit_ms`, or that lost utterances or
    was not admitted in full."""
    for s in sorted(steps, key=lambda s: s["sessions"]):
        p99 = s["added_latency"]["p99_ms"]
        if (p99 is None or p99 > limit_ms or s["delivery_ratio"] < 0.99
                or s["sessions_started"] < s["sessions"]):
            return int(s["sessions"])
    return None


def _result(steps: list[dict[str, Any]], delays: Delays, source: str, baseline_ms: float,
            duration_s: float, chunk_ms: int = loadgen.CHUNK_MS,
            direct: bool = False) -> dict[str, Any]:
    good = [s for s in steps if s["added_latency"]["p99_ms"] is not None
            and s["added_latency"]["p99_ms"] <= GOAL_P99_MS and s["delivery_ratio"] >= 0.99
            and s["sessions_started"] == s["sessions"]]
    # below the first N that missed: a larger N that made it by luck does not count
    missed = _crossing(steps, GOAL_P99_MS)
    best = max((s for s in good if missed is None or s["sessions"] < missed),
               key=lambda s: s["sessions"], default=None)
    per_core = None
    if best is not None:
        cores = best["cores"]["session_svc"]
        per_core = round(best["sessions"] / cores) if cores > 0 else None
    return {
        "benchmark": "load",
        "machine": machine(),
        "note": ("model services are calibrated fakes (bench.fakes) that sleep the measured stage "
                 "times: they load the plumbing (gateway, session_svc, gRPC), they do not measure "
                 "models; load generator and fakes share the machine's cores"
                 + ("; no gateway: the load generator calls session_svc over trunks as a "
                    "gateway replica does" if direct else "")),
        "target": "session_svc" if direct else "gateway",
        "fake_delays_ms": {"endpoint": delays.endpoint_ms, "recognition": delays.recognition_ms,
                           "translation": delays.translation_ms, "synthesis_first_chunk":
                           delays.synthesis_ms},
        "fake_delays_source": source,
        "added_latency_definition": (
            "client-measured last speech chunk sent -> first translated audio chunk received, "
            f"minus the fakes' endpoint silence + recognition + translation + synthesis "
            f"({baseline_ms:.0f} ms)"),
        "duration_s_per_step": duration_s,
        "chunk_ms": chunk_ms,
        "steps": steps,
        "n_where_p99_added_exceeds_100ms": _crossing(steps, ADDED_P99_LIMIT_MS),
        "goal": {"sessions_per_core": GOAL_SESSIONS_PER_CORE, "p99_added_ms": GOAL_P99_MS},
        "max_sessions_within_goal_latency": best["sessions"] if best else None,
        "sessions_per_session_svc_core_at_that_n": per_core,
    }


def report(result: dict[str, Any]) -> str:
    rows = []
    for s in result["steps"]:
        a = s["added_latency"]
        rows.append([str(s["sessions"]), s.get("participants", 2),
                     f"{s['sessions_started']}/{s['sessions']}",
                     f"{s['utterances_measured']}/{s['utterances_expected']}",
                     a["p50_ms"], a["p99_ms"], s["client_send_lag"]["p99_ms"],
                     s["cores"]["session_svc"], s["cores"].get("gateway", "-"),
                     s["cores"].get("other_processes"),
                     s["cpu_per_session_millicores"]["session_svc"],
                     s.get("cpu_per_participant_millicores", {}).get("session_svc", "-"),
                     s["memory_per_session_kb"]["session_svc"], s["error_count"]])
    lines = [
        result["note"] + ".",
        "cores: average CPU cores used while talking; 'others' = the rest of the machine "
        "(load generators and whatever else runs there).",
        f"fake stage times: {result['fake_delays_ms']} ({result['fake_delays_source']})",
        f"added latency = {result['added_latency_definition']}",
        f"load average {result['machine']['load_average']} on {result['machine']['cpu_count']} cores; "
        f"CPU probe {result['machine']['cpu_probe_ms_before']} ms before, "
        f"{result['machine']['cpu_probe_ms']} ms after, "
        f"{result['machine']['cpu_probe_all_cores_ms']} ms on every core at once (bench.probe); "
        f"{result['chunk_ms']} ms of audio per message; audio lingers up to "
        f"{result.get('trunk_linger_ms', LINGER_MS):g} ms on trunks for company",
        "",
        table(["N", "people", "admitted", "heard", "added p50", "added p99", "send lag p99",
               "session cores", "gateway cores", "others cores", "session mcore/sess",
               "session mcore/person", "session KB/sess", "errors"], rows),
        "",
        *([f"session_svc idle (nobody talking, {IDLE_S:g} s before the steps): "
           f"{idle['session_svc']} cores; above idle per participant: "
           + ", ".join(f"{s.get('participants', 2)} people "
                       f"{s['cpu_per_participant_above_idle_millicores']} mcore"
                       for s in result["steps"])]
          if (idle := result.get("idle_cores")) else []),
        "session_svc admission limit: " + (
            f"{limit} live sessions (callers of the refused ones got RESOURCE_EXHAUSTED)"
            if (limit := result.get("session_admission_limit")) else "none"),
        f"N where p99 added latency > 100 ms (or utterances lost, or not all admitted): "
        f"{result['n_where_p99_added_exceeds_100ms'] or 'not reached'}",
        f"largest N with p99 added <= 50 ms: {result['max_sessions_within_goal_latency']}; "
        f"that is {result['sessions_per_session_svc_core_at_that_n']} sessions per session_svc core "
        f"(goal {GOAL_SESSIONS_PER_CORE})",
    ]
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    """--participants: session sizes, each 2 to loadgen.MAX_PARTICIPANTS."""
    try:
        sizes = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not all(2 <= n <= loadgen.MAX_PARTICIPANTS for n in sizes):
        raise argparse.ArgumentTypeError(f"each must be 2 to {loadgen.MAX_PARTICIPANTS}, got {text}")
    return sizes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="N=5 for 6 s, one user pair")
    parser.add_argument("--sessions", default="10,50,200,1000")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of talking per N")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--chunk-ms", type=int, default=loadgen.CHUNK_MS, choices=(100, 200),
                        help="audio per message; other than 100 the result is load_<ms>ms.json")
    parser.add_argument("--session-svc", action="store_true",
                        help="no gateway: load session_svc directly, as gateway replicas do "
                             "(result: load_session_svc.json)")
    parser.add_argument("--max-live-sessions", type=int,
                        help="session_svc's admission limit (default: capacity.json's per pod "
                             "limit; none with --session-svc); 0: none")
    parser.add_argument("--participants", type=_sizes, default=(2,), metavar="N[,N...]",
                        help="people per session, 2 to 8, each size run with every --sessions "
                             "(default 2); other than 2 alone the result is multiparty_load.json")
    parser.add_argument("--people", type=int, default=0, metavar="P",
                        help="with --participants: run P / size sessions of each size (the same "
                             "people in all) instead of --sessions")
    parser.add_argument("--languages", default="en,es,pt",
                        help="what the participants of a session speak, in turn, host first "
                             "(default en,es,pt: two people speak en and es)")
    parser.add_argument("--trunk-linger-ms", type=linger_ms, default=LINGER_MS,
                        help="how long audio waits on the trunks (load generator to session_svc, "
                             "gateway to session_svc, session_svc to stt) for other frames to "
                             f"share its message; 0 to 100 (default {LINGER_MS:g}, the services')")
    args = parser.parse_args(argv)
    sessions = [5] if args.smoke else [int(n) for n in args.sessions.split(",")]
    duration = 6.0 if args.smoke else args.duration
    max_live = args.max_live_sessions if args.max_live_sessions is not None else (
        0 if args.session_svc else deployed_limit())
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
    with tempfile.TemporaryDirectory(prefix="dragoman-load-") as tmp:
        result = asyncio.run(run(sessions, duration, Path(tmp), users=1 if args.smoke else 0,
                                 chunk_ms=args.chunk_ms, direct=args.session_svc,
                                 max_live=max_live, linger_ms=args.trunk_linger_ms,
                                 participants=args.participants, languages=args.languages,
                                 people=args.people))
    result["smoke"] = args.smoke
    result["command"] = " ".join(["python -m bench.load", *(argv if argv is not None else sys.argv[1:])])
    kwargs = {"out_dir": args.out} if args.out else {}
    name = "load_session_svc" if args.session_svc else "load"
    if args.participants != (2,):
        name = "multiparty_" + name
    if args.chunk_ms != loadgen.CHUNK_MS:
        name += f"_{args.chunk_ms}ms"
    path = write_result(name, result, **kwargs)
    sys.stdout.write(report(result) + f"\n\nwritten to {path}\n")


if __name__ == "__main__":
    main()
