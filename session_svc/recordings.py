"""Recordings of sessions, kept only with every participant's consent (docs/recording.md).

A participant asks (`Recordings.request`); everyone present is asked and answers
on their event stream; the recording starts once all have consented, and stops at
once when anyone withdraws, the session ends or someone joins who was not asked.
The live session holds its current recording (`Session.recording`); every change of
it is written to PostgreSQL before the caller hears of it, and what it keeps is
written there only while its row says 'recording' (checked in the insert itself),
so a withdrawal that has committed lets nothing more in.

What is kept of an utterance (`Item`): its transcript, a translation per language
heard, and, when asked for, the translated speech as Ogg Opus; all of it encrypted
with the text keys (`dragoman.db.crypto`), bound to its row. The speaker's own voice
is kept only when every participant opted in to that too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
from psycopg.rows import dict_row

from dragoman import db, logs, ogg
from dragoman.config import RecordingSettings
from dragoman.db import Database
from dragoman.db.crypto import Keyring
from dragoman.db.times import timestamp, to_datetime
from dragoman.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, shown
from dragoman.v1 import recording_pb2 as rpb
from dragoman.v1 import recording_pb2_grpc
from dragoman.v1 import sessions_pb2 as spb
from session_svc import paging
from session_svc.records import STANDARD
from session_svc.writer import BackgroundWriter

if TYPE_CHECKING:
    from session_svc.identity import Callers
    from session_svc.outbox import Pieces, Speech
    from session_svc.sessions import Member, Session, SessionRegistry

log = logging.getLogger(__name__)

AWAITING, RECORDING, STOPPED, DECLINED = "awaiting-consent", "recording", "stopped", "declined"
"""recordings.state."""
PENDING, GRANTED, REFUSED, WITHDRAWN = "pending", "granted", "declined", "withdrawn"
"""recording_consents.answer."""
STATE_PROTO = {AWAITING: rpb.RECORDING_STATE_AWAITING_CONSENT, RECORDING: rpb.RECORDING_STATE_RECORDING,
               STOPPED: rpb.RECORDING_STATE_STOPPED, DECLINED: rpb.RECORDING_STATE_DECLINED}
ANSWER_PROTO = {PENDING: rpb.RECORDING_CONSENT_ANSWER_PENDING,
                GRANTED: rpb.RECORDING_CONSENT_ANSWER_GRANTED,
                REFUSED: rpb.RECORDING_CONSENT_ANSWER_DECLINED,
                WITHDRAWN: rpb.RECORDING_CONSENT_ANSWER_WITHDRAWN}
TRANSCRIPT, TRANSLATION, SPEECH, VOICE = "transcript", "translation", "speech", "voice"
"""recording_items.kind."""
ENDED = "session ended"
JOINED = "a participant joined who was not asked"
LEFT = "a participant left before answering"
WITHDREW = "consent withdrawn"
REFUSAL = "consent refused"
WRITER_CAPACITY = 1000
"""Items waiting to be written; beyond, new ones are dropped (and logged)."""
MAX_ID_CHARS = 100


@dataclass
class Consent:
    """One participant's answer to a recording request."""

    user_id: str
    display_name: str
    answer: str = PENDING
    original_voice: bool = False
    answered_s: float | None = None


@dataclass
class Recording:
    """A recording as its session holds it (and as a row of `recordings`)."""

    recording_id: str
    session_id: str
    requested_by: str
    translated_speech: bool
    original_voice_requested: bool
    requested_s: float
    expires_s: float
    consents: list[Consent]
    state: str = AWAITING
    started_s: float | None = None
    stopped_s: float | None = None
    stop_reason: str = ""
    stopped_by: str = ""
    utterance_count: int = 0
    size_bytes: int = 0
    kept: set[tuple[str, str, str, str]] = field(default_factory=set, repr=False)
    """(utterance id, kind, language, voice) captured already: one listener each."""

    @property
    def original_voice(self) -> bool:
        """Whether the speakers' own voices are kept: asked for, and everyone opted in."""
        return self.original_voice_requested and all(c.original_voice for c in self.consents)

    @property
    def live(self) -> bool:
        return self.state in (AWAITING, RECORDING)

    def consent(self, user_id: str) -> Consent | None:
        return next((c for c in self.consents if c.user_id == user_id), None)


