"""Where sessions, translation logs and session metrics are kept.

Live state (members, event logs, streams, pipelines) stays in memory in
`sessions.SessionRegistry`; what must outlast it goes through the
`SessionStore` Protocol. `PgSessionStore` keeps it in PostgreSQL, where a
partial unique index makes a pairing code unique among live sessions, so
replicas sharing the database never hand out one code twice.

Utterance logs are written off the pipeline's path by a `Journal`: a
bounded queue and one writer task, flushed before a session's metrics are
written and when the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import psycopg

from dragoman.db import Database, records
from dragoman.db.records import Metrics, Participant, SessionRecord, UtteranceLog, to_datetime

log = logging.getLogger(__name__)

JOURNAL_CAPACITY = 1000
"""Utterance logs waiting to be written; beyond, new ones are dropped (and counted)."""
JOURNAL_BATCH = 100
"""Most utterance logs written in one transaction."""
JOURNAL_LINGER_S = 0.25
"""How long the first queued log waits for others to share its transaction
(bench/results/settings.md). The logs are history, not what the listener waits
for; `Journal.flush` (EndSession, shutdown) does not wait for the linger."""


class CodeTaken(Exception):
    """The pairing code is held by another live session."""


class SessionStore(Protocol):
    """Durable record of sessions: one call, one statement or transaction."""

    async def add_session(
        self, session_id: str, code: str, created_s: float, creator: Participant, owner: str = ""
    ) -> None:
        """Records a waiting session, its creator and the replica holding it
        (`owner`, host:port). Raises CodeTaken when a live session holds `code`."""
        ...

    async def add_partner(self, session_id: str, partner: Participant, joined_s: float) -> bool:
        """Records the partner and makes the session active; False when it was
        no longer waiting."""
        ...

    async def end_session(
        self, session_id: str, ended_s: float, reason: str, metrics: Metrics
    ) -> None:
        """Marks the session ended and writes its metrics row (once)."""
        ...

    async def expire_waiting(self, created_before_s: float) -> list[str]:
        """Ends the waiting sessions created before the time (their codes
        expired); returns their ids."""
        ...

    async def add_utterances(self, logs: Sequence[UtteranceLog]) -> None:
        """Writes translated utterances (text encrypted) with their latencies, all or none."""
        ...

    async def renew_owner(self, owner: str) -> None:
        """Records that the replica `owner` is alive now."""
        ...

    async def end_orphaned(self, silent_s: float) -> list[str]:
        """Ends the live sessions whose owner has not renewed for `silent_s`
        (with empty metrics); returns their ids."""
        ...

    async def sessions_of(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None = None,
        session_id: str = "",
    ) -> list[SessionRecord]:
        """The user's sessions, newest first (see `records.sessions_of`)."""
        ...


