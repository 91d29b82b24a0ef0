"""Sessions survive their replica (docs/handover.md).

Each live session's snapshot (members, code, settings, counters) and each
participant's event-log tail are kept in PostgreSQL (`session_state`,
`session_events`) by one writer task per replica, so that another replica can
take the session over when its owner stops: killed (its owner lease goes
silent) or drained (it gives its lease up). An event reaches a follower only
once it is stored (`EventLog.on_append`), so a client never holds an event the
adopter would not have: sequences go on from the stored tail, with no gap and
no repeat. What the dead replica was doing with an utterance is lost, and
said: the adopter reports each utterance whose processing had started but not
ended with a ConversationError (ERROR_CODE_REPLICA_LOST) naming it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dragoman import db
from dragoman.db import Database
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2 as spb
from session_svc.records import PARTICIPANT_KEYED, PRIVATE
from session_svc.writer import BackgroundWriter

if TYPE_CHECKING:
    from session_svc.sessions import Member, Session

log = logging.getLogger(__name__)

REDACTED_MODES = frozenset({PRIVATE, PARTICIPANT_KEYED})
"""Privacy modes whose stored tail keeps no text or speech (docs/handover.md)."""
CONTENT_FIELDS = ("text", "source_text", "data")
"""What a redacted event loses: what was said, its translation, its synthesised speech."""
RETRY_S = 0.5
"""Wait before writing again after the database refused a batch."""
FIRST_WAIT_S = 0.5
"""At most this long a batch waits for `first` (the translation logs) while the database
is unreachable; then the events are stored (or sent unstored) anyway."""


def redact(data: bytes) -> bytes:
    """The event without what was said (text, translation, speech), for a private or
    participant-keyed session's stored tail; other events as they are."""
    event = pb.ConversationEvent.FromString(data)
    kind = event.WhichOneof("kind")
    if kind not in ("transcription", "translation", "speech_audio"):
        return data
    inner = getattr(event, kind)
    for name in CONTENT_FIELDS:
        if name in inner.DESCRIPTOR.fields_by_name:
            inner.ClearField(name)
    return event.SerializeToString()


def sealed_data(session_id: str, user_id: str, sequence: int) -> bytes:
    """What a stored event is bound to: its row."""
    return f"session_events:{session_id}:{user_id}:{sequence}".encode()


def snapshot(session: Session, drained: bool) -> dict[str, Any]:
    """What an adopter rebuilds the session from, besides the event tails."""
    return {
        "code": session.code, "created_s": session.created_s, "status": session.status,
        "locked": session.locked, "max_participants": session.max_participants,
        "privacy_mode": session.privacy_mode, "one_way": session.one_way,
        "utterances": session.utterances, "errors": session.errors,
        "transcribed": session.transcribed, "low_confidence": session.low_confidence,
        "drained": drained,
        "members": [{
            "user_id": m.user_id, "display_name": m.display_name,
            "language_code": m.language_code, "voice": m.voice, "state": m.state,
            "output_rate_hz": m.output_rate_hz, "spoken": m.spoken, "errors": m.errors,
            "utterance_count": m.utterance_count,  # utterance ids go on, not repeat
            "connected": m.connection is not None,
            "key_check": base64.b64encode(m.key_check).decode() if m.key_check else None,
        } for m in session.members],
    }