@dataclass(frozen=True, slots=True)
class Item:
    """What a recording keeps of an utterance: a text or Ogg Opus speech (`content`,
    plain here; encrypted at rest)."""

    recording_id: str
    utterance_id: str
    kind: str
    language_code: str
    voice: str
    speaker_user_id: str
    spoken_s: tuple[float, float]
    content: bytes
    duration_ms: int = 0
    pcm_rate_hz: int = 0
    """Speech still as PCM16 at this rate (encoded to Opus off the loop before it is
    written); 0: `content` is final."""


class VoiceTape:
    """A speaker's recent PCM16 while their session records their own voice, by sample
    offset in their stream, so that a final's offsets cut its utterance out of it."""

    KEEP_S = 60.0
    """Longest stretch kept: finals come within seconds of their speech."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self._pcm = bytearray()
        self._start = 0
        """Sample offset of the first kept sample."""
        self._end = 0
        """Samples fed so far."""

    def add(self, data: bytes, keep: bool) -> None:
        """Counts `data`, and keeps it when `keep` (the voice is recorded now)."""
        n = len(data) // 2
        if keep:
            self._pcm += data[: n * 2]
            excess = len(self._pcm) // 2 - int(self.KEEP_S * self.rate_hz)
            if excess > 0:
                del self._pcm[: excess * 2]
                self._start += excess
        else:
            self._pcm.clear()
            self._start = self._end + n
        self._end += n

    def cut(self, start_s: float, end_s: float) -> bytes:
        """The audio from `start_s` to `end_s` of the stream; empty unless all of it was kept."""
        a, b = round(start_s * self.rate_hz) - self._start, round(end_s * self.rate_hz) - self._start
        if a < 0 or b <= a or b > len(self._pcm) // 2:
            return b""
        return bytes(self._pcm[a * 2:b * 2])


def recording_proto(rec: Recording, now_s: float | None = None) -> rpb.Recording:
    out = rpb.Recording(
        recording_id=rec.recording_id, session_id=rec.session_id,
        state=STATE_PROTO[rec.state],  # type: ignore[arg-type]
        requested_by_participant_id=rec.requested_by,
        consents=[rpb.RecordingConsent(
            participant_id=c.user_id, display_name=c.display_name,
            answer=ANSWER_PROTO[c.answer],  # type: ignore[arg-type]
            original_voice=c.original_voice,
            answer_time=timestamp(c.answered_s) if c.answered_s is not None else None)
            for c in rec.consents],
        translated_speech=rec.translated_speech,
        original_voice_requested=rec.original_voice_requested,
        original_voice=rec.original_voice, request_time=timestamp(rec.requested_s),
        stop_reason=rec.stop_reason, stopped_by_participant_id=rec.stopped_by,
        expire_time=timestamp(rec.expires_s), utterance_count=rec.utterance_count,
        size_bytes=rec.size_bytes)
    if rec.started_s is not None:
        out.start_time.CopyFrom(timestamp(rec.started_s))
        end = rec.stopped_s if rec.stopped_s is not None else (now_s or time.time())
        out.duration.FromNanoseconds(int(max(0.0, end - rec.started_s) * 1e9))
    if rec.stopped_s is not None:
        out.stop_time.CopyFrom(timestamp(rec.stopped_s))
    return out


def session_of(recording_id: str) -> str:
    """The session a recording id belongs to (ids are `<session id>-<random>`): where the
    gateway routes calls about it."""
    return recording_id.partition("-")[0]


def speech_pcm(speech: Speech | Pieces) -> tuple[bytes, int]:
    """All the PCM16 a synthesis (or the pieces of one) made, and its rate."""
    parts = speech.pieces if hasattr(speech, "pieces") else [speech]
    chunks = [c for part in parts for c in part.chunks]  # type: ignore[attr-defined]
    rate = next((c.sample_rate_hertz for c in chunks if c.sample_rate_hertz), 0)
    return b"".join(c.audio for c in chunks), rate


# -- PostgreSQL ------------------------------------------------------------------


def _aad(item_id: uuid.UUID | str) -> bytes:
    return f"recording_items:{item_id}".encode()


_RECORDINGS = """
SELECT r.*,
  (SELECT count(DISTINCT utterance_id) FROM recording_items i
   WHERE i.recording_id = r.recording_id) AS utterance_count,
  (SELECT coalesce(sum(octet_length(content)), 0) FROM recording_items i
   WHERE i.recording_id = r.recording_id) AS size_bytes