class PgSessionStore:
    """A `SessionStore` in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_session(
        self, session_id: str, code: str, created_s: float, creator: Participant, owner: str = ""
    ) -> None:
        created = to_datetime(created_s)
        async with self._db.pool.connection() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO sessions (session_id, code, created_at, owner) "
                    "VALUES (%s, %s, %s, %s)", (session_id, code, created, owner))
            except psycopg.errors.UniqueViolation:
                raise CodeTaken(code) from None
            await _add_participant(conn, session_id, creator, 1, created, created)

    async def add_partner(self, session_id: str, partner: Participant, joined_s: float) -> bool:
        joined = to_datetime(joined_s)
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE sessions SET status = 'active', joined_at = %s "
                "WHERE session_id = %s AND status = 'waiting' RETURNING created_at",
                (joined, session_id))
            row = await cur.fetchone()
            if row is None:
                return False
            await _add_participant(conn, session_id, partner, 2, joined, row[0])
            return True

    async def end_session(
        self, session_id: str, ended_s: float, reason: str, metrics: Metrics
    ) -> None:
        async with self._db.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE sessions SET status = 'ended', ended_at = %s, end_reason = %s "
                "WHERE session_id = %s AND status <> 'ended'",
                (to_datetime(ended_s), reason, session_id))
            await conn.execute(
                "INSERT INTO session_metrics (session_id, utterance_count, error_count, "
                "mean_latency_ms, min_latency_ms, max_latency_ms, duration_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
                (session_id, metrics.utterance_count, metrics.error_count, metrics.mean_latency_ms,
                 metrics.min_latency_ms, metrics.max_latency_ms, metrics.duration_ms))

    async def expire_waiting(self, created_before_s: float) -> list[str]:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE sessions SET status = 'ended', ended_at = now(), "
                "end_reason = 'pairing code expired' "
                "WHERE status = 'waiting' AND created_at < %s RETURNING session_id",
                (to_datetime(created_before_s),))
            return [row[0] for row in await cur.fetchall()]

    async def add_utterances(self, logs: Sequence[UtteranceLog]) -> None:
        async with self._db.pool.connection() as conn:
            await records.add_utterances(conn, self._db.keyring, logs)

    async def renew_owner(self, owner: str) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO session_owners (owner, seen_at) VALUES (%s, now()) "
                "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at", (owner,))

    async def end_orphaned(self, silent_s: float) -> list[str]:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH lost AS ("
                " UPDATE sessions s SET status = 'ended', ended_at = now(), "
                "  end_reason = 'its session service replica stopped'"
                " FROM session_owners o"
                " WHERE s.owner = o.owner AND s.status <> 'ended'"
                "  AND o.seen_at < now() - make_interval(secs => %s)"
                " RETURNING s.session_id, s.created_at) "
                "INSERT INTO session_metrics (session_id, utterance_count, error_count, "
                " mean_latency_ms, min_latency_ms, max_latency_ms, duration_ms) "
                "SELECT session_id, 0, 0, 0, 0, 0, "
                " (extract(epoch FROM now() - created_at) * 1000)::bigint FROM lost "
                "ON CONFLICT (session_id) DO NOTHING RETURNING session_id", (silent_s,))
            return [row[0] for row in await cur.fetchall()]

    async def sessions_of(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None = None,
        session_id: str = "",
    ) -> list[SessionRecord]:
        async with self._db.pool.connection() as conn:
            return await records.sessions_of(
                conn, user_id, limit=limit, before=before, session_id=session_id)


async def _add_participant(
    conn: psycopg.AsyncConnection, session_id: str, member: Participant, position: int,
    joined: datetime, session_created: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO session_participants (session_id, user_id, position, display_name, "
        "language_code, voice, joined_at, session_created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (session_id, member.user_id, position, member.display_name, member.language_code,
         member.voice, joined, session_created))


class Journal:
    """Writes utterance logs in the background, in order, without ever
    blocking the pipeline that reports them."""

    def __init__(self, store: SessionStore, capacity: int = JOURNAL_CAPACITY) -> None:
        self._store = store
        self._queue: asyncio.Queue[UtteranceLog] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        """Write what is queued without lingering (a flush, or a full batch)."""
        self.dropped = 0
        self.failed = 0

    def record(self, entry: UtteranceLog) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_all(), name="session-journal")
        try:
            self._queue.put_nowait(entry)
            if self._queue.qsize() >= JOURNAL_BATCH:
                self._hurry.set()
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("translation log queue full: utterance log dropped",
                        extra={"dropped": self.dropped})

    async def flush(self) -> None:
        """Waits until everything recorded so far is written (or failed)."""
        if self._task is not None:
            self._hurry.set()
            await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write_all(self) -> None:
        """Writes what has queued up within JOURNAL_LINGER_S of the first log
        in one transaction (up to JOURNAL_BATCH logs)."""
        while True:
            entries = [await self._queue.get()]
            if not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), JOURNAL_LINGER_S)
            while not self._queue.empty() and len(entries) < JOURNAL_BATCH:
                entries.append(self._queue.get_nowait())
            try:
                await self._store.add_utterances(entries)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a lost log row must not stop the journal
                self.failed += len(entries)
                log.exception("writing %d translation logs failed", len(entries),
                              extra={"session_id": entries[0].session_id})
            finally:
                if self._queue.empty():
                    self._hurry.clear()
                for _ in entries:
                    self._queue.task_done()
