"""End-to-end latency per listener of a session of four, on real engines.

Starts the five services as separate processes (real engines, a scratch
PostgreSQL schema; bench.e2e_latency.serve) and puts four people in one
session, speaking `--languages` (default en, es, pt, en: three languages, so
each utterance is translated for two of them and the fourth, sharing the
speaker's language, reads the transcript). They take turns saying FLEURS
clips at real-time pace (bench.e2e_latency.say), each turn waited for until
every listener has it. Per listener of another language, and per utterance
they heard translated, it keeps:

- the server's stages from the ProcessingEnded that listener received
  (end of speech -> ... -> first audio handed to that listener's stream),
- the client's "last speech chunk sent -> first translated audio received by
  that listener" (one process, one clock), and
- the "listener wait": the part of the server's total that listener sat in
  silence, not still hearing the translation before (audio goes out in the
  order it was spoken, whole utterances one after another).

    python -m bench.party_latency [--smoke] [--languages en,es,pt,en] [--clips 3]

--smoke: one clip each, with the deterministic fake engines (plumbing only;
the numbers mean nothing) and results in a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import STAGES, Participant, latency_ms, machine, stage_summary, summary, table, write_result
from bench.e2e_latency import SMOKE_CLIP_S, TURN_TIMEOUT_S, clips, disperse, framed, gather, say, serve

DEFAULT_LANGUAGES = "en,es,pt,en"


def _listener_name(index: int, person: Participant) -> str:
    return f"{index + 1}:{person.language}"


def _script(languages: list[str], index: int, count: int) -> list[Path]:
    """The clips person `index` says: people who share a language take turns through its clips."""
    language = languages[index]
    found = clips(language, 1000)
    same, before = languages.count(language), languages[:index].count(language)
    return [found[(before + k * same) % len(found)] for k in range(count)]


async def converse(gateway: str, languages: list[str], per_person: int, max_s: float = 0.0) -> dict[str, Any]:
    """One session of `languages`: each person says `per_person` clips, in turns."""
    people, session_id = await gather(gateway, languages, "party", Participant)
    scripts = [_script(languages, i, per_person) for i in range(len(people))]
    turns: list[dict[str, Any]] = []
    try:
        for round_ in range(per_person):
            for i, speaker in enumerate(people):
                before = set(speaker.started)
                end_sent = await say(speaker, scripts[i][round_], max_s)
                quiet = await speaker.wait_quiet(TURN_TIMEOUT_S)
                new = sorted(speaker.started - before, key=lambda u: int(u.rsplit("-", 1)[1]))
                heard = {}
                for j, listener in enumerate(people):
                    if listener is speaker or listener.language == speaker.language:
                        continue
                    first = listener.first_audio_s.get(new[-1]) if new else None
                    stages = {u: latency_ms(listener.heard[u]) for u in new if u in listener.heard}
                    waits = [listener.listener_wait_ms(u, st["total"]) for u, st in stages.items()]
                    heard[_listener_name(j, listener)] = {
                        "client_ms": (first - end_sent) * 1000 if first is not None else None,
                        "stages": list(stages.values()),
                        "listener_wait_ms": [w for w in waits if w is not None],
                    }
                turns.append({"speaker": _listener_name(i, speaker), "clip": scripts[i][round_].name,
                              "utterances": new, "completed": quiet, "listeners": heard})
    finally:
        await disperse(people, session_id)
    return {"turns": turns, "errors": [e for p in people for e in p.errors],
            "people": [_listener_name(i, p) for i, p in enumerate(people)]}


def per_listener(turns: list[dict[str, Any]], people: list[str]) -> dict[str, Any]:
    """For each listener: the stages of what they heard translated, and the client time."""
    out: dict[str, Any] = {}
    for name in people:
        mine = [t["listeners"][name] for t in turns if name in t["listeners"]]
        stages = [s for h in mine for s in h["stages"]]
        out[name] = {"utterances": len(stages), "clips": len(mine),
                     "from": sorted({t["speaker"] for t in turns if name in t["listeners"]}),
                     "stages": stage_summary(stages),
                     "client_last_chunk_to_first_audio": summary(
                         [h["client_ms"] for h in mine if h["client_ms"] is not None]),
                     "listener_wait": summary([w for h in mine for w in h["listener_wait_ms"]])}
    return out


async def run(languages: list[str], per_person: int, fake: bool, work: Path) -> dict[str, Any]:
    """Smoke runs (`fake`) say only the first SMOKE_CLIP_S of each clip."""
    async with serve(work, fake) as gateway:
        session = await converse(gateway, languages, per_person, SMOKE_CLIP_S if fake else 0.0)
    listeners = per_listener(session["turns"], session["people"])
    every = [s for t in session["turns"] for h in t["listeners"].values() for s in h["stages"]]
    return {
        "benchmark": "party_latency",
        "machine": machine(),
        "engines": "fake (smoke: plumbing only)" if fake else "real (settings defaults)",
        "method": ("services as separate processes; one session of "
                   f"{len(languages)} ({', '.join(languages)}); FLEURS clips at real-time pace "
                   "in 100 ms chunks, one person at a time, each turn waited for until every "
                   "listener has it; per listener of another language: stages from the "
                   "ProcessingEnded it received, client time from the last speech chunk sent to "
                   "the first translated audio chunk it received"),
        "languages": languages,
        "clips_per_person": per_person,
        "listeners": listeners,
        "all_listeners": {"utterances": len(every), "stages": stage_summary(every)},
        "errors": session["errors"],
        "turns": session["turns"],
    }


def report(result: dict[str, Any]) -> str:
    rows = []
    for name, s in result["listeners"].items():
        total = s["stages"]["total"]
        c, w = s["client_last_chunk_to_first_audio"], s["listener_wait"]
        rows.append([name, ",".join(s["from"]), total["n"], total["p50_ms"], total["p95_ms"],
                     w["p50_ms"], w["p95_ms"], c["n"], c["p50_ms"], c["p95_ms"]])
    every = result["all_listeners"]["stages"]
    rows.append(["all", "", every["total"]["n"], every["total"]["p50_ms"], every["total"]["p95_ms"],
                 "", "", "", "", ""])
    return framed(result, [
        "listener = position:language in the session; server total = end of speech -> first "
        "translated audio handed to that listener's stream",
        table(["listener", "hears", "n", "total p50", "total p95", "wait p50", "wait p95",
               "clips", "client p50", "client p95"], rows),
        "wait: the part of the total the listener sat in silence, not still hearing the "
        "translation before it (bench.common.Participant.listener_wait_ms)",
        "per stage, all listeners: " + ", ".join(
            f"{stage} {every[stage]['p50_ms'] or 0:.0f}/{every[stage]['p95_ms'] or 0:.0f}"
            for stage in STAGES) + " ms (p50/p95)"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--languages", default=DEFAULT_LANGUAGES,
                        help=f"what each participant speaks, host first (default {DEFAULT_LANGUAGES})")
    parser.add_argument("--clips", type=int, default=3, help="clips each person says")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    languages = args.languages.split(",")
    if not 2 <= len(languages) <= 8:
        parser.error(f"--languages: 2 to 8 participants, got {len(languages)}")
    per_person = 1 if args.smoke else args.clips
    with tempfile.TemporaryDirectory(prefix="dragoman-party-") as tmp:
        result = asyncio.run(run(languages, per_person, args.smoke, Path(tmp)))
    result["smoke"] = args.smoke
    result["command"] = " ".join(["python -m bench.party_latency",
                                  *(argv if argv is not None else sys.argv[1:])])
    path = write_result("party_latency", result, **({"out_dir": args.out} if args.out else {}))
    sys.stdout.write(report(result) + f"\n\nwritten to {path}\n")


if __name__ == "__main__":
    main()
