"""What keeping sessions for a takeover costs per event (session_svc.handover).

S two-party sessions, each with a conversation's stream of events (per
utterance: processing started, two partial transcripts, a final one, a
translation, SPEECH_CHUNKS chunks of synthesised speech, processing ended;
to both participants), appended at real-time pace on one event loop, as one
session_svc replica would. Run twice: with the event tails stored in
PostgreSQL (the writer task of session_svc.handover, an event sent once
stored) and without (sent at once). Reports the delay the store adds before
an event may be sent (append to stored, p50/p95/p99), the CPU the process
spends per event with and without, and the database's work: transactions,
rows and bytes per second, rows per transaction.

    python -m bench.handover [--sessions 20] [--seconds 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import machine, percentile, publish, table
from dragoman import config, db
from dragoman.db.testing import scratch_schema
from dragoman.v1 import conversation_pb2 as pb
from session_svc.events import EventLog
from session_svc.handover import Handover
from session_svc.records import Participant
from session_svc.sessions import Member, Session
from session_svc.store import PgSessionStore

UTTERANCE_S = 4.0
"""A new utterance per session this often (3 s said, 1 s of silence, as bench.chaos)."""
SPEECH_CHUNKS = 30
"""Chunks of synthesised speech per utterance and listener (100 ms each)."""
CHUNK_BYTES = 4800
"""One 100 ms chunk at 24 kHz, 16-bit."""
OWNER = "127.0.0.1:1"


class TimedLog(EventLog):
    """An event log recording how long each event waited to be stored."""

    waits: list[float] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.appended: dict[int, float] = {}

    def append(self, **kind: Any) -> pb.ConversationEvent:
        self.appended[self.last_sequence + 1] = time.perf_counter()
        return super().append(**kind)

    def mark_durable(self, sequence: int) -> None:
        now = time.perf_counter()
        for s in [s for s in self.appended if s <= sequence]:
            TimedLog.waits.append(now - self.appended.pop(s))
        super().mark_durable(sequence)


def utterance_events(n: int) -> list[dict[str, Any]]:
    """One utterance as events (each a kind=... for EventLog.append)."""
    uid = f"1-{n}"
    text = "the quick brown fox jumps over the lazy dog near the river bank"
    out: list[dict[str, Any]] = [
        {"processing_started": pb.ProcessingStarted(utterance_id=uid)},
        {"transcription": pb.Transcription(utterance_id=uid, text=text[:20])},
        {"transcription": pb.Transcription(utterance_id=uid, text=text[:40])},
        {"transcription": pb.Transcription(utterance_id=uid, text=text, is_final=True)},
        {"translation": pb.Translation(utterance_id=uid, source_text=text, text=text, is_final=True)},
    ]
    out += [{"speech_audio": pb.SpeechAudio(utterance_id=uid, data=bytes(CHUNK_BYTES), chunk_index=i,
                                            is_last=i == SPEECH_CHUNKS - 1)}
            for i in range(SPEECH_CHUNKS)]
    out.append({"processing_ended": pb.ProcessingEnded(utterance_id=uid)})
    return out


async def converse(session: Session, seconds: float, offset_s: float) -> int:
    """Appends the session's events at real-time pace; returns how many."""
    await asyncio.sleep(offset_s)
    count, n, start = 0, 0, time.monotonic()
    while time.monotonic() - start < seconds:
        n += 1
        events = utterance_events(n)
        step = UTTERANCE_S / len(events)
        for kind in events:
            for m in session.members:
                m.log.append(**kind)
                count += 1
            await asyncio.sleep(step)
    return count


