"""Sessions, their participants and pairing codes.

Live sessions are in memory (members, event logs, streams); every change of
their lifecycle is also written to a `SessionStore`, which outlasts the
process and arbitrates pairing codes. A session has at most two members.
The creator gets a 6-digit code, unique among live sessions and valid for
`code_ttl_s` (then the waiting session ends); the partner joins with it.
Only members see a session: for anyone else it does not exist (NOT_FOUND),
so ids and codes leak nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dragoman import languages, metrics
from dragoman.config import SessionSettings
from dragoman.coverage import Inventory, Route
from dragoman.db.times import timestamp
from dragoman.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    shown,
)
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc import routes
from session_svc.events import EventLog
from session_svc.records import STAGES, Metrics, Participant, UtteranceLog
from session_svc.store import CodeTaken, Journal, SessionStore

if TYPE_CHECKING:
    from dragoman.overload import LoopLag
    from session_svc.conversation import Connection

log = logging.getLogger(__name__)

OWNER_RENEW_S = 10.0
"""How often a replica with an advertised address renews its owner lease."""
OWNER_SILENT_S = 60.0
"""An owner silent this long is gone: its live sessions are ended."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller, as the gateway asserted it."""

    user_id: str
    display_name: str


@dataclass
class Member:
    """A participant: who, which language, their event log and live stream."""

    user_id: str
    display_name: str
    language_code: str
    language: str
    voice: str
    log: EventLog
    output_rate_hz: int = 0
    utterance_count: int = 0
    connection: Connection | None = None
    state: int = spb.PARTICIPANT_STATE_JOINED
    """JOINED, LEFT (may join again) or REMOVED (may not)."""

    @property
    def participant_id(self) -> str:
        """How events name this participant (RosterEntry.participant_id)."""
        return self.user_id

    @property
    def present(self) -> bool:
        return self.state == spb.PARTICIPANT_STATE_JOINED

    def to_proto(self) -> spb.Participant:
        return spb.Participant(
            user_id=self.user_id, display_name=self.display_name,
            language_code=self.language_code, connected=self.connection is not None,
            voice=self.voice,
        )

    def record(self) -> Participant:
        return Participant(self.user_id, self.display_name, self.language_code, self.voice)


def metrics_proto(m: Metrics) -> spb.SessionMetrics:
    return spb.SessionMetrics(
        utterance_count=m.utterance_count, error_count=m.error_count,
        mean_latency_ms=m.mean_latency_ms, min_latency_ms=m.min_latency_ms,
        max_latency_ms=m.max_latency_ms, duration_seconds=m.duration_ms / 1000,
    )


