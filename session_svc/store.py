"""Where sessions, translation logs and session metrics are kept.

Live state (members, event logs, streams, pipelines) stays in memory in
`sessions.SessionRegistry`; what must outlast it goes through the
`SessionStore` Protocol. `PgSessionStore` keeps it in PostgreSQL, where a
partial unique index makes a pairing code unique among live sessions, so
replicas sharing the database never hand out one code twice.

Utterance logs are written off the pipeline's path by a `Journal`: a
bounded queue and one writer task, flushed before a session's metrics are
written and when the service stops.

These are session_svc's tables (dragoman.db.migrate.TABLE_OWNERS): no other
service reads them. The gateway asks through `SessionDataService`
(`session_svc.server`); `dragoman keys rotate` calls `rotate_keys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql
from psycopg.rows import dict_row

from dragoman import db
from dragoman.db import Database, crypto
from dragoman.db.crypto import Keyring
from dragoman.db.times import to_datetime
from session_svc.recordings import delete_recordings_of
from session_svc.records import (
    STAGES,
    STANDARD,
    Deleted,
    Metrics,
    Participant,
    ParticipantMetrics,
    SealedLog,
    SessionRecord,
    UtteranceLog,
)
from session_svc.writer import BackgroundWriter

log = logging.getLogger(__name__)

JOURNAL_CAPACITY = 1000
"""Utterance logs waiting to be written; beyond, new ones are dropped (and counted)."""
JOURNAL_BATCH = 100
"""Most utterance logs written in one transaction."""
JOURNAL_LINGER_S = 0.25
"""How long the first queued log waits for others to share its transaction
(bench/results/settings.md). The logs are history, not what the listener waits
for; `Journal.flush` (EndSession, shutdown) does not wait for the linger."""
JOURNAL_RETRY_S = 30.0
"""How long a batch is tried again while the database cannot be reached (a restart
takes about a second: bench/results/chaos.md) before its logs are counted failed."""
JOURNAL_RETRY_MAX_S = 2.0
"""Longest wait between two tries of a batch (doubling from 0.1 s)."""
ENCRYPTED = ("source_text", "translated_text")
"""The encrypted columns of translation_logs."""


class CodeTaken(Exception):
    """The pairing code is held by another live session."""


class SessionStore(Protocol):
    """Durable record of sessions: one call, one statement or transaction."""

    @property
    def database(self) -> Database:
        """Where it keeps them (recordings share it: session_svc.recordings)."""
        ...

    async def add_session(
        self, session_id: str, code: str, created_s: float, creator: Participant, owner: str = "",
        max_participants: int = 2, privacy_mode: str = STANDARD,
    ) -> None:
        """Records a waiting session, its creator and the replica holding it
        (`owner`, host:port). Raises CodeTaken when a live session holds `code`."""
        ...

    async def add_participant(
        self, session_id: str, participant: Participant, position: int, joined_s: float,
    ) -> bool:
        """Records a participant joining at `position` (2 to 8), or joining again
        there, and makes the session active; False when it had ended."""
        ...

    async def set_participant_state(
        self, session_id: str, user_id: str, state: str, at_s: float,
    ) -> None:
        """Records that the participant left or was removed (`state`) at the time."""
        ...

    async def set_locked(self, session_id: str, locked: bool) -> None:
        """Records that the host locked or unlocked the session."""
        ...

    async def end_session(
        self, session_id: str, ended_s: float, reason: str, metrics: Metrics
    ) -> None:
        """Marks the session ended and writes its metrics rows, the session's and
        each participant's (once)."""
        ...

    async def expire_waiting(self, created_before_s: float) -> list[str]:
        """Ends the waiting sessions created before the time (their codes
        expired); returns their ids."""
        ...

    async def add_utterances(self, logs: Sequence[UtteranceLog]) -> None:
        """Writes translated utterances (text encrypted) with their latencies, all or none;
        those with a `reader_key` as that reader's sealed copy, without latencies."""
        ...

    async def renew_owner(self, owner: str) -> None:
        """Records that the replica `owner` is alive now."""
        ...

    async def end_orphaned(self, silent_s: float, released: bool = True) -> list[str]:
        """Ends the live sessions whose owner has not renewed for `silent_s`
        (with empty metrics); returns their ids. `released`: those of owners that gave
        their lease up too (session_svc.handover); False leaves them to be taken over."""
        ...

    async def sessions_of(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None = None,
        session_id: str = "",
    ) -> list[SessionRecord]:
        """The user's sessions, newest first (see `sessions_of`)."""
        ...

    async def utterances_of(self, user_id: str) -> list[UtteranceLog]:
        """Every logged utterance of the user's sessions, oldest first, decrypted."""
        ...

    async def transcript_of(self, session_id: str) -> list[UtteranceLog]:
        """Every logged utterance of the session, in the order spoken (see `transcript_of`)."""
        ...

    async def sealed_of(self, session_id: str, user_id: str) -> list[SealedLog]:
        """The user's sealed copy of a participant-keyed session, in the order spoken."""
        ...

    async def owner(self, *, session_id: str = "", code: str = "") -> str | None:
        """The replica holding the live session with this id, or the waiting
        one with this code (see `session_owner`)."""
        ...

    async def delete_user_data(self, user_id: str) -> Deleted:
        """Deletes what the user said and their part in sessions, in one
        transaction (see `delete_user_data`)."""
        ...