FROM recordings r
WHERE r.expires_at > now() AND EXISTS (
  SELECT 1 FROM recording_consents me WHERE me.recording_id = r.recording_id
  AND me.user_id = %(user_id)s) AND {condition}
ORDER BY r.requested_at DESC, r.recording_id DESC
LIMIT %(limit)s
"""


class RecordingStore:
    """Recordings in PostgreSQL (session_svc's tables recordings, recording_consents and
    recording_items). Readers see only recordings they were asked about, and not expired."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def save(self, rec: Recording, *, new: bool = False) -> None:
        """Writes the recording's state and consents (and creates it when `new`)."""
        row = {"id": rec.recording_id, "session_id": rec.session_id, "by": rec.requested_by,
               "state": rec.state, "speech": rec.translated_speech,
               "voice_requested": rec.original_voice_requested, "voice": rec.original_voice,
               "requested": to_datetime(rec.requested_s), "expires": to_datetime(rec.expires_s),
               "started": to_datetime(rec.started_s) if rec.started_s is not None else None,
               "stopped": to_datetime(rec.stopped_s) if rec.stopped_s is not None else None,
               "reason": rec.stop_reason, "stopped_by": rec.stopped_by}
        async with self._db.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if new:
                await cur.execute(
                    "INSERT INTO recordings (recording_id, session_id, requested_by, state, "
                    "translated_speech, original_voice_requested, requested_at, expires_at) "
                    "VALUES (%(id)s, %(session_id)s, %(by)s, %(state)s, %(speech)s, "
                    "%(voice_requested)s, %(requested)s, %(expires)s)", row)
            await cur.execute(
                "UPDATE recordings SET state = %(state)s, original_voice = %(voice)s, "
                "started_at = %(started)s, stopped_at = %(stopped)s, stop_reason = %(reason)s, "
                "stopped_by = %(stopped_by)s WHERE recording_id = %(id)s", row)
            await cur.executemany(
                "INSERT INTO recording_consents (recording_id, user_id, position, display_name, "
                "answer, original_voice, answered_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (recording_id, user_id) DO UPDATE SET answer = excluded.answer, "
                "original_voice = excluded.original_voice, answered_at = excluded.answered_at",
                [(rec.recording_id, c.user_id, i + 1, c.display_name, c.answer, c.original_voice,
                  to_datetime(c.answered_s) if c.answered_s is not None else None)
                 for i, c in enumerate(rec.consents)])

    async def stop_session(self, session_id: str, reason: str, now: float) -> int:
        """Stops the session's recording that awaits consent or records, in the database
        alone: for a session taken over from another replica, whose consents lived in that
        replica's memory (docs/handover.md). The number stopped."""
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE recordings SET state = CASE state WHEN 'recording' THEN 'stopped' "
                "ELSE 'declined' END, stopped_at = %s, stop_reason = %s "
                "WHERE session_id = %s AND state IN ('awaiting-consent', 'recording')",
                (to_datetime(now), reason, session_id))
            return cur.rowcount

    async def add_item(self, item: Item) -> int:
        """Writes an item, encrypted, if its recording is recording now; the bytes kept
        (0: it was not)."""
        item_id = uuid.uuid4()
        key_id, content = self._db.keyring.seal(item.content, _aad(item_id))
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO recording_items (item_id, recording_id, utterance_id, kind, "
                "language_code, voice, speaker_user_id, spoken_at, spoken_until, duration_ms, "
                "key_id, content) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s "
                "WHERE EXISTS (SELECT 1 FROM recordings WHERE recording_id = %s "
                "AND state = 'recording') ON CONFLICT DO NOTHING",
                (item_id, item.recording_id, item.utterance_id, item.kind, item.language_code,
                 item.voice, item.speaker_user_id, to_datetime(item.spoken_s[0]),
                 to_datetime(item.spoken_s[1]), item.duration_ms, key_id, content,
                 item.recording_id))
            return len(content) if cur.rowcount else 0

    async def _select(self, conn: psycopg.AsyncConnection, user_id: str, limit: int,
                      condition: str, params: dict[str, Any]) -> list[Recording]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_RECORDINGS.format(condition=condition).encode(),
                              {"user_id": user_id, "limit": limit, **params})
            rows = await cur.fetchall()
            await cur.execute(
                "SELECT * FROM recording_consents WHERE recording_id = ANY(%s) "
                "ORDER BY recording_id, position", ([r["recording_id"] for r in rows],))
            consents: dict[str, list[Consent]] = {}
            for c in await cur.fetchall():
                consents.setdefault(c["recording_id"], []).append(Consent(
                    c["user_id"], c["display_name"], c["answer"], c["original_voice"],
                    _seconds(c["answered_at"])))
        return [Recording(
            recording_id=r["recording_id"], session_id=r["session_id"],
            requested_by=r["requested_by"], translated_speech=r["translated_speech"],
            original_voice_requested=r["original_voice_requested"],
            requested_s=r["requested_at"].timestamp(), expires_s=r["expires_at"].timestamp(),
            consents=consents.get(r["recording_id"], []), state=r["state"],
            started_s=_seconds(r["started_at"]), stopped_s=_seconds(r["stopped_at"]),
            stop_reason=r["stop_reason"], stopped_by=r["stopped_by"],
            utterance_count=r["utterance_count"], size_bytes=r["size_bytes"]) for r in rows]

    async def get(self, user_id: str, recording_id: str) -> Recording | None:
        """The recording, if `user_id` was asked about it and it has not expired."""
        try:
            async with self._db.pool.connection() as conn:
                found = await self._select(conn, user_id, 1, "r.recording_id = %(id)s",
                                           {"id": recording_id})
        except db.Unstorable:  # an id no row can have
            return None
        return found[0] if found else None

    async def list(self, user_id: str, limit: int, before: tuple[datetime, str] | None = None,
                   session_id: str = "") -> list[Recording]:
        """The user's recordings, newest request first, after `before` (keyset)."""
        condition, params = "true", {}
        if session_id:
            condition, params["session_id"] = "r.session_id = %(session_id)s", session_id
        if before is not None:
            condition += " AND (r.requested_at, r.recording_id) < (%(at)s, %(rid)s)"
            params["at"], params["rid"] = before
        async with self._db.pool.connection() as conn:
            return await self._select(conn, user_id, limit, condition, params)

    async def items(self, recording_id: str, *, text_only: bool = False) -> list[Item]:
        """What the recording kept, decrypted, in spoken order."""
        kinds = [TRANSCRIPT, TRANSLATION] if text_only else [TRANSCRIPT, TRANSLATION, SPEECH, VOICE]
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT * FROM recording_items WHERE recording_id = %s AND kind = ANY(%s) "
                "ORDER BY spoken_at, utterance_id, kind, language_code, voice",
                (recording_id, kinds))
            rows = await cur.fetchall()
        return [Item(r["recording_id"], r["utterance_id"], r["kind"], r["language_code"],
                     r["voice"], r["speaker_user_id"],
                     (r["spoken_at"].timestamp(), r["spoken_until"].timestamp()),
                     self._db.keyring.unseal(r["key_id"], bytes(r["content"]),
                                                    _aad(r["item_id"])),
                     r["duration_ms"]) for r in rows]

    async def delete_expired(self) -> int:
        """Deletes the recordings past their expiry, with all they kept; how many."""
        async with self._db.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM recordings WHERE expires_at <= now()")
            return cur.rowcount


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