async def one_run(settings: config.DbSettings, n: int, seconds: float, store: bool) -> dict[str, Any]:
    database = await db.open_database(settings)
    handover = Handover(database, OWNER) if store else None
    sessions = []
    try:
        pg = PgSessionStore(database)
        await pg.renew_owner(OWNER)
        for i in range(n):
            sid = f"bench-{store}-{i}"
            session = Session(sid, f"{i:06d}", time.time())
            await pg.add_session(sid, session.code, session.created_s,
                                 Participant(f"u{i}a", "A", "en", ""), OWNER)
            for side in "ab":
                log = TimedLog(sid, 2048, 2 * 2**20)
                member = Member(f"u{i}{side}", side, "en", "en", "", log)
                if handover is not None:
                    log.on_append = lambda _, s=session, m=member: handover.touch(s, m)
                session.members.append(member)
            sessions.append(session)
        TimedLog.waits = []
        cpu, wall = time.process_time(), time.monotonic()
        counts = await asyncio.gather(*(converse(s, seconds, i * UTTERANCE_S / n)
                                        for i, s in enumerate(sessions)))
        if handover is not None:
            await handover.flush()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        events = sum(counts)
        async with database.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*), coalesce(sum(length(event)), 0) "
                                     "FROM session_events")
            kept_rows, kept_bytes = await cur.fetchone()  # type: ignore[misc]
        waits = [w * 1000 for w in TimedLog.waits]
        return {
            "stored": store, "events": events, "events_per_s": round(events / wall),
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
            "wait_ms": {"p50": percentile(waits, 50), "p95": percentile(waits, 95),
                        "p99": percentile(waits, 99)} if waits else None,
            "transactions": handover.batches if handover else 0,
            "transactions_per_s": round(handover.batches / wall, 1) if handover else 0,
            "rows_per_transaction": round(handover.rows / handover.batches, 1)
            if handover and handover.batches else 0,
            "failed_rows": handover.failed if handover else 0,
            "tail_rows_kept": kept_rows, "tail_mib_kept": round(kept_bytes / 2**20, 1),
        }
    finally:
        if handover is not None:
            await handover.close()
        await database.close()


async def run(n: int, seconds: float) -> dict[str, Any]:
    runs = []
    for store in (False, True):
        with scratch_schema(prefix="handover") as settings:
            settings = dataclasses.replace(settings, pool_max_size=4)
            runs.append(await one_run(settings, n, seconds, store))
    plain, stored = runs
    return {
        "benchmark": "handover", "machine": machine(), "sessions": n, "seconds": seconds,
        "method": (f"{n} two-party sessions appending a conversation's events at real-time pace "
                   f"(an utterance every {UTTERANCE_S:g} s: 5 text events and {SPEECH_CHUNKS} "
                   f"speech chunks of {CHUNK_BYTES} bytes per listener) for {seconds:g} s on one "
                   "event loop, without and with the tails stored for a takeover"),
        "runs": runs,
        "extra_cpu_us_per_event": round(stored["cpu_us_per_event"] - plain["cpu_us_per_event"], 1),
    }


def report(result: dict[str, Any]) -> str:
    rows = [[("stored" if r["stored"] else "not stored"), r["events"], r["events_per_s"],
             r["cpu_us_per_event"], (r["wait_ms"] or {}).get("p50"), (r["wait_ms"] or {}).get("p95"),
             (r["wait_ms"] or {}).get("p99"), r["transactions_per_s"], r["rows_per_transaction"],
             r["tail_rows_kept"], r["tail_mib_kept"]] for r in result["runs"]]
    m = result["machine"]
    return "\n".join([
        f"{result['sessions']} sessions, {result['seconds']:g} s; load average "
        f"{m['load_average']} on {m['cpu_count']} cores",
        table(["tails", "events", "events/s", "CPU µs/event", "wait p50 ms", "wait p95 ms",
               "wait p99 ms", "transactions/s", "rows/transaction", "rows kept", "MiB kept"], rows),
        f"extra CPU per event: {result['extra_cpu_us_per_event']} µs",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.sessions, args.seconds))
    result["command"] = shlex.join(["python", "-m", "bench.handover", *(argv or sys.argv[1:])])
    text = report(result)
    publish("handover", result, args.out,
            "\n".join(["# bench.handover: storing event tails for a takeover", "",
                       f"Command: `{result['command']}`", "", f"Method: {result['method']}.", "",
                       "```", text, "```", ""]), text,
            f"extra_cpu_us_per_event={result['extra_cpu_us_per_event']}")


if __name__ == "__main__":
    main()