class PgSessionStore:
    """A `SessionStore` in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @property
    def database(self) -> Database:
        return self._db

    async def add_session(
        self, session_id: str, code: str, created_s: float, creator: Participant, owner: str = "",
        max_participants: int = 2, privacy_mode: str = STANDARD,
    ) -> None:
        created = to_datetime(created_s)
        async with self._db.pool.connection() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO sessions (session_id, code, created_at, owner, max_participants, "
                    "privacy_mode) VALUES (%s, %s, %s, %s, %s, %s)",
                    (session_id, code, created, owner, max_participants, privacy_mode))
            except psycopg.errors.UniqueViolation:
                raise CodeTaken(code) from None
            await _add_participant(conn, session_id, creator, 1, created, created)

    async def add_participant(
        self, session_id: str, participant: Participant, position: int, joined_s: float,
    ) -> bool:
        joined = to_datetime(joined_s)
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE sessions SET status = 'active', joined_at = coalesce(joined_at, %s) "
                "WHERE session_id = %s AND status <> 'ended' RETURNING created_at",
                (joined, session_id))
            row = await cur.fetchone()
            if row is None:
                return False
            await _add_participant(conn, session_id, participant, position, joined, row[0])
            return True

    async def set_participant_state(
        self, session_id: str, user_id: str, state: str, at_s: float,
    ) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "UPDATE session_participants SET state = %s, left_at = %s "
                "WHERE session_id = %s AND user_id = %s",
                (state, to_datetime(at_s), session_id, user_id))

    async def set_locked(self, session_id: str, locked: bool) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET locked = %s WHERE session_id = %s", (locked, session_id))

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
                "mean_latency_ms, min_latency_ms, max_latency_ms, duration_ms, "
                "transcribed_count, low_confidence_count) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
                (session_id, metrics.utterance_count, metrics.error_count, metrics.mean_latency_ms,
                 metrics.min_latency_ms, metrics.max_latency_ms, metrics.duration_ms,
                 metrics.transcribed_count, metrics.low_confidence_count))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO session_participant_metrics (session_id, user_id, "
                    "utterances_spoken, utterances_heard, mean_latency_ms, p95_latency_ms, "
                    "error_count) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (session_id, user_id) DO NOTHING",
                    [(session_id, p.user_id, p.utterances_spoken, p.utterances_heard,
                      p.mean_latency_ms, p.p95_latency_ms, p.error_count)
                     for p in metrics.participants])

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
            await add_utterances(conn, self._db.keyring, logs)

    async def renew_owner(self, owner: str) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO session_owners (owner, seen_at) VALUES (%s, now()) "
                "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at", (owner,))

    async def end_orphaned(self, silent_s: float, released: bool = True) -> list[str]:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH lost AS ("
                " UPDATE sessions s SET status = 'ended', ended_at = now(), "
                "  end_reason = 'its session service replica stopped'"
                " FROM session_owners o"
                " WHERE s.owner = o.owner AND s.status <> 'ended'"
                "  AND o.seen_at < now() - make_interval(secs => %s)"
                "  AND (%s OR o.seen_at <> '-infinity')"
                " RETURNING s.session_id, s.created_at) "
                "INSERT INTO session_metrics (session_id, utterance_count, error_count, "
                " mean_latency_ms, min_latency_ms, max_latency_ms, duration_ms) "
                "SELECT session_id, 0, 0, 0, 0, 0, "
                " (extract(epoch FROM now() - created_at) * 1000)::bigint FROM lost "
                "ON CONFLICT (session_id) DO NOTHING RETURNING session_id", (silent_s, released))
            return [row[0] for row in await cur.fetchall()]

    async def sessions_of(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None = None,
        session_id: str = "",
    ) -> list[SessionRecord]:
        async with self._db.pool.connection() as conn:
            return await sessions_of(
                conn, user_id, limit=limit, before=before, session_id=session_id)

    async def utterances_of(self, user_id: str) -> list[UtteranceLog]:
        async with self._db.pool.connection() as conn:
            return await utterances_of(conn, self._db.keyring, user_id)

    async def transcript_of(self, session_id: str) -> list[UtteranceLog]:
        async with self._db.pool.connection() as conn:
            return await transcript_of(conn, self._db.keyring, session_id)

    async def sealed_of(self, session_id: str, user_id: str) -> list[SealedLog]:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT log_id, utterance_id, start_ms, end_ms, sealed FROM participant_logs "
                "WHERE session_id = %s AND user_id = %s "
                "ORDER BY start_ms NULLS LAST, created_at, log_id", (session_id, user_id))
            return [SealedLog(str(r[0]), r[1], r[2], r[3], bytes(r[4]))
                    for r in await cur.fetchall()]

    async def owner(self, *, session_id: str = "", code: str = "") -> str | None:
        async with self._db.pool.connection() as conn:
            return await session_owner(conn, session_id=session_id, code=code)

    async def delete_user_data(self, user_id: str) -> Deleted:
        async with self._db.pool.connection() as conn, conn.transaction():
            return await delete_user_data(conn, user_id)


async def _add_participant(
    conn: psycopg.AsyncConnection, session_id: str, member: Participant, position: int,
    joined: datetime, session_created: datetime,
) -> None:
    """Inserts the participant's row, or (joining again) sets it joined."""
    await conn.execute(
        "INSERT INTO session_participants (session_id, user_id, position, display_name, "
        "language_code, voice, joined_at, session_created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id, user_id) DO UPDATE SET state = 'joined', left_at = NULL, "
        "language_code = excluded.language_code, voice = excluded.voice",
        (session_id, member.user_id, position, member.display_name, member.language_code,
         member.voice, joined, session_created))


