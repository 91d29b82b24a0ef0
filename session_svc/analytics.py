"""What admins see of the session tables (dragoman.admin.v1, through the
gateway's AdminService and SessionDataService): the live sessions, and
analytics computed by SQL over the stored sessions, translation logs and
session metrics, never by reading rows into Python. Each query reads a
range of `created_at` through an index of migration 0011 (the test asserts
its plan has no sequential scan at 100,000 log rows).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from dragoman.admin.v1 import admin_pb2
from dragoman.db import Database
from dragoman.db.times import timestamp
from dragoman.errors import InvalidArgument
from session_svc.records import STAGES

DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_LIVE = 500
"""ListLiveSessions lists at most this many (newest first)."""

DAILY_SESSIONS = """
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS sessions,
       coalesce(sum(extract(epoch FROM ended_at - created_at)) / 60, 0)::float8 AS minutes
FROM sessions WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY day ORDER BY day"""

LANGUAGE_PAIRS = """
SELECT source_language_code, target_language_code, count(*) AS utterances
FROM translation_logs WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY 1, 2 ORDER BY utterances DESC, 1, 2"""

LATENCY = """
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, t.source_language_code,
       t.target_language_code, s.stage,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.ms) AS p95, count(*) AS n
FROM translation_logs t CROSS JOIN LATERAL (VALUES
    ('endpointing', t.endpointing_ms), ('recognition', t.recognition_ms),
    ('translation', t.translation_ms), ('synthesis_first_chunk', t.synthesis_first_chunk_ms),
    ('delivery', t.delivery_ms), ('total', t.total_ms)) AS s (stage, ms)
WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""

# errors among attempts (translated utterances and failed ones); low-confidence
# among final transcripts: of sessions whose metrics were written (they ended) in the range
SHARES = """
SELECT coalesce(sum(error_count)::float8 / nullif(sum(utterance_count + error_count), 0), 0),
       coalesce(sum(low_confidence_count)::float8 / nullif(sum(transcribed_count), 0), 0)
FROM session_metrics WHERE created_at >= %(start)s AND created_at < %(end)s"""

QUERIES = {"daily_sessions": DAILY_SESSIONS, "language_pairs": LANGUAGE_PAIRS,
           "latency": LATENCY, "shares": SHARES}

LIVE = """
SELECT session_id, status, created_at, (extract(epoch FROM now() - created_at) * 1000)::bigint
FROM sessions WHERE status <> 'ended' ORDER BY created_at DESC LIMIT %s"""
LIVE_PARTICIPANTS = """
SELECT session_id, user_id, display_name, language_code, state FROM session_participants
WHERE session_id = ANY (%s) ORDER BY session_id, position"""
LIVE_LATENCY = """
SELECT session_id, count(*), avg(endpointing_ms), avg(recognition_ms), avg(translation_ms),
       avg(synthesis_first_chunk_ms), avg(delivery_ms), avg(total_ms)
FROM translation_logs WHERE session_id = ANY (%s) GROUP BY session_id"""


def day_range(request: admin_pb2.GetAnalyticsRequest,
              today: datetime.date | None = None) -> tuple[datetime.datetime, datetime.datetime]:
    """[start, end) in UTC of the request's days; InvalidArgument for a bad one."""
    days = request.days or DEFAULT_DAYS
    if not 1 <= days <= MAX_DAYS:
        raise InvalidArgument(f"days must be 1 to {MAX_DAYS}, got {request.days}")
    if request.end_date:
        try:
            last = datetime.date.fromisoformat(request.end_date)
        except ValueError:
            raise InvalidArgument(
                f"end_date must be YYYY-MM-DD, got {request.end_date[:32]!r}") from None
    else:
        last = today or datetime.datetime.now(datetime.UTC).date()
    end = datetime.datetime.combine(last + datetime.timedelta(days=1), datetime.time(),
                                    datetime.UTC)
    return end - datetime.timedelta(days=days), end


class Analytics:
    """The admin queries over session_svc's tables."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def analytics(self, request: admin_pb2.GetAnalyticsRequest) -> admin_pb2.GetAnalyticsResponse:
        start, end = day_range(request)
        span: dict[str, Any] = {"start": start, "end": end}
        reply = admin_pb2.GetAnalyticsResponse()
        async with self._db.pool.connection() as conn:
            for day, sessions, minutes in await (await conn.execute(DAILY_SESSIONS, span)).fetchall():
                reply.daily_sessions.add(date=day.isoformat(), session_count=sessions, minutes=minutes)
            for source, target, n in await (await conn.execute(LANGUAGE_PAIRS, span)).fetchall():
                reply.language_pairs.add(source_language_code=source, target_language_code=target,
                                         utterance_count=n)
            for day, source, target, stage, p50, p95, n in await (
                    await conn.execute(LATENCY, span)).fetchall():
                reply.latency.add(date=day.isoformat(), source_language_code=source,
                                  target_language_code=target, stage=stage, p50_ms=p50, p95_ms=p95,
                                  utterance_count=n)
            row = await (await conn.execute(SHARES, span)).fetchone()
            assert row is not None  # an aggregate has one row
            reply.error_share, reply.low_confidence_share = row
        return reply

    async def live_sessions(
            self, errors_held: Callable[[str], int | None]) -> list[admin_pb2.LiveSession]:
        """The live sessions from the tables; `errors_held(session_id)` is this
        replica's in-memory error count, None for a session it does not hold."""
        async with self._db.pool.connection() as conn:
            rows = await (await conn.execute(LIVE, (MAX_LIVE,))).fetchall()
            sessions = {sid: admin_pb2.LiveSession(
                session_id=sid, status=status, create_time=timestamp(created), duration_ms=ms)
                for sid, status, created, ms in rows}
            ids = list(sessions)
            for sid, user_id, name, language, state in await (
                    await conn.execute(LIVE_PARTICIPANTS, (ids,))).fetchall():
                sessions[sid].participants.add(user_id=user_id, display_name=name,
                                               language_code=language, state=state)
            for sid, n, *means in await (await conn.execute(LIVE_LATENCY, (ids,))).fetchall():
                sessions[sid].latency.CopyFrom(admin_pb2.StageLatency(
                    utterance_count=n, **{f"{stage}_ms": float(mean)
                                          for stage, mean in zip(STAGES, means, strict=True)}))
        for session in sessions.values():
            session.language_codes.extend(sorted({p.language_code for p in session.participants}))
            held = errors_held(session.session_id)
            if held is not None:
                session.error_count, session.error_count_known = held, True
        return list(sessions.values())