async def delete_recordings_of(conn: psycopg.AsyncConnection, user_id: str) -> int:
    """Deletes, whole, every recording the user was asked about (run within the
    deletion of their data: session_svc.store.delete_user_data)."""
    cur = await conn.execute(
        "DELETE FROM recordings r WHERE EXISTS (SELECT 1 FROM recording_consents c "
        "WHERE c.recording_id = r.recording_id AND c.user_id = %s)", (user_id,))
    return cur.rowcount


async def rotate_keys(conn: psycopg.AsyncConnection, keyring: Keyring, batch_size: int = 500) -> int:
    """Re-encrypts every recording item not under the primary key; how many. Batches commit
    one by one, so it can be stopped and run again (as session_svc.store.rotate_keys)."""
    rotated = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT item_id, key_id, content FROM recording_items WHERE key_id <> %s "
                "LIMIT %s FOR UPDATE SKIP LOCKED", (keyring.primary_id, batch_size))
            rows = await cur.fetchall()
            for item_id, key_id, content in rows:
                plain = keyring.unseal(key_id, bytes(content), _aad(item_id))
                await conn.execute(
                    "UPDATE recording_items SET key_id = %s, content = %s WHERE item_id = %s",
                    (*keyring.seal(plain, _aad(item_id)), item_id))
        rotated += len(rows)
        if len(rows) < batch_size:
            return rotated