def associated_data(log_id: uuid.UUID | str, column: str) -> bytes:
    """What an encrypted log value is bound to: its row and column."""
    return f"translation_logs:{log_id}:{column}".encode()


_SESSIONS = """
SELECT s.session_id, s.code, s.status, s.created_at, s.ended_at, s.locked, s.max_participants,
       s.privacy_mode,
       m.utterance_count, m.error_count, m.mean_latency_ms, m.min_latency_ms,
       m.max_latency_ms, m.duration_ms, m.transcribed_count, m.low_confidence_count
FROM session_participants me
JOIN sessions s USING (session_id)
LEFT JOIN session_metrics m USING (session_id)
WHERE me.user_id = %(user_id)s AND {condition}
ORDER BY me.session_created_at DESC, me.session_id DESC
LIMIT %(limit)s
"""


async def session_owner(
    conn: psycopg.AsyncConnection, *, session_id: str = "", code: str = ""
) -> str | None:
    """The replica (host:port) holding the live session with this id or pairing
    code; None when there is none, "" when it named none."""
    try:
        if session_id:
            cur = await conn.execute(
                "SELECT owner FROM sessions WHERE session_id = %s AND status <> 'ended'",
                (session_id,))
        else:  # a live session's code lets people join (or tells them why not) until it ends
            cur = await conn.execute(
                "SELECT owner FROM sessions WHERE code = %s AND status <> 'ended'", (code,))
    except db.Unstorable:  # a key no row can have
        return None
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def sessions_of(
    conn: psycopg.AsyncConnection, user_id: str, *, limit: int,
    before: tuple[datetime, str] | None = None, session_id: str = "",
) -> list[SessionRecord]:
    """The user's sessions, newest first: those created before `before`
    (keyset pagination: (created_at, session_id) strictly smaller), or the
    one with `session_id`. Raises db.Unstorable for a key no row can have."""
    params: dict[str, object] = {"user_id": user_id, "limit": limit}
    condition = "true"
    if session_id:
        condition, params["session_id"] = "me.session_id = %(session_id)s", session_id
    elif before is not None:
        condition = "(me.session_created_at, me.session_id) < (%(before_at)s, %(before_id)s)"
        params["before_at"], params["before_id"] = before
    query = sql.SQL(_SESSIONS.format(condition=condition))  # type: ignore[arg-type]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
        ids = [r["session_id"] for r in rows]
        await cur.execute(
            "SELECT session_id, user_id, display_name, language_code, voice, state "
            "FROM session_participants WHERE session_id = ANY(%s) ORDER BY session_id, position",
            (ids,))
        members: dict[str, list[Participant]] = {}
        for p in await cur.fetchall():
            members.setdefault(p.pop("session_id"), []).append(Participant(**p))
        await cur.execute(
            "SELECT m.* FROM session_participant_metrics m JOIN session_participants p "
            "USING (session_id, user_id) WHERE m.session_id = ANY(%s) "
            "ORDER BY m.session_id, p.position", (ids,))
        numbers: dict[str, list[ParticipantMetrics]] = {}
        for m in await cur.fetchall():
            numbers.setdefault(m.pop("session_id"), []).append(ParticipantMetrics(**m))
    return [SessionRecord(
        session_id=r["session_id"], code=r["code"], status=r["status"],
        created_at=r["created_at"], ended_at=r["ended_at"],
        participants=tuple(members.get(r["session_id"], ())),
        metrics=None if r["utterance_count"] is None else Metrics(
            r["utterance_count"], r["error_count"], r["mean_latency_ms"], r["min_latency_ms"],
            r["max_latency_ms"], r["duration_ms"], tuple(numbers.get(r["session_id"], ())),
            r["transcribed_count"], r["low_confidence_count"]),
        locked=r["locked"], max_participants=r["max_participants"],
        privacy_mode=r["privacy_mode"],
    ) for r in rows]


