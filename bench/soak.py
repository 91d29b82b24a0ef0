"""Soak: N two-party sessions talking for a long time; does any process's memory grow?

Starts the mesh as bench.chaos does (calibrated fakes for stt, mt and tts, each
in its own process, then session_svc and the gateway, on a scratch
PostgreSQL schema), then one bench.loadgen process that keeps N sessions
talking at real-time pace through the gateway for --minutes. Every
--sample-s it reads the resident memory (RSS) of every process. The report
gives, per process, RSS at the start of talking, after the warm-up, at 10
minutes and at the end, and the least-squares slope after the warm-up; a
process is flat when that slope is at most --flat-mb-per-min. The load
generator is listed but not judged: it keeps every measurement it takes.

The warm-up is what the mesh is meant to fill: each participant's event log
fills to its byte bound (session.event_buffer_bytes, 2 MiB) after about 90 s
of the fakes' speech (0.5 s chunks at 24 kHz, one 2 s utterance heard every
4 s), then stays there.

    python -m bench.soak [--sessions 100] [--minutes 30] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.chaos import ModelServices
from bench.common import (
    Children,
    free_address,
    machine,
    publish,
    scratch_database,
    service_env,
    table,
)
from bench.load import LIMITS_ENV, calibrated_delays
from dragoman import config

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency
    psutil = None

MODELS = ("stt", "mt", "tts")
FLAT_MB_PER_MIN = 1.0
"""Slope after warm-up at or under which a process is flat: a leak of 1 KB an
utterance at N=100 (1,500 utterances a minute) is 1.5 MB a minute."""
MAX_MINUTES = 60.0


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` in MiB (psutil, else /proc); None once it is gone."""
    if psutil is not None:
        try:
            return float(psutil.Process(pid).memory_info().rss) / 2**20
        except psutil.Error:
            return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return int(kb) / 1024 if kb is not None else None


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB a minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var * 60


def at(samples: list[dict[str, Any]], name: str, t_s: float) -> float | None:
    """RSS of `name` at the first sample at or after `t_s` (the last if none)."""
    values = [(s["t_s"], s["rss_mb"].get(name)) for s in samples if s["rss_mb"].get(name) is not None]
    if not values:
        return None
    return next((v for t, v in values if t >= t_s), values[-1][1])


def analyse(samples: list[dict[str, Any]], warmup_s: float, flat: float,
            judged: list[str]) -> dict[str, Any]:
    """Per process: start, after warm-up, 10 min, end, slope after warm-up; the verdict."""
    names = sorted({n for s in samples for n in s["rss_mb"]})
    out: dict[str, Any] = {}
    for name in names:
        after = [(s["t_s"], s["rss_mb"][name]) for s in samples
                 if s["t_s"] >= warmup_s and s["rss_mb"].get(name) is not None]
        slope = slope_mb_per_min(after)
        warm, end = at(samples, name, warmup_s), at(samples, name, samples[-1]["t_s"])
        row: dict[str, Any] = {
            "start_mb": at(samples, name, 0.0), "after_warmup_mb": warm,
            "at_10_min_mb": at(samples, name, 600.0) if samples[-1]["t_s"] >= 600 else None,
            "end_mb": end,
            "growth_after_warmup_mb": None if warm is None or end is None else round(end - warm, 1),
            "slope_after_warmup_mb_per_min": None if slope is None else round(slope, 3),
            "judged": name in judged,
        }
        if name in judged:
            row["verdict"] = "flat" if slope is not None and slope <= flat else (
                "growing" if slope is not None else "too short")
        out[name] = row
    return out