def utterances_proto(rec: Recording, items: Sequence[Item], language_codes: Sequence[str] = ()
                     ) -> list[rpb.RecordedUtterance]:
    """A recording's items as utterances in spoken order; speech only in `language_codes`
    (all when empty)."""
    names = {c.user_id: c.display_name for c in rec.consents}
    started = rec.started_s or rec.requested_s
    out: dict[str, rpb.RecordedUtterance] = {}
    for item in items:
        utt = out.get(item.utterance_id)
        if utt is None:
            utt = out[item.utterance_id] = rpb.RecordedUtterance(
                recording_id=rec.recording_id, utterance_id=item.utterance_id,
                speaker_participant_id=item.speaker_user_id,
                speaker_display_name=names.get(item.speaker_user_id, ""))
            utt.start_offset.FromNanoseconds(int(max(0.0, item.spoken_s[0] - started) * 1e9))
            utt.end_offset.FromNanoseconds(int(max(0.0, item.spoken_s[1] - started) * 1e9))
        if item.kind == TRANSCRIPT:
            utt.language_code, utt.text = item.language_code, item.content.decode()
        elif item.kind == TRANSLATION:
            utt.translations.add(target_language_code=item.language_code,
                                 text=item.content.decode())
        elif item.kind == SPEECH and (not language_codes or item.language_code in language_codes):
            speech = utt.speech.add(language_code=item.language_code, voice=item.voice,
                                    ogg_opus=item.content)
            speech.duration.FromMilliseconds(item.duration_ms)
        elif item.kind == VOICE:
            utt.original_voice_ogg_opus = item.content
    return list(out.values())


# -- live recordings ------------------------------------------------------------


