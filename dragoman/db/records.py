"""Queries on the session tables that more than one service needs.

session_svc writes sessions and translation logs and pages through a
user's history; the gateway exports and deletes a user's data; the
`dragoman keys rotate` command re-encrypts the logs. They share the row
types, the encryption of log text and these queries.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import sql
from psycopg.rows import dict_row

from dragoman.db.crypto import Keyring
from dragoman.v1 import auth_pb2
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb

STATUS = {
    "waiting": spb.SESSION_STATUS_WAITING,
    "active": spb.SESSION_STATUS_ACTIVE,
    "ended": spb.SESSION_STATUS_ENDED,
}
STAGES = ("endpointing", "recognition", "translation", "synthesis_first_chunk", "delivery", "total")
"""Per-stage latencies, as `<stage>_ms` columns and UtteranceLatency fields."""
ENCRYPTED = ("source_text", "translated_text")
"""The encrypted columns of translation_logs."""


def timestamp(moment: datetime | float) -> Timestamp:
    ts = Timestamp()
    if isinstance(moment, datetime):
        ts.FromDatetime(moment)
    else:
        ts.FromNanoseconds(int(moment * 1e9))
    return ts


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def associated_data(log_id: uuid.UUID | str, column: str) -> bytes:
    """What an encrypted log value is bound to: its row and column."""
    return f"translation_logs:{log_id}:{column}".encode()


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: str
    display_name: str
    language_code: str
    voice: str


@dataclass(frozen=True, slots=True)
class Metrics:
    """Numbers of an ended session."""

    utterance_count: int
    error_count: int
    mean_latency_ms: float
    min_latency_ms: float
    max_latency_ms: float
    duration_ms: int

    def to_proto(self) -> spb.SessionMetrics:
        return spb.SessionMetrics(
            utterance_count=self.utterance_count, error_count=self.error_count,
            mean_latency_ms=self.mean_latency_ms, min_latency_ms=self.min_latency_ms,
            max_latency_ms=self.max_latency_ms, duration_seconds=self.duration_ms / 1000,
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored."""

    session_id: str
    code: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    participants: tuple[Participant, ...]
    metrics: Metrics | None

    def to_proto(self) -> spb.Session:
        out = spb.Session(
            session_id=self.session_id,
            code=self.code if self.status == "waiting" else "",
            status=STATUS[self.status],  # type: ignore[arg-type]
            participants=[spb.Participant(
                user_id=p.user_id, display_name=p.display_name, language_code=p.language_code,
                voice=p.voice) for p in self.participants],
            create_time=timestamp(self.created_at),
        )
        if self.ended_at is not None:
            out.end_time.CopyFrom(timestamp(self.ended_at))
        if self.metrics is not None:
            out.metrics.CopyFrom(self.metrics.to_proto())
        return out