def sealed_data(log_id: uuid.UUID | str) -> bytes:
    """What a participant_logs row's sealed value is bound to: its row."""
    return f"participant_logs:{log_id}".encode()


def seal_log(key: bytes, log_id: uuid.UUID | str, log: UtteranceLog) -> bytes:
    """A reader's copy of an utterance, sealed with their key (AES-256-GCM):
    what the client opens (docs/privacy.md)."""
    plain = json.dumps({
        "utterance_id": log.utterance_id, "speaker_user_id": log.speaker_user_id,
        "source_language_code": log.source_language_code,
        "target_language_code": log.target_language_code,
        "source_text": log.source_text, "translated_text": log.translated_text,
    }, ensure_ascii=False).encode()
    return crypto.seal(AESGCM(key), plain, sealed_data(log_id))


def _log_row(keyring: Keyring, log: UtteranceLog) -> dict[str, Any]:
    log_id = uuid.uuid4()
    key_id, source = keyring.encrypt(log.source_text, associated_data(log_id, "source_text"))
    _, translated = keyring.encrypt(log.translated_text, associated_data(log_id, "translated_text"))
    return {"log_id": log_id, "session_id": log.session_id, "utterance_id": log.utterance_id,
            "speaker": log.speaker_user_id, "source": log.source_language_code,
            "target": log.target_language_code, "key_id": key_id, "source_text": source,
            "translated_text": translated, "start_ms": log.start_ms, "end_ms": log.end_ms,
            **log.latency_ms}


