"""Sessions, their participants and pairing codes (in memory).

A session has at most two members. The creator gets a 6-digit code, unique
among waiting sessions and valid for `code_ttl_s`; the partner joins with it.
Only members see a session: for anyone else it does not exist (NOT_FOUND),
so ids and codes leak nothing.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import languages
from dragoman.config import SessionSettings
from dragoman.errors import FailedPrecondition, InvalidArgument, NotFound
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc.events import EventLog

if TYPE_CHECKING:
    from session_svc.conversation import Connection


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

    def to_proto(self) -> spb.Participant:
        return spb.Participant(
            user_id=self.user_id, display_name=self.display_name,
            language_code=self.language_code, connected=self.connection is not None,
            voice=self.voice,
        )


@dataclass
class Session:
    session_id: str
    code: str
    created_s: float
    members: list[Member] = field(default_factory=list)
    status: int = spb.SESSION_STATUS_WAITING
    ended_s: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    utterances: int = 0
    errors: int = 0

    def member(self, user_id: str) -> Member | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def partner(self, member: Member) -> Member | None:
        return next((m for m in self.members if m is not member), None)

    def to_proto(self) -> spb.Session:
        out = spb.Session(
            session_id=self.session_id,
            code=self.code if self.status == spb.SESSION_STATUS_WAITING else "",
            status=self.status,  # type: ignore[arg-type]
            participants=[m.to_proto() for m in self.members],
            create_time=_timestamp(self.created_s),
        )
        if self.ended_s is not None:
            out.end_time.CopyFrom(_timestamp(self.ended_s))
        return out

    def metrics(self) -> spb.SessionMetrics:
        lat = self.latencies_ms
        end = self.ended_s if self.ended_s is not None else time.time()
        return spb.SessionMetrics(
            utterance_count=self.utterances,
            mean_latency_ms=sum(lat) / len(lat) if lat else 0.0,
            min_latency_ms=min(lat, default=0.0),
            max_latency_ms=max(lat, default=0.0),
            error_count=self.errors,
            duration_seconds=end - self.created_s,
        )


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class SessionRegistry:
    """Every live session of this replica."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._waiting: dict[str, str] = {}  # code -> session id

    def _new_member(
        self, session: Session, who: Identity, language_code: str, voice: str
    ) -> Member:
        return Member(
            user_id=who.user_id, display_name=who.display_name, language_code=language_code,
            language=languages.base_language(language_code), voice=voice,
            log=EventLog(session.session_id, self.settings.event_buffer),
        )

    def _new_code(self) -> str:
        self._expire_codes()
        while True:
            code = f"{secrets.randbelow(1_000_000):06d}"
            if code not in self._waiting:
                return code

    def _expire_codes(self) -> None:
        cutoff = time.time() - self.settings.code_ttl_s
        for code, sid in list(self._waiting.items()):
            if self._sessions[sid].created_s < cutoff:
                del self._waiting[code]

    def create(self, who: Identity, language_code: str, voice: str) -> Session:
        languages.base_language(language_code)
        session = Session(session_id=uuid.uuid4().hex, code=self._new_code(), created_s=time.time())
        session.members.append(self._new_member(session, who, language_code, voice))
        self._sessions[session.session_id] = session
        self._waiting[session.code] = session.session_id
        return session

    def join(self, who: Identity, code: str, language_code: str, voice: str) -> Session:
        if len(code) != 6 or not code.isdigit():
            raise InvalidArgument(f"code must be 6 digits, got {code!r}")
        languages.base_language(language_code)
        self._expire_codes()
        sid = self._waiting.get(code)
        if sid is None:
            raise NotFound(f"no session is waiting for code {code}")
        session = self._sessions[sid]
        if session.member(who.user_id) is not None:
            raise FailedPrecondition("you created this session; your partner must join it")
        del self._waiting[code]
        joiner = self._new_member(session, who, language_code, voice)
        session.members.append(joiner)
        session.status = spb.SESSION_STATUS_ACTIVE
        creator = session.members[0]
        for me, other in ((creator, joiner), (joiner, creator)):
            me.log.append(session_paired=cpb.SessionPaired(
                partner_user_id=other.user_id, partner_display_name=other.display_name,
                partner_language_code=other.language_code,
            ))
        return session

    def get(self, who: Identity, session_id: str) -> tuple[Session, Member]:
        if not session_id:
            raise InvalidArgument("session_id is required")
        session = self._sessions.get(session_id)
        member = session.member(who.user_id) if session else None
        if session is None or member is None:
            raise NotFound(f"session {session_id} not found")
        return session, member

    def end(self, who: Identity, session_id: str, reason: str) -> Session:
        session, _ = self.get(who, session_id)
        if session.status != spb.SESSION_STATUS_ENDED:
            session.status = spb.SESSION_STATUS_ENDED
            session.ended_s = time.time()
            self._waiting.pop(session.code, None)
            for m in session.members:
                m.log.append(session_ended=cpb.SessionEnded(reason=reason))
                m.log.close()
        return session

    def live(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.status != spb.SESSION_STATUS_ENDED]