@dataclass
class Session:
    session_id: str
    code: str
    created_s: float
    members: list[Member] = field(default_factory=list)
    status: int = spb.SESSION_STATUS_WAITING
    ended_s: float | None = None
    attended_s: float = 0.0
    """When a participant was last connected (or the session created or joined)."""
    latencies_ms: list[float] = field(default_factory=list)
    utterances: int = 0
    errors: int = 0
    journal: Callable[[UtteranceLog], None] | None = None
    """Where translated utterances are logged."""
    routes: dict[str, Route] = field(default_factory=dict)
    """How each member's speech reaches the other, by the speaker's user id (set on joining)."""
    one_way: bool = False
    """Only one direction is translated (the joiner allowed it)."""

    def member(self, user_id: str) -> Member | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def partner(self, member: Member) -> Member | None:
        """The first other participant present: the partner, in a session of two."""
        return next((m for m in self.members if m is not member and m.present), None)

    @property
    def host(self) -> Member:
        """The creator, who may lock the session and remove participants."""
        return self.members[0]

    def listeners(self, speaker: Member) -> list[Member]:
        """Everyone present who hears `speaker`, in roster order."""
        return [m for m in self.members if m is not speaker and m.present]

    def route_between(self, speaker: Member, listener: Member) -> Route | None:
        """How `speaker`'s speech reaches `listener`; None before joining (or unchecked)."""
        return self.routes.get(speaker.user_id)

    def route_from(self, speaker: Member) -> Route | None:
        """How `speaker`'s speech reaches their partner; None before pairing (or unchecked)."""
        return self.routes.get(speaker.user_id)

    def to_proto(self) -> spb.Session:
        out = spb.Session(
            session_id=self.session_id,
            code=self.code if self.status == spb.SESSION_STATUS_WAITING else "",
            status=self.status,  # type: ignore[arg-type]
            participants=[m.to_proto() for m in self.members],
            create_time=timestamp(self.created_s),
            routes=[routes.route_proto(self.routes[m.user_id])
                    for m in self.members if m.user_id in self.routes],
            one_way=self.one_way,
        )
        if self.ended_s is not None:
            out.end_time.CopyFrom(timestamp(self.ended_s))
            out.metrics.CopyFrom(metrics_proto(self.metrics()))
        return out

    def metrics(self) -> Metrics:
        lat = self.latencies_ms
        end = self.ended_s if self.ended_s is not None else time.time()
        return Metrics(
            utterance_count=self.utterances,
            error_count=self.errors,
            mean_latency_ms=sum(lat) / len(lat) if lat else 0.0,
            min_latency_ms=min(lat, default=0.0),
            max_latency_ms=max(lat, default=0.0),
            duration_ms=round((end - self.created_s) * 1000),
        )

    def record_error(self, speaker: Member) -> None:
        """Counts an utterance of `speaker` that failed somewhere in the pipeline."""
        self.errors += 1

    def record_utterance(
        self, speaker: Member, listener: Member, utterance_id: str, text: str, translation: str,
        latency: cpb.UtteranceLatency,
    ) -> None:
        """Counts a translated, delivered utterance and logs it (the pipeline calls this)."""
        self.utterances += 1
        self.latencies_ms.append(latency.total.ToMilliseconds())
        for stage in STAGES:
            metrics.UTTERANCE_STAGE.labels(stage).observe(getattr(latency, stage).ToNanoseconds() / 1e9)
        if self.journal is not None:
            self.journal(UtteranceLog(
                session_id=self.session_id, utterance_id=utterance_id,
                speaker_user_id=speaker.user_id, source_language_code=speaker.language_code,
                target_language_code=listener.language_code, source_text=text,
                translated_text=translation,
                latency_ms={stage: getattr(latency, stage).ToMilliseconds()
                            for stage in STAGES},
            ))


def random_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


EXPIRED = "pairing code expired"
ABANDONED = "abandoned: no participant connected"
REMOVED = "partner removed by the creator"
MAX_CODE_ATTEMPTS = 20
"""Codes tried before CreateSession gives up (only when nearly all are taken)."""
MAX_VOICE_CHARS = 128
"""Longest voice name taken (the catalogue's are a few dozen characters)."""
REFUSED_RETRY_S = 5.0
"""The retry-after of a refused new session: long enough for load to move or a replica to start."""
ENDED_KEEP_S = 300.0
"""How long an ended session stays in memory (for streams reading its last
events); after that only its record in the store remains."""


def check_voice(voice: str) -> None:
    """The voice is stored with the participant: PostgreSQL text holds no NUL, and no
    voice name has a control character."""
    if len(voice) > MAX_VOICE_CHARS or not voice.isprintable():
        raise InvalidArgument(
            f"voice must be a voice name of at most {MAX_VOICE_CHARS} printable characters, "
            f"got {shown(voice)}")