async def add_utterances(
    conn: psycopg.AsyncConnection, keyring: Keyring, logs: Sequence[UtteranceLog]
) -> None:
    """Writes the log rows (text encrypted) and counts the sessions' messages, in one
    transaction."""
    stage_columns = ", ".join(f"{s}_ms" for s in STAGES)
    stage_values = ", ".join(f"%({s})s" for s in STAGES)
    counts = Counter(log.session_id for log in logs)
    kept = [log for log in logs if log.reader_key is None]
    sealed = [(log_id := uuid.uuid4(), log.session_id, log.reader_user_id, log.utterance_id,
               log.start_ms, log.end_ms, seal_log(log.reader_key, log_id, log))
              for log in logs if log.reader_key is not None]
    async with conn.transaction(), conn.cursor() as cur:
        if sealed:
            await cur.executemany(
                "INSERT INTO participant_logs (log_id, session_id, user_id, utterance_id, "
                "start_ms, end_ms, sealed) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (session_id, user_id, utterance_id) DO NOTHING", sealed)
        await cur.executemany(
            sql.SQL(  # type: ignore[arg-type]
                "INSERT INTO translation_logs (log_id, session_id, utterance_id, speaker_user_id, "
                "source_language_code, target_language_code, key_id, source_text, translated_text, "
                f"start_ms, end_ms, {stage_columns}) VALUES (%(log_id)s, %(session_id)s, "
                "%(utterance_id)s, %(speaker)s, %(source)s, %(target)s, %(key_id)s, %(source_text)s, "
                f"%(translated_text)s, %(start_ms)s, %(end_ms)s, {stage_values})"
            ),
            [_log_row(keyring, log) for log in kept])
        await cur.executemany(
            "UPDATE sessions SET message_count = message_count + %s WHERE session_id = %s",
            [(n, session_id) for session_id, n in counts.items()])


async def utterances_of(
    conn: psycopg.AsyncConnection, keyring: Keyring, user_id: str
) -> list[UtteranceLog]:
    """Every logged utterance of the sessions the user took part in, oldest first, decrypted."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT l.* FROM translation_logs l JOIN session_participants me "
            "ON me.session_id = l.session_id AND me.user_id = %s "
            "ORDER BY l.created_at, l.log_id", (user_id,))
        rows = await cur.fetchall()
    return [_log(keyring, r) for r in rows]


async def transcript_of(
    conn: psycopg.AsyncConnection, keyring: Keyring, session_id: str
) -> list[UtteranceLog]:
    """Every logged utterance of the session (a row per target language), in the
    order spoken, decrypted."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM translation_logs WHERE session_id = %s "
            "ORDER BY start_ms NULLS LAST, created_at, log_id", (session_id,))
        rows = await cur.fetchall()
    return [_log(keyring, r) for r in rows]