_SESSIONS = """
SELECT s.session_id, s.code, s.status, s.created_at, s.ended_at,
       m.utterance_count, m.error_count, m.mean_latency_ms, m.min_latency_ms,
       m.max_latency_ms, m.duration_ms
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
    """The replica (host:port) holding the live session with this id, or waiting
    with this pairing code; None when there is none, "" when it named none."""
    if session_id:
        cur = await conn.execute(
            "SELECT owner FROM sessions WHERE session_id = %s AND status <> 'ended'", (session_id,))
    else:
        cur = await conn.execute(
            "SELECT owner FROM sessions WHERE code = %s AND status = 'waiting'", (code,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def sessions_of(
    conn: psycopg.AsyncConnection, user_id: str, *, limit: int,
    before: tuple[datetime, str] | None = None, session_id: str = "",
) -> list[SessionRecord]:
    """The user's sessions, newest first: those created before `before`
    (keyset pagination: (created_at, session_id) strictly smaller), or the
    one with `session_id`."""
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
        await cur.execute(
            "SELECT session_id, user_id, display_name, language_code, voice "
            "FROM session_participants WHERE session_id = ANY(%s) ORDER BY session_id, position",
            ([r["session_id"] for r in rows],))
        members: dict[str, list[Participant]] = {}
        for p in await cur.fetchall():
            members.setdefault(p.pop("session_id"), []).append(Participant(**p))
    return [SessionRecord(
        session_id=r["session_id"], code=r["code"], status=r["status"],
        created_at=r["created_at"], ended_at=r["ended_at"],
        participants=tuple(members.get(r["session_id"], ())),
        metrics=None if r["utterance_count"] is None else Metrics(
            r["utterance_count"], r["error_count"], r["mean_latency_ms"], r["min_latency_ms"],
            r["max_latency_ms"], r["duration_ms"]),
    ) for r in rows]


@dataclass(frozen=True, slots=True)
class UtteranceLog:
    """One translated utterance, with the time each stage took."""

    session_id: str
    utterance_id: str
    speaker_user_id: str
    source_language_code: str
    target_language_code: str
    source_text: str
    translated_text: str
    latency_ms: dict[str, int]
    """Milliseconds per stage of STAGES."""
    created_at: datetime | None = None

    def to_proto(self) -> auth_pb2.UtteranceRecord:
        latency = cpb.UtteranceLatency()
        for stage in STAGES:
            d = Duration()
            d.FromMilliseconds(self.latency_ms[stage])
            getattr(latency, stage).CopyFrom(d)
        out = auth_pb2.UtteranceRecord(
            session_id=self.session_id, utterance_id=self.utterance_id,
            speaker_user_id=self.speaker_user_id, source_language_code=self.source_language_code,
            target_language_code=self.target_language_code, source_text=self.source_text,
            translated_text=self.translated_text, latency=latency)
        if self.created_at is not None:
            out.create_time.CopyFrom(timestamp(self.created_at))
        return out


def _log_row(keyring: Keyring, log: UtteranceLog) -> dict[str, Any]:
    log_id = uuid.uuid4()
    key_id, source = keyring.encrypt(log.source_text, associated_data(log_id, "source_text"))
    _, translated = keyring.encrypt(log.translated_text, associated_data(log_id, "translated_text"))
    return {"log_id": log_id, "session_id": log.session_id, "utterance_id": log.utterance_id,
            "speaker": log.speaker_user_id, "source": log.source_language_code,
            "target": log.target_language_code, "key_id": key_id, "source_text": source,
            "translated_text": translated, **log.latency_ms}


async def add_utterances(
    conn: psycopg.AsyncConnection, keyring: Keyring, logs: Sequence[UtteranceLog]
) -> None:
    """Writes the log rows (text encrypted) and counts the sessions' messages, in one
    transaction."""
    stage_columns = ", ".join(f"{s}_ms" for s in STAGES)
    stage_values = ", ".join(f"%({s})s" for s in STAGES)
    counts = Counter(log.session_id for log in logs)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            sql.SQL(  # type: ignore[arg-type]
                "INSERT INTO translation_logs (log_id, session_id, utterance_id, speaker_user_id, "
                "source_language_code, target_language_code, key_id, source_text, translated_text, "
                f"{stage_columns}) VALUES (%(log_id)s, %(session_id)s, %(utterance_id)s, %(speaker)s, "
                f"%(source)s, %(target)s, %(key_id)s, %(source_text)s, %(translated_text)s, {stage_values})"
            ),
            [_log_row(keyring, log) for log in logs])
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
    return [UtteranceLog(
        session_id=r["session_id"], utterance_id=r["utterance_id"],
        speaker_user_id=r["speaker_user_id"], source_language_code=r["source_language_code"],
        target_language_code=r["target_language_code"],
        source_text=keyring.decrypt(
            r["key_id"], r["source_text"], associated_data(r["log_id"], "source_text")),
        translated_text=keyring.decrypt(
            r["key_id"], r["translated_text"], associated_data(r["log_id"], "translated_text")),
        latency_ms={s: r[f"{s}_ms"] for s in STAGES},
        created_at=r["created_at"],
    ) for r in rows]


@dataclass(frozen=True, slots=True)
class Deleted:
    """What deleting a user's session data removed."""

    sessions: int
    """Sessions the user took part in (whole sessions go once nobody is left)."""
    utterances: int
    """Log rows of what the user said."""


async def delete_session_data(conn: psycopg.AsyncConnection, user_id: str) -> Deleted:
    """Deletes what the user said and their part in sessions; sessions left
    without participants go entirely (metrics and logs by cascade). Run it
    inside the transaction that deletes the account."""
    cur = await conn.execute("DELETE FROM translation_logs WHERE speaker_user_id = %s", (user_id,))
    utterances = cur.rowcount
    cur = await conn.execute(
        "DELETE FROM session_participants WHERE user_id = %s RETURNING session_id", (user_id,))
    session_ids = [row[0] for row in await cur.fetchall()]
    await conn.execute(
        "DELETE FROM sessions s WHERE s.session_id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM session_participants p WHERE p.session_id = s.session_id)",
        (session_ids,))
    return Deleted(sessions=len(session_ids), utterances=utterances)


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