@dataclass(frozen=True, slots=True)
class Adopted:
    """A session taken over: its snapshot and each member's stored tail."""

    session_id: str
    state: dict[str, Any]
    tails: dict[str, list[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a live session, and whether their lease has gone silent."""

    session_id: str
    owner: str
    silent: bool


def in_flight(events: Iterable[bytes]) -> tuple[list[str], list[str]]:
    """Utterances a stored tail shows started and not ended: the receiver's own, and
    others' (in order)."""
    own: dict[str, None] = {}
    heard: dict[str, None] = {}
    for data in events:
        event = pb.ConversationEvent.FromString(data)
        kind = event.WhichOneof("kind")
        if kind == "processing_started":
            started = own if event.processing_started.speaker == pb.SPEAKER_SELF else heard
            started[event.processing_started.utterance_id] = None
        elif kind == "processing_ended":
            ended = own if event.processing_ended.speaker == pb.SPEAKER_SELF else heard
            ended.pop(event.processing_ended.utterance_id, None)
        elif kind == "error" and event.error.utterance_id:
            own.pop(event.error.utterance_id, None)
    return list(own), list(heard)


class Handover(BackgroundWriter):
    """Writes live sessions' snapshots and event tails of this replica (`owner`), and
    takes over those of silent owners."""

    def __init__(self, database: Database, owner: str) -> None:
        self._db = database
        self.owner = owner
        self.draining = False
        """Set when this replica hands its sessions over: snapshots say so (the adopter
        then reports no speech lost)."""
        self._logs: dict[tuple[str, str], tuple[Session, Member]] = {}
        self._states: dict[str, Session] = {}
        self._wake = asyncio.Event()
        self._writing = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0
        self.failed = 0
        self.first: Callable[[], Awaitable[None]] | None = None
        """Written before each batch: the translation-log journal's flush. An utterance's
        log is queued as its last events are appended, so a stored tail that ends an
        utterance (which an adopter then does not report lost) has its log written: a
        replica killed in the journal's linger loses no log unreported
        (bench/results/chaos.md)."""

    def touch(self, session: Session, member: Member | None = None) -> None:
        """The session changed (and `member`'s log has new events): written soon."""
        self._states[session.session_id] = session
        if member is not None:
            self._logs[session.session_id, member.user_id] = (session, member)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_all(), name="session-handover")

    async def flush(self) -> None:
        """Waits until everything touched so far is written (or failed)."""
        while self._states or self._logs or self._writing:
            await asyncio.sleep(0.005)

    async def _write_all(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            logs, self._logs = self._logs, {}
            states, self._states = self._states, {}
            if not states:
                continue
            self._writing = True
            try:
                await self._write(states, logs)
            finally:
                self._writing = False

    async def _write(self, states: dict[str, Session],
                     logs: dict[tuple[str, str], tuple[Session, Member]]) -> None:
        keyring = self._db.keyring
        rows, trims, marks = [], [], []
        for (sid, uid), (session, member) in logs.items():
            taken = member.log.unsaved()
            if taken:
                marks.append((member.log, taken[-1][0]))
            if session.status == spb.SESSION_STATUS_ENDED or session.handed_over:
                continue  # ended: its rows go; handed over: the adopter writes from here
            redacting = session.privacy_mode in REDACTED_MODES
            for sequence, data in taken:
                key_id, sealed = keyring.seal(redact(data) if redacting else data,
                                              sealed_data(sid, uid, sequence))
                rows.append((sid, uid, sequence, key_id, sealed))
            trims.append((sid, uid, member.log.first_sequence))
        if self.first is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.first()), FIRST_WAIT_S)
        ended = [sid for sid, s in states.items() if s.status == spb.SESSION_STATUS_ENDED]
        saved = [(sid, json.dumps(snapshot(s, self.draining)), sid, self.owner)
                 for sid, s in states.items()
                 if s.status != spb.SESSION_STATUS_ENDED and not s.handed_over]
        while True:
            try:
                async with self._db.pool.connection() as conn, conn.transaction(), \
                        conn.cursor() as cur:
                    # visible to a taking-over replica at commit; a flush to disk per
                    # batch would guard only against PostgreSQL itself crashing
                    await cur.execute("SET LOCAL synchronous_commit = off")
                    if rows:
                        await cur.executemany(
                            "INSERT INTO session_events (session_id, user_id, sequence, key_id, "
                            "event) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
                    if trims:
                        await cur.executemany(
                            "DELETE FROM session_events WHERE session_id = %s AND user_id = %s "
                            "AND sequence < %s", trims)
                    if saved:  # only while this replica owns it: a lost lease writes nothing
                        await cur.executemany(
                            "INSERT INTO session_state (session_id, state) SELECT %s, %s::jsonb "
                            "WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = %s "
                            "AND owner = %s) ON CONFLICT (session_id) DO UPDATE "
                            "SET state = excluded.state, updated_at = now()", saved)
                    if ended:  # nothing of an ended session stays for a takeover
                        await cur.execute(
                            "DELETE FROM session_events WHERE session_id = ANY(%s)", (ended,))
                        await cur.execute(
                            "DELETE FROM session_state WHERE session_id = ANY(%s)", (ended,))
                self.batches += 1
                self.rows += len(rows)
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database outage must not stop the conversation
                # availability first: the events are sent unstored, and a takeover
                # meanwhile would resume from before them (docs/handover.md)
                self.failed += len(rows)
                log.warning("storing %d session events for handover failed", len(rows),
                            exc_info=True)
                await asyncio.sleep(RETRY_S)
                break
        for event_log, sequence in marks:
            event_log.mark_durable(sequence)

    async def release(self) -> None:
        """Gives this replica's lease up: its sessions are taken over at once."""
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "UPDATE session_owners SET seen_at = '-infinity' WHERE owner = %s", (self.owner,))

    async def owner_of(self, *, session_id: str = "", code: str = "",
                       silent_s: float) -> Owner | None:
        """The live session with this id (or code), its owner and whether that owner
        has been silent for `silent_s`."""
        column = "session_id" if session_id else "code"
        async with self._db.pool.connection() as conn:
            try:
                cur = await conn.execute(
                    f"SELECT s.session_id, s.owner, coalesce(o.seen_at < now() - make_interval("  # noqa: S608 - a column name
                    f"secs => %s), false) FROM sessions s LEFT JOIN session_owners o USING (owner) "
                    f"WHERE s.{column} = %s AND s.status <> 'ended'",
                    (silent_s, session_id or code))
            except db.Unstorable:  # a key no row can have
                return None
            row = await cur.fetchone()
        return None if row is None else Owner(row[0], row[1], row[2])

    async def claim(self, silent_s: float, session_id: str = "") -> list[Adopted]:
        """Makes this replica the owner of the live sessions (or the one) whose owner has
        been silent for `silent_s` and which can be taken over; returns what they need."""
        only = "AND s.session_id = %(session_id)s" if session_id else ""
        keyring = self._db.keyring
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE sessions s SET owner = %(me)s FROM session_owners o, session_state st "
                "WHERE s.owner = o.owner AND st.session_id = s.session_id "
                "AND s.status <> 'ended' AND o.owner <> %(me)s "
                f"AND o.seen_at < now() - make_interval(secs => %(silent)s) {only} "
                "RETURNING s.session_id, st.state",
                {"me": self.owner, "silent": silent_s, "session_id": session_id})
            claimed = {r[0]: r[1] for r in await cur.fetchall()}
            if not claimed:
                return []
            cur = await conn.execute(
                "SELECT session_id, user_id, sequence, key_id, event FROM session_events "
                "WHERE session_id = ANY(%s) ORDER BY session_id, user_id, sequence",
                (list(claimed),))
            tails: dict[str, dict[str, list[tuple[int, bytes]]]] = {}
            for sid, uid, sequence, key_id, sealed in await cur.fetchall():
                data = keyring.unseal(key_id, bytes(sealed), sealed_data(sid, uid, sequence))
                tails.setdefault(sid, {}).setdefault(uid, []).append((sequence, data))
        return [Adopted(sid, state, {uid: contiguous(t) for uid, t in tails.get(sid, {}).items()})
                for sid, state in claimed.items()]

    async def taken(self, session_ids: list[str]) -> list[str]:
        """Those of `session_ids` another replica owns now (it took them over)."""
        if not session_ids:
            return []
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT session_id FROM sessions WHERE session_id = ANY(%s) AND owner <> %s",
                (session_ids, self.owner))
            return [r[0] for r in await cur.fetchall()]


def contiguous(tail: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The newest run of consecutive sequences (a failed write can leave a hole)."""
    start = len(tail) - 1
    while start > 0 and tail[start - 1][0] == tail[start][0] - 1:
        start -= 1
    return tail[start:] if tail else []