class SessionRegistry:
    """Every live session of this replica, and their durable record in `store`."""

    def __init__(
        self, settings: SessionSettings, store: SessionStore,
        codes: Callable[[], str] = random_code, owner: str = "",
        lag: LoopLag | None = None,
        inventory: Callable[[], Awaitable[Inventory]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.owner = owner
        """host:port this replica is reached at, recorded with its sessions."""
        self.lag = lag
        """The event loop's lateness: new sessions are refused while it is overloaded."""
        self.inventory = inventory
        """What the mesh serves: languages are checked against it on create and join."""
        self._live = 0
        self.journal = Journal(store)
        self._codes = codes
        self._sessions: dict[str, Session] = {}
        self._waiting: dict[str, str] = {}  # code -> session id

    def _new_member(
        self, session: Session, who: Identity, language_code: str, voice: str
    ) -> Member:
        return Member(
            user_id=who.user_id, display_name=who.display_name, language_code=language_code,
            language=languages.normalise(language_code), voice=voice,
            log=EventLog(session.session_id, self.settings.event_buffer),
        )

    async def _end_abandoned(self) -> None:
        """Ends the active sessions nobody has been connected to for `abandoned_after_s`."""
        cutoff = time.time() - self.settings.abandoned_after_s
        abandoned = [s for s in self._sessions.values()
                     if s.status == spb.SESSION_STATUS_ACTIVE and s.attended_s < cutoff
                     and all(m.connection is None for m in s.members)]
        for session in abandoned:
            await self._finish(session, ABANDONED)

    async def _expire_codes(self) -> None:
        """Ends the waiting sessions whose code expired, here and in the store."""
        cutoff = time.time() - self.settings.code_ttl_s
        expired = [self._sessions[sid] for sid in self._waiting.values()
                   if self._sessions[sid].created_s < cutoff]
        for session in expired:
            await self._finish(session, EXPIRED)
        await self.store.expire_waiting(cutoff)  # also those of replicas gone meanwhile

    async def keep_owner_lease(self, renew_s: float = OWNER_RENEW_S,
                               silent_s: float = OWNER_SILENT_S) -> None:
        """While this replica runs (with an `owner` address): renews its lease and
        ends the live sessions of owners silent for `silent_s`, whose state died
        with them, so gateways stop routing calls about them there."""
        while True:
            try:
                await self.store.renew_owner(self.owner)
                lost = await self.store.end_orphaned(silent_s)
                if lost:
                    log.warning("ended %d sessions of a session_svc replica that stopped", len(lost))
            except Exception:  # noqa: BLE001 - the database is back later; the lease loop goes on
                log.warning("cannot renew the session owner lease", exc_info=True)
            await asyncio.sleep(renew_s)

    def _evict_ended(self) -> None:
        cutoff = time.time() - ENDED_KEEP_S
        for sid, session in list(self._sessions.items()):
            if (session.ended_s is not None and session.ended_s < cutoff
                    and all(m.connection is None for m in session.members)):
                del self._sessions[sid]

    def _admit(self) -> None:
        """Refuses a new session when this replica holds its limit or its loop runs late:
        the sessions in progress keep their latency; the caller retries (elsewhere)."""
        limit = self.settings.max_live_sessions
        if limit and self._live >= limit:
            metrics.SESSIONS_REFUSED.labels("limit").inc()
            raise ResourceExhausted(
                f"this session_svc replica holds its limit of {limit} live sessions "
                "(session.max_live_sessions); retry shortly", retry_after_s=REFUSED_RETRY_S)
        lag_ms = self.lag.lag_s() * 1000 if self.lag is not None else 0.0
        if self.settings.overload_lag_ms and lag_ms > self.settings.overload_lag_ms:
            metrics.SESSIONS_REFUSED.labels("overload").inc()
            raise ResourceExhausted(
                f"this session_svc replica is overloaded (its event loop runs {lag_ms:.0f} ms "
                f"late, over session.overload_lag_ms={self.settings.overload_lag_ms}); "
                "retry shortly", retry_after_s=REFUSED_RETRY_S)

    async def create(self, who: Identity, language_code: str, voice: str) -> Session:
        check_voice(voice)
        language = languages.normalise(language_code)
        if self.inventory is not None:
            routes.check_speaker(await self.inventory(), language)
        self._evict_ended()
        await self._expire_codes()  # expired and abandoned ones no longer count against the limit
        await self._end_abandoned()
        self._admit()
        self._live += 1  # counted from here, so that creates running meanwhile see it
        try:
            return await self._add(who, language_code, voice)
        except BaseException:
            self._live -= 1
            raise

    async def _add(self, who: Identity, language_code: str, voice: str) -> Session:
        for _ in range(MAX_CODE_ATTEMPTS):
            code = self._codes()
            if code in self._waiting:
                continue
            now = time.time()
            session = Session(session_id=uuid.uuid4().hex, code=code, created_s=now,
                              attended_s=now, journal=self.journal.record)
            creator = self._new_member(session, who, language_code, voice)
            try:
                await self.store.add_session(
                    session.session_id, code, session.created_s, creator.record(), self.owner)
            except CodeTaken:
                continue  # a live session elsewhere (or a concurrent create) holds it
            session.members.append(creator)
            self._sessions[session.session_id] = session
            self._waiting[code] = session.session_id
            metrics.SESSIONS_ACTIVE.inc()
            return session
        raise ResourceExhausted("no free pairing code right now; retry shortly", retry_after_s=1.0)

    async def join(
        self, who: Identity, code: str, language_code: str, voice: str, allow_one_way: bool = False,
    ) -> Session:
        if len(code) != 6 or not code.isdigit():
            raise InvalidArgument(f"code must be 6 digits, got {shown(code)}")
        check_voice(voice)
        language = languages.normalise(language_code)
        await self._expire_codes()
        sid = self._waiting.get(code)
        if sid is None:
            raise NotFound(f"no session is waiting for code {code}")
        session = self._sessions[sid]
        if session.member(who.user_id) is not None:
            raise FailedPrecondition("you created this session; your partner must join it")
        creator = session.members[0]
        pair = None
        if self.inventory is not None:  # only for a right code: a wrong one costs what it did
            pair = routes.check_pair(await self.inventory(), creator.language, language, allow_one_way)
            if self._waiting.get(code) != sid:  # claimed (or ended) meanwhile
                raise NotFound(f"no session is waiting for code {code}")
        del self._waiting[code]  # claimed: a concurrent join of this code finds nothing
        joiner = self._new_member(session, who, language_code, voice)
        try:
            joined = await self.store.add_partner(session.session_id, joiner.record(), time.time())
        except BaseException:
            if session.status == spb.SESSION_STATUS_WAITING:
                self._waiting[code] = sid
            raise
        if not joined or session.status != spb.SESSION_STATUS_WAITING:
            raise NotFound(f"no session is waiting for code {code}")
        session.members.append(joiner)
        session.status = spb.SESSION_STATUS_ACTIVE
        session.attended_s = time.time()
        if pair is not None:
            session.routes = {creator.user_id: pair.there, joiner.user_id: pair.back}
            session.one_way = pair.one_way
        for me, other in ((creator, joiner), (joiner, creator)):
            me.log.append(session_paired=cpb.SessionPaired(
                partner_user_id=other.user_id, partner_display_name=other.display_name,
                partner_language_code=other.language_code, one_way=session.one_way,
            ))
        return session

    def get(self, who: Identity, session_id: str) -> tuple[Session, Member]:
        """A live (in memory) session of the caller."""
        if not session_id:
            raise InvalidArgument("session_id is required")
        session = self._sessions.get(session_id)
        member = session.member(who.user_id) if session else None
        if session is None or member is None:
            raise NotFound(f"session {shown(session_id, quote=False)} not found")
        return session, member

    def find_live(self, session_id: str) -> Session | None:
        """The session if this replica holds it and it has not ended, whoever asks."""
        session = self._sessions.get(session_id)
        return session if session and session.status != spb.SESSION_STATUS_ENDED else None

    async def end(self, who: Identity, session_id: str, reason: str) -> Session:
        session, _ = self.get(who, session_id)
        await self._finish(session, reason)
        return session

    async def remove(self, who: Identity, session_id: str, user_id: str) -> Session:
        """The creator removes the partner: the partner's stream ends with
        PERMISSION_DENIED, and the session ends (a new one gets a new code)."""
        session, member = self.get(who, session_id)
        if session.members[0] is not member:
            raise PermissionDenied("only the session's creator can remove a participant")
        if not user_id:
            raise InvalidArgument("user_id is required")
        if user_id == who.user_id:
            raise InvalidArgument("the creator cannot remove themselves; use EndSession")
        partner = session.member(user_id)
        if partner is None:
            raise NotFound(f"user {shown(user_id, quote=False)} is not the partner in this session")
        if partner.connection is not None:
            partner.connection.fail(PermissionDenied(
                f"removed from session {session.session_id} by its creator"))
        log.info("partner removed by the creator", extra={"session_id": session.session_id})
        await self._finish(session, REMOVED)
        return session

    async def _finish(self, session: Session, reason: str) -> None:
        """Ends the session, then records the end and its metrics (once)."""
        if self._end(session, reason):
            await self.journal.flush()  # its utterance logs first, then the metrics
            await self.store.end_session(
                session.session_id, session.ended_s or time.time(), reason, session.metrics())

    def _end(self, session: Session, reason: str) -> bool:
        """Ends the session in memory; False if it had ended already."""
        if session.status == spb.SESSION_STATUS_ENDED:
            return False
        session.status = spb.SESSION_STATUS_ENDED
        session.ended_s = time.time()
        self._live -= 1
        metrics.SESSIONS_ACTIVE.dec()
        metrics.SESSION_DURATION.observe(session.ended_s - session.created_s)
        if self._waiting.get(session.code) == session.session_id:
            del self._waiting[session.code]
        for m in session.members:
            m.log.append(session_ended=cpb.SessionEnded(reason=reason))
            m.log.close()
        return True

    def live(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.status != spb.SESSION_STATUS_ENDED]