def _log(keyring: Keyring, r: dict[str, Any]) -> UtteranceLog:
    """A translation_logs row, decrypted."""
    return UtteranceLog(
        session_id=r["session_id"], utterance_id=r["utterance_id"],
        speaker_user_id=r["speaker_user_id"], source_language_code=r["source_language_code"],
        target_language_code=r["target_language_code"],
        source_text=keyring.decrypt(
            r["key_id"], r["source_text"], associated_data(r["log_id"], "source_text")),
        translated_text=keyring.decrypt(
            r["key_id"], r["translated_text"], associated_data(r["log_id"], "translated_text")),
        latency_ms={s: r[f"{s}_ms"] for s in STAGES},
        created_at=r["created_at"], start_ms=r["start_ms"], end_ms=r["end_ms"],
    )


async def delete_user_data(conn: psycopg.AsyncConnection, user_id: str) -> Deleted:
    """Deletes what the user said, their vocabularies, the recordings they were asked about
    (whole) and their part in sessions; sessions left without participants go entirely
    (metrics and logs by cascade). Run it in a transaction: all of it or nothing."""
    recordings = await delete_recordings_of(conn, user_id)
    cur = await conn.execute("DELETE FROM translation_logs WHERE speaker_user_id = %s", (user_id,))
    utterances = cur.rowcount
    # a participant-keyed copy is its reader's: theirs go, the others' copies are the others'
    cur = await conn.execute("DELETE FROM participant_logs WHERE user_id = %s", (user_id,))
    utterances += cur.rowcount
    await conn.execute("DELETE FROM vocabularies WHERE user_id = %s", (user_id,))
    cur = await conn.execute(
        "DELETE FROM session_participants WHERE user_id = %s RETURNING session_id", (user_id,))
    session_ids = [row[0] for row in await cur.fetchall()]
    await conn.execute(
        "DELETE FROM sessions s WHERE s.session_id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM session_participants p WHERE p.session_id = s.session_id)",
        (session_ids,))
    return Deleted(sessions=len(session_ids), utterances=utterances, recordings=recordings)


async def rotate_keys(
    conn: psycopg.AsyncConnection, keyring: Keyring, batch_size: int = 500
) -> int:
    """Re-encrypts every log row not under the primary key; returns how many.
    Batches commit one by one, so it can be stopped and run again."""
    rotated = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT log_id, key_id, source_text, translated_text FROM translation_logs "
                "WHERE key_id <> %s LIMIT %s FOR UPDATE SKIP LOCKED",
                (keyring.primary_id, batch_size))
            rows: Sequence[tuple[uuid.UUID, str, bytes, bytes]] = await cur.fetchall()
            for log_id, key_id, *values in rows:
                sealed = []
                for column, value in zip(ENCRYPTED, values, strict=True):
                    aad = associated_data(log_id, column)
                    sealed.append(keyring.encrypt(keyring.decrypt(key_id, value, aad), aad)[1])
                await conn.execute(
                    "UPDATE translation_logs SET key_id = %s, source_text = %s, translated_text = %s "
                    "WHERE log_id = %s", (keyring.primary_id, *sealed, log_id))
        rotated += len(rows)
        if len(rows) < batch_size:
            return rotated


class Journal(BackgroundWriter):
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
                await self._write(entries)
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

    async def _write(self, entries: list[UtteranceLog]) -> None:
        """One batch, tried again for JOURNAL_RETRY_S while the database is unreachable."""
        deadline, wait_s = time.monotonic() + JOURNAL_RETRY_S, 0.1
        while True:
            try:
                await self._store.add_utterances(entries)
                return
            except psycopg.OperationalError as e:
                if time.monotonic() + wait_s > deadline:
                    raise
                log.warning("translation logs not written yet: database unavailable (%s)",
                            type(e).__name__, extra={"session_id": entries[0].session_id})
            await asyncio.sleep(wait_s)
            wait_s = min(2 * wait_s, JOURNAL_RETRY_MAX_S)