async def run(sessions: int, minutes: float, sample_s: float, warmup_s: float,
              work: Path) -> dict[str, Any]:
    delays, source = calibrated_delays()
    addresses = {name: free_address() for name in ("gateway", "session", *MODELS)}
    samples: list[dict[str, Any]] = []
    loadgen_out = work / "loadgen.json"
    ready = work / "ready"
    with scratch_database("soak") as db_env:
        children = Children(work / "logs", service_env(addresses, {
            **db_env, **LIMITS_ENV, "DRAGOMAN_AUTH_IDENTITY_KEY": secrets.token_urlsafe(48),
            "DRAGOMAN_SESSION_MAX_LIVE_SESSIONS": "0"}))
        models = ModelServices(children, addresses, delays)
        try:
            await models.start()
            pids = {f"fake_{role}": [models.processes[role].pid] for role in MODELS}
            for name, module in (("session", "session_svc.server"), ("gateway", "gateway.server")):
                child = children.spawn(name, ["-m", module], addresses[name])
                await children.wait_serving(child)
                pids["session_svc" if name == "session" else "gateway"] = [child.pid]
            gen = children.spawn("loadgen", [
                "-m", "bench.loadgen", "--gateway", addresses["gateway"],
                "--sessions", str(sessions), "--duration", f"{minutes * 60:g}",
                "--json", str(loadgen_out), "--quiet", "--ready-file", str(ready),
                "--channels", str(max(2, sessions // 50))])
            pids["loadgen"] = [gen.pid]
            while not ready.exists():
                if gen.popen.poll() is not None:
                    raise RuntimeError(f"the load generator exited:\n{gen.tail()}")
                await asyncio.sleep(0.2)
            t0 = time.monotonic()
            deadline = t0 + minutes * 60 + 120 + sessions * 0.5
            while True:
                t = time.monotonic() - t0
                rss: dict[str, float] = {}
                for name, group in pids.items():
                    values = [v for pid in group if (v := rss_mb(pid)) is not None]
                    if len(values) == len(group):
                        rss[name] = round(sum(values), 1)
                samples.append({"t_s": round(t, 1), "rss_mb": rss})
                if dead := [n for n in pids if n != "loadgen" and n not in rss]:
                    raise RuntimeError(f"{', '.join(dead)} died after {t:.0f} s")
                if t >= minutes * 60 or gen.popen.poll() is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(min(sample_s, max(0.0, minutes * 60 - t)))
            while gen.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        finally:
            await children.stop()
    try:
        talk = loadgen.summarise(raw := json.loads(loadgen_out.read_text()))
        load = {"sessions_started": raw["sessions_started"],
                "utterances_expected": raw["utterances_expected"],
                "utterances_heard": raw["utterances_measured"],
                "client_latency": talk["client_latency"], "error_count": talk["error_count"],
                "error_samples": talk["error_samples"]}
    except (OSError, ValueError, KeyError):
        load = {"error": "the load generator wrote no result"}
    return {"benchmark": "soak", "machine": machine(), "sessions": sessions, "minutes": minutes,
            "sample_s": sample_s, "warmup_s": warmup_s,
            "fake_delays_ms": {"endpoint": delays.endpoint_ms, "recognition": delays.recognition_ms,
                               "translation": delays.translation_ms,
                               "synthesis_first_chunk": delays.synthesis_ms},
            "fake_delays_source": source, "load": load, "samples": samples}


def judge(result: dict[str, Any], flat: float) -> dict[str, Any]:
    mesh = [n for n in result["samples"][0]["rss_mb"] if n != "loadgen"] if result["samples"] else []
    processes = analyse(result["samples"], result["warmup_s"], flat, mesh)
    growth = [p["growth_after_warmup_mb"] for p in processes.values()
              if p["judged"] and p["growth_after_warmup_mb"] is not None]
    verdicts = [p["verdict"] for p in processes.values() if p["judged"]]
    return {"processes": processes, "flat_mb_per_min": flat,
            "rss_growth_mb": round(sum(growth), 1),
            "verdict": "flat" if verdicts and all(v == "flat" for v in verdicts) else "growing"
            if "growing" in verdicts else "too short"}


def summary_line(result: dict[str, Any]) -> str:
    per = ",".join(f"{n}:{p['growth_after_warmup_mb']:+g}" for n, p in result["processes"].items()
                   if p["judged"] and p["growth_after_warmup_mb"] is not None)
    return (f"soak minutes={result['minutes']:g} sessions={result['sessions']} "
            f"rss_growth_mb={result['rss_growth_mb']:g} ({per}) verdict={result['verdict']}")


def report(result: dict[str, Any]) -> str:
    rows = [[name, p["start_mb"], p["after_warmup_mb"], p["at_10_min_mb"] or "-", p["end_mb"],
             p["growth_after_warmup_mb"], p["slope_after_warmup_mb_per_min"],
             p.get("verdict", "not judged (the load generator)")]
            for name, p in result["processes"].items()]
    load = result["load"]
    heard = (f"{load['utterances_heard']}/{load['utterances_expected']} utterances heard, "
             f"{load['error_count']} errors" if "error" not in load else load["error"])
    return "\n".join([
        f"{result['sessions']} sessions of 2 for {result['minutes']:g} min, calibrated fakes "
        f"({result['fake_delays_source']}); RSS every {result['sample_s']:g} s; warm-up "
        f"{result['warmup_s']:g} s; load average {result['machine']['load_average']} on "
        f"{result['machine']['cpu_count']} cores",
        heard,
        table(["process", "start MB", "after warm-up MB", "10 min MB", "end MB",
               "growth after warm-up MB", "slope MB/min", "verdict"], rows),
        f"flat: slope after warm-up <= {result['flat_mb_per_min']:g} MB/min",
    ])


def curve(result: dict[str, Any]) -> str:
    names = list(result["processes"])
    return table(["t s", *names], [[s["t_s"], *(s["rss_mb"].get(n, "-") for n in names)]
                                   for s in result["samples"]])


def findings(result: dict[str, Any]) -> list[str]:
    """What the run showed, in words drawn from its numbers."""
    judged = {n: p for n, p in result["processes"].items() if p["judged"]}
    steep = max(judged, key=lambda n: judged[n]["slope_after_warmup_mb_per_min"] or 0.0)
    p = judged[steep]
    said = [
        f"- This run: {result['minutes']:g} minutes at N={result['sessions']}. "
        + ("Every process of the mesh was flat after the warm-up"
           if result["verdict"] == "flat" else f"Verdict: {result['verdict']}")
        + f"; the steepest was {steep} at {p['slope_after_warmup_mb_per_min']:g} MB/min "
        f"({p['growth_after_warmup_mb']:+g} MB from the end of the warm-up to the end)."]
    if (session := judged.get("session_svc")) is not None:
        logs_mib = 2 * result["sessions"] * config.SessionSettings().event_buffer_bytes / 2**20
        said.append(
            f"- session_svc's warm-up ({session['start_mb']:g} -> {session['after_warmup_mb']:g} "
            f"MB) is mostly its event logs filling to their byte bound: {2 * result['sessions']} "
            f"participants x session.event_buffer_bytes = {logs_mib:g} MiB. Under the count bound "
            "alone (2048 events, about a third of them the fakes' 24 KB speech chunks) a log "
            "would go on growing for some 11 minutes, to about 16 MB per participant (an "
            "estimate from the fakes' mix of events, not measured).")
    said.append("- The load generator keeps every measurement it takes, so it grows; it is "
                "listed, not judged.")
    load, busy = result["load"], result["machine"]["load_average"]
    if "client_latency" in load and busy[0] > result["machine"]["cpu_count"]:
        lat = load["client_latency"]
        unheard = load["utterances_expected"] - load["utterances_heard"]
        said.append(
            f"- Latency is not what a soak measures. The load average was {busy[0]:g} on "
            f"{result['machine']['cpu_count']} cores at the end (other work shared the machine), "
            f"so the mesh fell behind real time: client latency p50 {lat['p50_ms'] / 1000:.1f} s, "
            f"p95 {lat['p95_ms'] / 1000:.1f} s, and the {unheard} utterances still queued "
            "when talking stopped count as "
            "not heard. Its memory stayed flat all the same, backlog included.")
    return said


def markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        "# bench.soak: memory of every process over a long run", "",
        f"Command: `{result['command']}`", "",
        "The default run is 30 minutes at N=100 (`python -m bench.soak`); a shorter "
        "`--minutes` run shows the same curve for less time.", "",
        "```", report(result), summary_line(result), "```", "",
        *findings(result), "",
        "RSS (MiB) of each process over the run:", "",
        "```", curve(result), "```", "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100, help="two-party sessions (default 100)")
    parser.add_argument("--minutes", type=float, default=30.0, help="talking time (default 30)")
    parser.add_argument("--sample-s", type=float, default=30.0, help="RSS sampling period")
    parser.add_argument("--warmup-minutes", type=float, default=3.0,
                        help="left out of the slope (default 3: the event logs fill in ~1.5)")
    parser.add_argument("--flat-mb-per-min", type=float, default=FLAT_MB_PER_MIN)
    parser.add_argument("--smoke", action="store_true",
                        help="3 sessions for 20 s, sampled every 2 s (the test suite's run)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sessions, args.minutes, args.sample_s, args.warmup_minutes = 3, 20 / 60, 2.0, 5 / 60
    if not 1 <= args.sessions <= loadgen.MAX_SESSIONS:
        parser.error(f"--sessions must be 1 to {loadgen.MAX_SESSIONS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be in (0, {MAX_MINUTES:g}]")
    with tempfile.TemporaryDirectory(prefix="dragoman-soak-") as tmp:
        result = asyncio.run(run(args.sessions, args.minutes, args.sample_s,
                                 args.warmup_minutes * 60, Path(tmp)))
    result.update(judge(result, args.flat_mb_per_min))
    result["smoke"] = args.smoke
    result["command"] = shlex.join(["python", "-m", "bench.soak", *(argv or sys.argv[1:])])
    publish("soak", result, args.out, markdown(result), report(result), summary_line(result))


if __name__ == "__main__":
    main()