class Recordings(BackgroundWriter):
    """The consent flow of live sessions' recordings, and the writer of what they keep."""

    def __init__(self, settings: RecordingSettings, store: RecordingStore) -> None:
        self.settings = settings
        self.store = store
        self._queue: asyncio.Queue[Item] = asyncio.Queue(WRITER_CAPACITY)
        self._task: asyncio.Task[None] | None = None
        self._held: weakref.WeakValueDictionary[str, Recording] = weakref.WeakValueDictionary()
        """Recordings of live sessions, by id: what the writer keeps counts in their size."""
        self.dropped = 0

    # consent

    async def request(self, session: Session, member: Member, translated_speech: bool,
                      original_voice: bool) -> Recording:
        if session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition("the session has ended")
        if not member.present:
            raise FailedPrecondition("you are not in this session: join it again first")
        if session.privacy_mode != STANDARD:
            raise FailedPrecondition(
                "only a PRIVACY_MODE_STANDARD session can be recorded: this one's mode keeps "
                "no text under the server's keys (docs/privacy.md)")
        if len(session.present) < 2:
            raise FailedPrecondition("nobody else is in the session yet: a recording needs "
                                     "the consent of everyone in it, so wait until they join")
        current = session.recording
        if current is not None and current.live:
            raise FailedPrecondition(
                f"recording {current.recording_id} is already "
                f"{'awaiting consent' if current.state == AWAITING else 'running'}")
        limit = self.settings.max_requests_per_session
        if session.recording_requests >= limit:
            raise ResourceExhausted(
                f"this session was asked to record {limit} times already (setting "
                "recording.max_requests_per_session): no more requests in it")
        session.recording_requests += 1
        now = time.time()
        rec = Recording(
            recording_id=f"{session.session_id}-{secrets.token_hex(8)}",
            session_id=session.session_id, requested_by=member.user_id,
            translated_speech=translated_speech, original_voice_requested=original_voice,
            requested_s=now, expires_s=now + self.settings.retention_days * 86400,
            consents=[Consent(m.user_id, m.display_name) for m in session.present])
        asker = rec.consent(member.user_id)
        assert asker is not None
        asker.answer, asker.original_voice, asker.answered_s = GRANTED, original_voice, now
        await self.store.save(rec, new=True)
        session.recording = self._held[rec.recording_id] = rec
        log.info("recording requested", extra={"session_id": session.session_id})
        self._announce(session, rec, rpb.RECORDING_CHANGE_REQUESTED, member.user_id)
        return rec

    async def answer(self, session: Session, rec: Recording, member: Member, consent: bool,
                     original_voice: bool) -> Recording:
        mine = rec.consent(member.user_id)
        if mine is None:
            raise NotFound(f"recording {shown(rec.recording_id, quote=False)} not found")
        if rec.state != AWAITING:
            raise FailedPrecondition(
                f"recording {rec.recording_id} is no longer awaiting consent (it is "
                f"{rec.state}); to stop a running one, use WithdrawRecordingConsent")
        if mine.answer != PENDING:
            raise FailedPrecondition(
                "you answered this request already; to take a consent back, use "
                "WithdrawRecordingConsent")
        now = time.time()
        mine.answered_s = now
        if not consent:
            mine.answer = REFUSED
            self._stop(rec, DECLINED, REFUSAL, member.user_id, now)
            change = rpb.RECORDING_CHANGE_DECLINED
        else:
            mine.answer, mine.original_voice = GRANTED, original_voice and rec.original_voice_requested
            change = rpb.RECORDING_CHANGE_CONSENTED
            if all(c.answer == GRANTED for c in rec.consents):
                rec.state, rec.started_s = RECORDING, now
        await self.store.save(rec)
        self._announce(session, rec, change, member.user_id)
        if rec.state == RECORDING:
            log.info("recording started", extra={"session_id": session.session_id})
            self._announce(session, rec, rpb.RECORDING_CHANGE_STARTED, "")
        return rec

    async def withdraw(self, session: Session, rec: Recording, member: Member) -> Recording:
        mine = rec.consent(member.user_id)
        if mine is None:
            raise NotFound(f"recording {shown(rec.recording_id, quote=False)} not found")
        if not rec.live:
            raise FailedPrecondition(f"recording {rec.recording_id} is not running: it is {rec.state}")
        now = time.time()
        mine.answer, mine.answered_s = (WITHDRAWN if mine.answer == GRANTED else REFUSED), now
        await self._halt(session, rec, WITHDREW, member.user_id, now)
        self._announce(session, rec, rpb.RECORDING_CHANGE_WITHDRAWN, member.user_id, WITHDREW)
        return rec

    async def stop(self, session: Session, *, joined: bool = False) -> None:
        """Stops the session's recording, if one is live: the session ends, or (`joined`)
        someone joined who was not asked."""
        reason = JOINED if joined else ENDED
        rec = session.recording
        if rec is None or not rec.live:
            return
        await self._halt(session, rec, reason, "", time.time())
        self._announce(session, rec, rpb.RECORDING_CHANGE_STOPPED, "", reason)

    async def left(self, session: Session, member: Member) -> None:
        """A participant left or was removed: a request they had not answered is declined
        (they can no longer answer it on their stream)."""
        rec = session.recording
        mine = rec.consent(member.user_id) if rec is not None else None
        if rec is None or mine is None or rec.state != AWAITING or mine.answer != PENDING:
            return
        await self._halt(session, rec, LEFT, member.user_id, time.time())
        self._announce(session, rec, rpb.RECORDING_CHANGE_DECLINED, member.user_id, LEFT)

    async def _halt(self, session: Session, rec: Recording, reason: str, by: str,
                    now: float) -> None:
        """Stops keeping at once (in memory), writes what was captured before, then the stop."""
        self._stop(rec, STOPPED if rec.state == RECORDING else DECLINED, reason, by, now)
        await self.flush()
        await self.store.save(rec)
        log.info("recording stopped", extra={"session_id": session.session_id, "reason": reason})

    @staticmethod
    def _stop(rec: Recording, state: str, reason: str, by: str, now: float) -> None:
        rec.state, rec.stopped_s, rec.stop_reason, rec.stopped_by = state, now, reason, by

    @staticmethod
    def _announce(session: Session, rec: Recording, change: int, about: str,
                  reason: str = "") -> None:
        event = rpb.RecordingChanged(change=change, participant_id=about,  # type: ignore[arg-type]
                                     recording=recording_proto(rec), reason=reason)
        asked = {c.user_id for c in rec.consents}
        for m in session.members:
            if m.present or (m.user_id == about and m.user_id in asked):
                m.log.append(recording_changed=event)

    # what is kept

    def capture(self, session: Session, speaker: Member, listener: Member, utterance_id: str,
                text: str, translation: str, spoken_s: tuple[float, float] | None,
                speech: Speech | Pieces | None, voice: tuple[bytes, int] | None = None) -> None:
        """Keeps what a listener heard of an utterance, if the session is recording and the
        utterance was spoken after everyone consented (each thing once); and the speaker's
        `voice` (PCM16, rate) when everyone opted in to that."""
        rec = session.recording
        if rec is None or rec.state != RECORDING or rec.started_s is None:
            return
        now = time.time()
        spoken = spoken_s or (now, now)
        if spoken[0] < rec.started_s:
            return  # begun before the last consent: nobody had agreed to it yet
        items = [(TRANSCRIPT, speaker.language_code, "", text.encode(), 0)]
        if rec.original_voice and voice is not None and voice[0] and voice[1]:
            items.append((VOICE, speaker.language_code, "", *voice))
        if listener.language != speaker.language:
            items.append((TRANSLATION, listener.language_code, "", translation.encode(), 0))
            if rec.translated_speech and speech is not None:
                pcm, rate = speech_pcm(speech)
                if pcm and rate:
                    items.append((SPEECH, listener.language_code, listener.voice, pcm, rate))
        for kind, language, voice, content, rate in items:
            key = (utterance_id, kind, language, voice)
            if key in rec.kept:
                continue
            rec.kept.add(key)
            if kind == TRANSCRIPT:
                rec.utterance_count += 1
            self._put(Item(rec.recording_id, utterance_id, kind, language, voice, speaker.user_id,
                           spoken, content, round(len(content) / 2 / rate * 1000) if rate else 0,
                           rate))

    def _put(self, item: Item) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_all(), name="recording-writer")
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("recording queue full: an item was not kept", extra={"dropped": self.dropped})

    async def flush(self) -> None:
        """Waits until every item captured so far is written (or failed)."""
        if self._task is not None:
            await self._queue.join()

    async def _write_all(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item.pcm_rate_hz:
                    opus = await asyncio.to_thread(
                        ogg.encode_opus, item.content, item.pcm_rate_hz,
                        self.settings.speech_bitrate_bps)
                    item = Item(item.recording_id, item.utterance_id, item.kind,
                                item.language_code, item.voice, item.speaker_user_id,
                                item.spoken_s, opus, item.duration_ms)
                kept = await self.store.add_item(item)
                if (held := self._held.get(item.recording_id)) is not None:
                    held.size_bytes += kept
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a lost item must not stop the writer
                log.exception("keeping a recording item failed")
            finally:
                self._queue.task_done()

    async def sweep(self) -> None:
        """Deletes expired recordings every `sweep_interval_s`, for as long as the service runs."""
        while True:
            try:
                deleted = await self.store.delete_expired()
                if deleted:
                    log.info("deleted %d expired recordings", deleted)
            except Exception:  # noqa: BLE001 - the database is back later; the sweep goes on
                log.warning("cannot delete expired recordings", exc_info=True)
            await asyncio.sleep(self.settings.sweep_interval_s)


# -- the public service ---------------------------------------------------------


class RecordingServicer(recording_pb2_grpc.RecordingServiceServicer):
    """RecordingService: the consent calls act on the live session (on its replica, where
    the gateway routes them by the recording id); the reads on PostgreSQL."""

    def __init__(self, registry: SessionRegistry, recordings: Recordings, callers: Callers) -> None:
        self.registry = registry
        self.recordings = recordings
        self.identity = callers

    @staticmethod
    def _missing(recording_id: str) -> NotFound:
        return NotFound(f"recording {shown(recording_id, quote=False)} not found")

    def _check_id(self, recording_id: str) -> None:
        if not recording_id:
            raise InvalidArgument("recording_id is required")
        if len(recording_id) > MAX_ID_CHARS:
            raise self._missing(recording_id)

    async def _live(self, context: grpc.aio.ServicerContext, recording_id: str
                    ) -> tuple[Session, Recording, Member]:
        """The live session's recording and the caller, if they were asked about it; else the
        precise refusal: NOT_FOUND for anyone not asked, FAILED_PRECONDITION once it is over."""
        who = self.identity(context)
        self._check_id(recording_id)
        session = self.registry.find_live(session_of(recording_id))
        member = session.member(who.user_id) if session is not None else None
        rec = session.recording if session is not None else None
        if (session is not None and member is not None and rec is not None
                and rec.recording_id == recording_id and rec.consent(who.user_id) is not None):
            logs.session_id.set(session.session_id)
            return session, rec, member
        stored = await self.recordings.store.get(who.user_id, recording_id)
        if stored is None:
            raise self._missing(recording_id)
        raise FailedPrecondition(f"recording {recording_id} is over: it is {stored.state}")

    async def RequestRecording(
        self, request: rpb.RequestRecordingRequest, context: grpc.aio.ServicerContext
    ) -> rpb.RequestRecordingResponse:
        who = self.identity(context)
        try:
            session, member = self.registry.get(who, request.session_id)
        except NotFound:  # no longer in memory: ended long ago, if it was the caller's at all
            with db.unstorable_as(NotFound(f"session {shown(request.session_id, quote=False)} "
                                           "not found")):
                ended = await self.registry.store.sessions_of(
                    who.user_id, limit=1, session_id=request.session_id)
            if ended:
                raise FailedPrecondition("the session has ended") from None
            raise
        logs.session_id.set(session.session_id)
        rec = await self.recordings.request(session, member, request.translated_speech,
                                            request.original_voice)
        return rpb.RequestRecordingResponse(recording=recording_proto(rec))

    async def AnswerRecordingConsent(
        self, request: rpb.AnswerRecordingConsentRequest, context: grpc.aio.ServicerContext
    ) -> rpb.AnswerRecordingConsentResponse:
        session, rec, member = await self._live(context, request.recording_id)
        rec = await self.recordings.answer(session, rec, member, request.consent,
                                           request.original_voice)
        return rpb.AnswerRecordingConsentResponse(recording=recording_proto(rec))

    async def WithdrawRecordingConsent(
        self, request: rpb.WithdrawRecordingConsentRequest, context: grpc.aio.ServicerContext
    ) -> rpb.WithdrawRecordingConsentResponse:
        session, rec, member = await self._live(context, request.recording_id)
        rec = await self.recordings.withdraw(session, rec, member)
        return rpb.WithdrawRecordingConsentResponse(recording=recording_proto(rec))

    async def _stored(self, context: grpc.aio.ServicerContext, recording_id: str) -> Recording:
        who = self.identity(context)
        self._check_id(recording_id)
        session = self.registry.find_live(session_of(recording_id))
        if session is not None:
            await self.recordings.flush()  # what was said so far
        rec = await self.recordings.store.get(who.user_id, recording_id)
        if rec is None:
            raise self._missing(recording_id)
        return rec

    async def ListRecordings(
        self, request: rpb.ListRecordingsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListRecordingsResponse:
        who = self.identity(context)
        size = paging.size(request.page_size)
        before = paging.parse(request.page_token, "ListRecordings")
        with db.unstorable_as(InvalidArgument(
                "page_token and session_id cannot hold a NUL character")):
            rows = await self.recordings.store.list(who.user_id, size + 1, before, request.session_id)
        reply = rpb.ListRecordingsResponse(recordings=[recording_proto(r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            reply.next_page_token = paging.token(to_datetime(last.requested_s), last.recording_id)
        return reply

    async def GetRecording(
        self, request: rpb.GetRecordingRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetRecordingResponse:
        return rpb.GetRecordingResponse(
            recording=recording_proto(await self._stored(context, request.recording_id)))

    async def DownloadRecording(
        self, request: rpb.DownloadRecordingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.DownloadRecordingResponse]:
        rec = await self._stored(context, request.recording_id)
        items = await self.recordings.store.items(rec.recording_id, text_only=request.text_only)
        yield rpb.DownloadRecordingResponse(recording=recording_proto(rec))
        for utterance in utterances_proto(rec, items, request.language_codes):
            yield rpb.DownloadRecordingResponse(utterance=utterance)
