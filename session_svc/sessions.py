"""Sessions, their participants and pairing codes.

Live sessions are in memory (members, event logs, streams); every change of
their lifecycle is also written to a `SessionStore`, which outlasts the
process and arbitrates pairing codes. A session has two to
`max_participants` members, its creator (the host) first. The host gets a
6-digit code, unique among live sessions; the others join with it while the
session is open: not ended, locked or full (a waiting session's code expires
after `code_ttl_s`, and the session with it). Only members see a session:
for anyone else it does not exist (NOT_FOUND), so ids and codes leak nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dragoman import languages, metrics
from dragoman.config import SessionSettings
from dragoman.coverage import Inventory, Route
from dragoman.db import crypto
from dragoman.db.times import timestamp
from dragoman.errors import (
    DragomanError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    shown,
)
from dragoman.stats import percentile
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc import routes
from session_svc.events import EventLog
from session_svc.handover import Adopted, Handover, in_flight
from session_svc.lexicon import EMPTY, Lexicon
from session_svc.records import (
    PARTICIPANT_KEYED,
    PRIVATE,
    STAGES,
    STANDARD,
    Metrics,
    Participant,
    ParticipantMetrics,
    UtteranceLog,
)
from session_svc.store import CodeTaken, Journal, SessionStore

if TYPE_CHECKING:
    from dragoman.overload import LoopLag
    from session_svc.conversation import Connection
    from session_svc.outbox import Outbox, Pieces, Speech
    from session_svc.recordings import Recording, Recordings

log = logging.getLogger(__name__)

REPLICA_STOPPED = "its session service replica stopped"
"""Why a session, or its recording, ended when another replica took the session over."""

PRIVACY_PROTO: dict[str, int] = {
    STANDARD: spb.PRIVACY_MODE_STANDARD, PRIVATE: spb.PRIVACY_MODE_PRIVATE,
    PARTICIPANT_KEYED: spb.PRIVACY_MODE_PARTICIPANT_KEYED,
}
"""sessions.privacy_mode as the proto enum."""
KEY_CHECK_DATA = b"dragoman history key check"
"""Associated data of Member.key_check."""


def privacy_mode(value: int) -> str:
    """The privacy mode a CreateSessionRequest asks for (unset: standard)."""
    if value == spb.PRIVACY_MODE_UNSPECIFIED:
        return STANDARD
    for name, number in PRIVACY_PROTO.items():
        if number == value:
            return name
    raise InvalidArgument(
        f"privacy_mode must be PRIVACY_MODE_STANDARD, PRIVACY_MODE_PRIVATE or "
        f"PRIVACY_MODE_PARTICIPANT_KEYED (or unset), got {value}")

OWNER_RENEW_S = 10.0
"""How often a replica with an advertised address renews its owner lease."""
OWNER_SILENT_S = 60.0
"""An owner silent this long is gone: its live sessions are ended."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller, as the gateway asserted it."""

    user_id: str
    display_name: str


STATE_NAMES: dict[int, str] = {
    spb.PARTICIPANT_STATE_JOINED: "joined",
    spb.PARTICIPANT_STATE_LEFT: "left",
    spb.PARTICIPANT_STATE_REMOVED: "removed",
}
"""ParticipantState as session_participants.state."""
STATES = {name: state for state, name in STATE_NAMES.items()}


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
    spoken: int = 0
    """Their utterances translated for someone."""
    heard_ms: list[float] = field(default_factory=list)
    """Latency of each translated utterance they heard."""
    errors: int = 0
    """Their utterances that failed in the pipeline."""
    outbox: Outbox | None = field(default=None, repr=False, compare=False)
    """What they are to hear, in order (session_svc.outbox; made on first use)."""
    lexicon: Lexicon = field(default=EMPTY, repr=False, compare=False)
    """Their vocabularies as they were when they created or joined (session_svc.lexicon)."""
    key_check: bytes | None = field(default=None, repr=False, compare=False)
    """In a participant-keyed session: nothing, sealed with the key of their first
    stream, so that a later stream with another key is refused (`check_history_key`)."""

    @property
    def history_key(self) -> bytes | None:
        """The key of their live stream in a participant-keyed session: held only while
        the stream is (the connection holds it)."""
        return (self.connection.join.history_key or None) if self.connection is not None else None

    def check_history_key(self, key: bytes) -> None:
        """Takes `key` for this participant's copy, or refuses it (INVALID_ARGUMENT)
        when it is not 32 bytes or not the key of their earlier streams."""
        if len(key) != crypto.KEY_BYTES:
            raise InvalidArgument(
                f"join.history_key must be {crypto.KEY_BYTES} bytes (AES-256), got {len(key)}")
        if self.key_check is None:
            self.key_check = crypto.seal(AESGCM(key), b"", KEY_CHECK_DATA)
            return
        try:
            crypto.unseal(AESGCM(key), self.key_check, KEY_CHECK_DATA)
        except crypto.DecryptionError:
            raise InvalidArgument(
                "join.history_key is not the key of your earlier streams in this session: "
                "your history here is sealed with that key and would stay unreadable; "
                "send the same key") from None

    @property
    def participant_id(self) -> str:
        """How events name this participant (RosterEntry.participant_id)."""
        return self.user_id

    @property
    def present(self) -> bool:
        return self.state == spb.PARTICIPANT_STATE_JOINED

    def to_proto(self, host: bool = False) -> spb.Participant:
        return spb.Participant(
            user_id=self.user_id, display_name=self.display_name,
            language_code=self.language_code, connected=self.connection is not None,
            voice=self.voice, host=host, state=self.state,  # type: ignore[arg-type]
        )

    def entry(self, host: bool = False) -> cpb.RosterEntry:
        return cpb.RosterEntry(
            participant_id=self.participant_id, display_name=self.display_name,
            language_code=self.language_code, connected=self.connection is not None, host=host)

    def record(self) -> Participant:
        return Participant(self.user_id, self.display_name, self.language_code, self.voice,
                           STATE_NAMES[self.state])

    def metrics(self) -> ParticipantMetrics:
        heard = self.heard_ms
        return ParticipantMetrics(
            user_id=self.user_id, utterances_spoken=self.spoken, utterances_heard=len(heard),
            mean_latency_ms=sum(heard) / len(heard) if heard else 0.0,
            p95_latency_ms=percentile(heard, 95) or 0.0, error_count=self.errors)


def metrics_proto(m: Metrics) -> spb.SessionMetrics:
    return spb.SessionMetrics(
        utterance_count=m.utterance_count, error_count=m.error_count,
        mean_latency_ms=m.mean_latency_ms, min_latency_ms=m.min_latency_ms,
        max_latency_ms=m.max_latency_ms, duration_seconds=m.duration_ms / 1000,
        participants=[spb.ParticipantMetrics(
            participant_id=p.user_id, utterances_spoken=p.utterances_spoken,
            utterances_heard=p.utterances_heard, mean_latency_ms=p.mean_latency_ms,
            p95_latency_ms=p.p95_latency_ms, error_count=p.error_count,
        ) for p in m.participants],
        low_confidence_share=m.low_confidence_share,
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
    transcribed: int = 0
    """Final transcripts with text (what `low_confidence_share` divides by)."""
    low_confidence: int = 0
    journal: Callable[[UtteranceLog], None] | None = None
    """Where translated utterances are logged."""
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    """How speech reaches a listener, by (source language, target language), base
    codes (set on joining)."""
    one_way: bool = False
    """Some direction is not translated (a joiner allowed it)."""
    locked: bool = False
    """The host locked the session against new joiners."""
    max_participants: int = 8
    privacy_mode: str = STANDARD
    """What is kept of the text: STANDARD, PRIVATE or PARTICIPANT_KEYED."""
    recorder: Recordings | None = None
    """Keeps what is said while `recording` records (session_svc.recordings)."""
    recording: Recording | None = None
    """The latest recording asked for (only one is awaiting consent or running at a time)."""
    recording_requests: int = 0
    """Recordings asked for in the session (setting recording.max_requests_per_session)."""
    handed_over: bool = False
    """Another replica holds it now (session_svc.handover): nothing more happens here."""
    _counted: set[str] = field(default_factory=set)
    """Utterances already counted as translated (one utterance, several listeners)."""
    _journaled: set[tuple[str, str]] = field(default_factory=set)
    """(utterance id, target language) already logged."""

    def member(self, user_id: str) -> Member | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def partner(self, member: Member) -> Member | None:
        """The first other participant present: the partner, in a session of two."""
        return next((m for m in self.members if m is not member and m.present), None)

    @property
    def host(self) -> Member:
        """The creator, who may lock the session and remove participants."""
        return self.members[0]

    @property
    def present(self) -> list[Member]:
        """Everyone in the session now, in roster order."""
        return [m for m in self.members if m.present]

    @property
    def full(self) -> bool:
        """Every seat is taken: one who left keeps theirs (they may come back), and
        one the host removed too (they stay listed, and positions run 1 to 8)."""
        return len(self.members) >= self.max_participants

    @property
    def joinable(self) -> bool:
        """Whether the code lets someone new in now."""
        return self.status != spb.SESSION_STATUS_ENDED and not self.locked and not self.full

    def listeners(self, speaker: Member) -> list[Member]:
        """Everyone present who hears `speaker`, in roster order."""
        return [m for m in self.present if m is not speaker]

    def route_between(self, speaker: Member, listener: Member) -> Route | None:
        """How `speaker`'s speech reaches `listener`; None before joining (or unchecked)."""
        return self.routes.get((speaker.language, listener.language))

    def languages(self) -> list[str]:
        """The languages of those present (base codes), in the order they joined."""
        return list(dict.fromkeys(m.language for m in self.present))

    def route_list(self) -> list[Route]:
        """Every checked route between the languages present, source by source."""
        spoken = self.languages()
        return [self.routes[s, t] for s in spoken for t in spoken
                if s != t and (s, t) in self.routes]

    def roster(self) -> list[cpb.RosterEntry]:
        """Who is in the session now, host first."""
        return [m.entry(host=m is self.host) for m in self.present]

    def announce(self, change: int, about: Member, *, tell_about: bool = True) -> None:
        """Tells everyone present what changed, with the roster after the change; and
        `about` too (even when they just left or were removed) unless not `tell_about`."""
        event = cpb.RosterChanged(change=change, participant_id=about.participant_id,  # type: ignore[arg-type]
                                  roster=self.roster(), locked=self.locked)
        told = [m for m in self.present if tell_about or m is not about]
        if tell_about and not about.present:
            told.append(about)
        for m in told:
            m.log.append(roster_changed=event)

    def to_proto(self) -> spb.Session:
        out = spb.Session(
            session_id=self.session_id,
            code=self.code if self.joinable else "",
            status=self.status,  # type: ignore[arg-type]
            participants=[m.to_proto(host=m is self.host) for m in self.members],
            create_time=timestamp(self.created_s),
            routes=[routes.route_proto(r) for r in self.route_list()],
            one_way=self.one_way, locked=self.locked, max_participants=self.max_participants,
            privacy_mode=PRIVACY_PROTO[self.privacy_mode],  # type: ignore[arg-type]
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
            participants=tuple(m.metrics() for m in self.members),
            transcribed_count=self.transcribed,
            low_confidence_count=self.low_confidence,
        )

    def record_transcript(self, low_confidence: bool) -> None:
        """Counts a final transcript with text, and whether the recogniser was unsure of it."""
        self.transcribed += 1
        self.low_confidence += low_confidence

    def record_error(self, speaker: Member) -> None:
        """Counts an utterance of `speaker` that failed somewhere in the pipeline."""
        self.errors += 1
        speaker.errors += 1

    def record_utterance(
        self, speaker: Member, listener: Member, utterance_id: str, text: str, translation: str,
        latency: cpb.UtteranceLatency, spoken_s: tuple[float, float] | None = None,
        speech: Speech | Pieces | None = None, voice: tuple[bytes, int] | None = None,
    ) -> None:
        """Counts a translated utterance delivered to `listener` and logs it once per
        target language (the pipeline calls this once per listener). `spoken_s`: the
        wall-clock times its audio started and ended arriving, when known; `speech`:
        what the listener heard and `voice` the speaker's own (PCM16, rate), kept while
        the session records (session_svc.recordings)."""
        if self.recorder is not None:
            self.recorder.capture(self, speaker, listener, utterance_id, text, translation,
                                  spoken_s, speech, voice)
        latency_ms = latency.total.ToMilliseconds()
        self.latencies_ms.append(latency_ms)
        listener.heard_ms.append(latency_ms)
        if utterance_id not in self._counted:
            self._counted.add(utterance_id)
            self.utterances += 1
            speaker.spoken += 1
            for stage in STAGES:
                metrics.UTTERANCE_STAGE.labels(stage).observe(
                    getattr(latency, stage).ToNanoseconds() / 1e9)
        if self.journal is None or self.privacy_mode == PRIVATE:
            return
        start_ms, end_ms = self._spoken_ms(spoken_s)
        entry = UtteranceLog(
            session_id=self.session_id, utterance_id=utterance_id,
            speaker_user_id=speaker.user_id, source_language_code=speaker.language_code,
            target_language_code=listener.language_code, source_text=text,
            translated_text=translation,
            latency_ms={stage: getattr(latency, stage).ToMilliseconds() for stage in STAGES},
            start_ms=start_ms, end_ms=end_ms,
        )
        if self.privacy_mode == PARTICIPANT_KEYED:
            # each reader's copy under their own key: what the listener heard, and (once)
            # what the speaker said, without another's translation
            copies = [(listener, entry)]
            if (utterance_id, speaker.user_id) not in self._journaled:
                copies.append((speaker, replace(
                    entry, target_language_code=speaker.language_code, translated_text="")))
            for reader, copy in copies:
                key = reader.history_key
                self._journaled.add((utterance_id, reader.user_id))
                if key is not None:  # no stream, no key: nothing they could read is kept
                    self.journal(replace(copy, reader_user_id=reader.user_id, reader_key=key))
        elif (utterance_id, listener.language) not in self._journaled:
            self._journaled.add((utterance_id, listener.language))
            self.journal(entry)

    def _spoken_ms(self, spoken_s: tuple[float, float] | None) -> tuple[int | None, int | None]:
        """start_ms and end_ms of an UtteranceLog: from the session's start, in order."""
        if spoken_s is None:
            return None, None
        start = max(0, round((spoken_s[0] - self.created_s) * 1000))
        return start, max(start, round((spoken_s[1] - self.created_s) * 1000))


@dataclass(frozen=True, slots=True)
class _Checked:
    """The routes a joiner adds, both ways with each language present."""

    routes: dict[tuple[str, str], Route]
    one_way: bool


def random_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


EXPIRED = "pairing code expired"
ABANDONED = "abandoned: no participant connected"
REMOVED = "partner removed by the creator"
LEFT = "everyone else left"
MAX_CODE_ATTEMPTS = 20
"""Codes tried before CreateSession gives up (only when nearly all are taken)."""
REFUSED_RETRY_S = 5.0
"""The retry-after of a refused new session: long enough for load to move or a replica to start."""
ENDED_KEEP_S = 300.0
"""How long an ended session stays in memory (for streams reading its last
events); after that only its record in the store remains."""

MAX_VOICE_CHARS = 128
"""Longest voice name taken (the catalogue's are a few dozen characters)."""


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
        lexicon_of: Callable[[str], Awaitable[Lexicon]] | None = None,
        recordings: Recordings | None = None,
        handover: Handover | None = None,
    ) -> None:
        self.settings = settings
        self.recordings = recordings
        """Sessions' recordings (session_svc.recordings); None: none are kept."""
        self.handover = handover
        """Where live sessions are kept for another replica to take over; None: they
        end with this replica (one replica, or no advertised address)."""
        self.draining = False
        """Handing its sessions over before it stops: it takes none over."""
        self._adopting = asyncio.Lock()
        """One takeover at a time: a call about a session waits until it is held here."""
        self._renewed_at: float | None = None
        """When this replica last renewed its lease (time.monotonic()), every
        `_renew_s`; None before the lease loop runs."""
        self._renew_s = OWNER_RENEW_S
        self._renewing_since = float("-inf")
        """When it renewed its lease again after failing to or being held up (a database
        outage, which silences every lease, not only a dead replica's)."""
        self._moved: set[str] = set()
        """Sessions another replica holds now: calls about them get UNAVAILABLE here, so
        the gateway asks for their owner again."""
        self.store = store
        self.owner = owner
        """host:port this replica is reached at, recorded with its sessions."""
        self.lag = lag
        """The event loop's lateness: new sessions are refused while it is overloaded."""
        self.inventory = inventory
        """What the mesh serves: languages are checked against it on create and join."""
        self.lexicon_of = lexicon_of
        """A user's vocabularies, read on create and join; None: nobody has any."""
        self._live = 0
        self.journal = Journal(store)
        if handover is not None:
            handover.first = self.journal.flush
        self._codes = codes
        self._sessions: dict[str, Session] = {}
        self._codes_held: dict[str, str] = {}
        """code -> id of the live session holding it (joinable or not: locked and full
        sessions keep their code, so that a join gets the precise refusal)."""

    def _new_member(
        self, session: Session, who: Identity, language_code: str, voice: str
    ) -> Member:
        member = Member(
            user_id=who.user_id, display_name=who.display_name, language_code=language_code,
            language=languages.normalise(language_code), voice=voice,
            log=EventLog(session.session_id, self.settings.event_buffer,
                         self.settings.event_buffer_bytes),
        )
        if self.handover is not None:
            handover = self.handover
            member.log.on_append = lambda _: handover.touch(session, member)
        return member

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
        expired = [self._sessions[sid] for sid in self._codes_held.values()
                   if self._sessions[sid].status == spb.SESSION_STATUS_WAITING
                   and self._sessions[sid].created_s < cutoff]
        for session in expired:
            await self._finish(session, EXPIRED)
        await self.store.expire_waiting(cutoff)  # also those of replicas gone meanwhile

    async def keep_owner_lease(self, renew_s: float = OWNER_RENEW_S,
                               silent_s: float = OWNER_SILENT_S) -> None:
        """While this replica runs (with an `owner` address): renews its lease and
        takes over the live sessions of owners silent for `handover_after_ms`
        (session_svc.handover), or without a handover ends those of owners silent
        for `silent_s`, whose state died with them, so gateways stop routing calls
        about them there. Either waits, after this replica's own renewal failed, until
        it has renewed again for as long: an outage silences every lease at once."""
        if self.handover is not None:
            renew_s = min(renew_s, self.settings.handover_after_ms / 3000)
        self._renew_s = renew_s
        while not self.draining:
            try:
                await self.store.renew_owner(self.owner)
                now = time.monotonic()
                # the pool waits out an outage: a late renewal is one that failed
                if self._renewing_since == float("inf") or self._lease_late(now):
                    self._renewing_since = now
                self._renewed_at = now
                after_s = self.settings.handover_after_ms / 1000
                if self.handover is not None:
                    await self._drop_taken()
                    await self.adopt(after_s)
                # nothing is ended while other leases may be silent for the reason this one's
                # was (an outage); with a handover, nothing another replica may still take
                # over either: none while this one may not adopt, none of a lease given up
                now = time.monotonic()
                if (self._sees_silence(now, silent_s) if self.handover is None
                        else self._may_adopt(now, after_s)):
                    lost = await self.store.end_orphaned(silent_s,
                                                         released=self.handover is None)
                    if lost:
                        log.warning("ended %d sessions of a session_svc replica that stopped",
                                    len(lost))
            except Exception:  # noqa: BLE001 - the database is back later; the lease loop goes on
                self._renewing_since = float("inf")
                log.warning("cannot renew the session owner lease", exc_info=True)
            await asyncio.sleep(renew_s)

    def _lease_late(self, now: float) -> bool:
        """Whether this replica's own lease renewal is overdue (it was held up)."""
        return self._renewed_at is not None and now - self._renewed_at > 2 * self._renew_s

    def _sees_silence(self, now: float, silent_s: float) -> bool:
        """Whether a lease silent for `silent_s` is one whose owner stopped: not until this
        replica has renewed its own lease for `silent_s` after failing to, so that owners cut
        off from the database as it was have renewed theirs too."""
        return not self._lease_late(now) and now - self._renewing_since >= silent_s

    def _may_adopt(self, now: float, silent_s: float) -> bool:
        """Whether this replica may take over the sessions of owners silent for `silent_s`."""
        return (self.handover is not None and not self.draining
                and self._sees_silence(now, silent_s))

    async def adopt(self, silent_s: float, session_id: str = "") -> list[Session]:
        """Takes over the live sessions (or the one) of owners silent for `silent_s`, when
        `_may_adopt`."""
        handover = self.handover
        if handover is None or not self._may_adopt(time.monotonic(), silent_s):
            return []
        async with self._adopting:
            return await self._adopt(handover, silent_s, session_id)

    async def _adopt(self, handover: Handover, silent_s: float, session_id: str) -> list[Session]:
        adopted = []
        for claimed in await handover.claim(silent_s, session_id):
            try:
                adopted.append(await self._install(claimed))
            except Exception:  # noqa: BLE001 - claimed and not held: ended, not left for none
                log.exception("cannot take session %s over: ended", claimed.session_id)
                await self.store.end_session(
                    claimed.session_id, time.time(), REPLICA_STOPPED,
                    Metrics(0, 0, 0, 0, 0, 0))
                continue
            if self.recordings is not None:  # its consents were in the lost replica's memory
                try:
                    await self.recordings.store.stop_session(
                        claimed.session_id, REPLICA_STOPPED, time.time())
                except Exception:  # noqa: BLE001 - held here all the same; nothing more is kept
                    log.warning("cannot stop the recording of session %s taken over",
                                claimed.session_id, exc_info=True)
        if adopted:
            log.warning("took over %d sessions of a session_svc replica that stopped",
                        len(adopted))
        return adopted

    async def owner_of(self, *, session_id: str = "", code: str = "") -> str | None:
        """The replica holding the live session with this id or code (see
        `SessionStore.owner`); when its owner has gone silent, this one takes it over."""
        if self.handover is None:
            return await self.store.owner(session_id=session_id, code=code)
        silent_s = self.settings.handover_after_ms / 1000
        found = await self.handover.owner_of(session_id=session_id, code=code, silent_s=silent_s)
        if found is None:
            return None
        if found.owner == self.owner:
            async with self._adopting:  # claimed, maybe not yet held: until it is
                return self.owner
        if found.silent and (await self.adopt(silent_s, found.session_id)
                             or self.find_live(found.session_id) is not None):
            return self.owner  # taken over now, or by a takeover this call waited for
        if found.silent:  # another replica was quicker, or it cannot be taken over
            again = await self.handover.owner_of(session_id=found.session_id, silent_s=silent_s)
            return None if again is None else again.owner
        return found.owner

    async def _install(self, adopted: Adopted) -> Session:
        """The session as its snapshot and tails describe it, live here; each
        utterance the stopped replica had in flight reported lost."""
        state, now = adopted.state, time.time()
        session = Session(
            session_id=adopted.session_id, code=state["code"], created_s=state["created_s"],
            status=state["status"], attended_s=now, journal=self.journal.record,
            one_way=state["one_way"], locked=state["locked"],
            max_participants=state["max_participants"], privacy_mode=state["privacy_mode"],
            utterances=state["utterances"], errors=state["errors"],
            transcribed=state["transcribed"], low_confidence=state["low_confidence"])
        connected = set()
        for m in state["members"]:
            member = self._new_member(
                session, Identity(m["user_id"], m["display_name"]), m["language_code"], m["voice"])
            member.state, member.output_rate_hz = m["state"], m["output_rate_hz"]
            member.spoken, member.errors = m["spoken"], m["errors"]
            member.utterance_count = m["utterance_count"]
            if m["key_check"]:
                member.key_check = base64.b64decode(m["key_check"])
            member.lexicon = await self._lexicon(Identity(member.user_id, member.display_name))
            member.log.restore(adopted.tails.get(member.user_id, []))
            session.members.append(member)
            if m["connected"]:
                connected.add(member.user_id)
        if self.inventory is not None:
            inventory = await self.inventory()
            spoken = session.languages()
            for i, first in enumerate(spoken):
                for second in spoken[i + 1:]:
                    with contextlib.suppress(DragomanError):  # since uninstalled: not translated
                        pair = routes.check_pair(inventory, first, second, session.one_way)
                        session.routes[first, second] = pair.there
                        session.routes[second, first] = pair.back
        self._report_lost(session, adopted, connected, drained=state["drained"])
        self._sessions[session.session_id] = session
        self._codes_held[session.code] = session.session_id
        self._live += 1
        metrics.SESSIONS_ACTIVE.inc()
        return session

    @staticmethod
    def _report_lost(session: Session, adopted: Adopted, connected: set[str],
                     drained: bool) -> None:
        """Utterances in flight at the stop end, the speaker's named as lost; and, after a
        crash, each connected speaker learns that speech sent just before may be lost."""
        for member in session.members:
            own, heard = in_flight(data for _, data in adopted.tails.get(member.user_id, []))
            for utterance_id in own:
                member.log.append(error=cpb.ConversationError(
                    code=cpb.ERROR_CODE_REPLICA_LOST, utterance_id=utterance_id,
                    message="the session service replica holding this session stopped while "
                            "this utterance was processed: it was lost; say it again"))
                member.log.append(processing_ended=cpb.ProcessingEnded(
                    speaker=cpb.SPEAKER_SELF, utterance_id=utterance_id))
            for utterance_id in heard:
                member.log.append(processing_ended=cpb.ProcessingEnded(
                    speaker=cpb.SPEAKER_PARTNER, utterance_id=utterance_id))
            if not drained and member.user_id in connected and member.present:
                member.log.append(error=cpb.ConversationError(
                    code=cpb.ERROR_CODE_REPLICA_LOST,
                    message="the session service replica holding this session stopped: "
                            "speech sent in the moments before may be lost"))

    async def _drop_taken(self) -> None:
        """Lets go of the sessions another replica took over (this one was silent too
        long): their streams end UNAVAILABLE and resume there."""
        assert self.handover is not None
        for session_id in await self.handover.taken([s.session_id for s in self.live()]):
            if (session := self._sessions.get(session_id)) is not None:
                self._let_go(session)

    def _let_go(self, session: Session) -> None:
        """Forgets a session another replica holds now, without ending it."""
        session.handed_over = True
        self._moved.add(session.session_id)
        self._sessions.pop(session.session_id, None)
        if self._codes_held.get(session.code) == session.session_id:
            del self._codes_held[session.code]
        self._live -= 1
        metrics.SESSIONS_ACTIVE.dec()
        for m in session.members:
            if m.connection is not None:
                m.connection.fail(Unavailable(
                    "this session moved to another session service replica: "
                    "reconnect and resume after the last event you received"))

    async def hand_over(self) -> int:
        """Draining: stores every live session as it is now, gives the lease up so
        another replica takes them over at once, and ends their streams UNAVAILABLE
        (clients resume on the new owner). Returns how many were handed over."""
        if self.handover is None or self.draining:
            return 0
        self.draining = True
        self.handover.draining = True
        live = self.live()
        for session in live:
            self.handover.touch(session)
        await self.handover.flush()
        await self.handover.release()
        for session in live:
            self._let_go(session)
        log.info("handed %d sessions over", len(live))
        return len(live)

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

    def _capacity(self, requested: int) -> int:
        limit = self.settings.max_participants
        if requested == 0:
            return limit
        if not 2 <= requested <= limit:
            raise InvalidArgument(
                f"max_participants must be 0 (for {limit}) or 2 to {limit} (setting "
                f"session.max_participants), got {requested}")
        return requested

    async def create(
        self, who: Identity, language_code: str, voice: str, max_participants: int = 0,
        privacy: str = STANDARD,
    ) -> Session:
        capacity = self._capacity(max_participants)
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
            return await self._add(who, language_code, voice, capacity, privacy)
        except BaseException:
            self._live -= 1
            raise

    async def _lexicon(self, who: Identity) -> Lexicon:
        return await self.lexicon_of(who.user_id) if self.lexicon_of is not None else EMPTY

    async def _add(
        self, who: Identity, language_code: str, voice: str, capacity: int, privacy: str,
    ) -> Session:
        lexicon = await self._lexicon(who)
        for _ in range(MAX_CODE_ATTEMPTS):
            code = self._codes()
            if code in self._codes_held:
                continue
            now = time.time()
            session = Session(session_id=uuid.uuid4().hex, code=code, created_s=now,
                              attended_s=now, journal=self.journal.record, recorder=self.recordings,
                              max_participants=capacity, privacy_mode=privacy)
            creator = self._new_member(session, who, language_code, voice)
            creator.lexicon = lexicon
            try:
                await self.store.add_session(
                    session.session_id, code, session.created_s, creator.record(), self.owner,
                    max_participants=capacity, privacy_mode=privacy)
            except CodeTaken:
                continue  # a live session elsewhere (or a concurrent create) holds it
            session.members.append(creator)
            session.announce(cpb.ROSTER_CHANGE_JOINED, creator)
            self._sessions[session.session_id] = session
            self._codes_held[code] = session.session_id
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
        session = self._open(who, code)
        checked = None
        # only for a right code: a wrong one costs what it did
        lexicon = await self._lexicon(who)
        inventory = await self.inventory() if self.inventory is not None else None
        if self._open(who, code) is not session:  # ended meanwhile (or locked, or full)
            raise NotFound(f"no session is waiting for code {code}")
        if inventory is not None:
            # against the languages present now, with no wait before the seat is taken
            checked = self._check_routes(inventory, session, language, allow_one_way)
        again = session.member(who.user_id)
        joiner = again or self._new_member(session, who, language_code, voice)
        joiner.lexicon = lexicon
        position = session.members.index(again) + 1 if again else len(session.members) + 1
        # joining from here: holds the seat (a concurrent join sees it), not yet present
        joiner.state = spb.PARTICIPANT_STATE_UNSPECIFIED
        if again is None:
            session.members.append(joiner)
        try:
            joined = await self.store.add_participant(
                session.session_id,
                Participant(joiner.user_id, joiner.display_name, language_code, voice),
                position, time.time())
            if not joined or session.status == spb.SESSION_STATUS_ENDED:
                raise NotFound(f"no session is waiting for code {code}")
        except BaseException:
            if again is not None:
                again.state = spb.PARTICIPANT_STATE_LEFT
            elif joiner in session.members:
                session.members.remove(joiner)
            raise
        if again is not None:  # back after leaving: same log, so their stream resumes
            again.language_code, again.language, again.voice = language_code, language, voice
        joiner.state = spb.PARTICIPANT_STATE_JOINED
        first = session.status == spb.SESSION_STATUS_WAITING
        session.status = spb.SESSION_STATUS_ACTIVE
        session.attended_s = time.time()
        if checked is not None:
            session.routes.update(checked.routes)
            session.one_way = session.one_way or checked.one_way
        host = session.host
        # SessionPaired for two-party clients: host and first joiner, then each newcomer
        if first:
            pairs = [(host, joiner), (joiner, host)]
        else:
            pairs = [] if again is not None else [(joiner, host)]
        for me, other in pairs:
            me.log.append(session_paired=cpb.SessionPaired(
                partner_user_id=other.user_id, partner_display_name=other.display_name,
                partner_language_code=other.language_code, one_way=session.one_way,
            ))
        session.announce(cpb.ROSTER_CHANGE_JOINED, joiner)
        if self.recordings is not None:  # they were not asked
            await self.recordings.stop(session, joined=True)
        return session

    def _open(self, who: Identity, code: str) -> Session:
        """The session `who` may join with `code`; the precise refusal if none."""
        sid = self._codes_held.get(code)
        session = self._sessions.get(sid) if sid is not None else None
        if session is None or session.status == spb.SESSION_STATUS_ENDED:
            raise NotFound(f"no session is waiting for code {code}")
        member = session.member(who.user_id)
        if member is not None and member.state == spb.PARTICIPANT_STATE_UNSPECIFIED:
            raise FailedPrecondition("you are joining this session already")
        if member is not None and member.state == spb.PARTICIPANT_STATE_REMOVED:
            raise PermissionDenied("the host removed you from this session; you cannot join again")
        if member is not None and member.present:
            if member is session.host:
                raise FailedPrecondition("you created this session; your partner must join it")
            raise FailedPrecondition("you are already in this session")
        if session.locked:
            raise FailedPrecondition("the host locked this session: nobody else can join")
        if member is None and session.full:
            raise ResourceExhausted(
                f"this session is full: it takes {session.max_participants} participants")
        return session

    def _check_routes(
        self, inventory: Inventory, session: Session, language: str, allow_one_way: bool,
    ) -> _Checked:
        """Both directions between `language` and each language present (FAILED_PRECONDITION
        naming what is missing; one direction may be, with `allow_one_way`)."""
        found: dict[tuple[str, str], Route] = {}
        one_way = False
        for other in session.languages():
            pair = routes.check_pair(inventory, other, language, allow_one_way)
            found[other, language], found[language, other] = pair.there, pair.back
            one_way = one_way or pair.one_way
        return _Checked(found, one_way)

    def get(self, who: Identity, session_id: str) -> tuple[Session, Member]:
        """A live (in memory) session of the caller (present, left or removed)."""
        if not session_id:
            raise InvalidArgument("session_id is required")
        session = self._sessions.get(session_id)
        member = session.member(who.user_id) if session else None
        if session is None and session_id in self._moved:
            raise Unavailable(
                f"session {session_id} moved to another session service replica; retry")
        if session is None or member is None:
            raise NotFound(f"session {shown(session_id, quote=False)} not found")
        return session, member

    def find_live(self, session_id: str) -> Session | None:
        """The session if this replica holds it and it has not ended, whoever asks."""
        session = self._sessions.get(session_id)
        return session if session and session.status != spb.SESSION_STATUS_ENDED else None

    async def end(self, who: Identity, session_id: str, reason: str) -> Session:
        """Ends the session for everyone: the host always, anyone else present only
        while two are (in a larger one they may leave)."""
        session, member = self.get(who, session_id)
        if session.status != spb.SESSION_STATUS_ENDED and member is not session.host and (
                not member.present or len(session.present) > 2):
            raise PermissionDenied(
                "only the host can end a session of more than two; use LeaveSession to leave it")
        await self._finish(session, reason)
        return session

    async def lock(self, who: Identity, session_id: str, locked: bool) -> Session:
        """The host locks the session against new joiners, or unlocks it."""
        session, member = self.get(who, session_id)
        if member is not session.host:
            raise PermissionDenied("only the session's host can lock or unlock it")
        if session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition("the session has ended")
        if session.locked == locked:
            return session
        await self.store.set_locked(session.session_id, locked)
        session.locked = locked
        session.announce(cpb.ROSTER_CHANGE_LOCKED if locked else cpb.ROSTER_CHANGE_UNLOCKED,
                         session.host)
        return session

    async def leave(self, who: Identity, session_id: str) -> Session:
        """A participant other than the host leaves: their streams end (OK), nothing
        more is translated for them, and they may join again with the code. The
        session ends when only the host is left."""
        session, member = self.get(who, session_id)
        if session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition("the session has ended")
        if member is session.host:
            raise FailedPrecondition(
                "the host cannot leave their session: end it with EndSession")
        if not member.present:
            raise FailedPrecondition("you are not in this session: join it again with its code")
        await self._set_state(session, member, spb.PARTICIPANT_STATE_LEFT)
        if member.connection is not None:
            member.connection.close()
        session.announce(cpb.ROSTER_CHANGE_LEFT, member)
        if self.recordings is not None:
            await self.recordings.left(session, member)
        log.info("participant left", extra={"session_id": session.session_id})
        if len(session.present) < 2:
            await self._finish(session, LEFT)
        return session

    async def remove(self, who: Identity, session_id: str, user_id: str) -> Session:
        """The host removes a participant: their stream ends with PERMISSION_DENIED and
        they cannot join again. The session ends when only the host is left."""
        session, member = self.get(who, session_id)
        if member is not session.host:
            raise PermissionDenied("only the session's creator can remove a participant")
        if not user_id:
            raise InvalidArgument("user_id is required")
        if user_id == who.user_id:
            raise InvalidArgument("the creator cannot remove themselves; use EndSession")
        removed = session.member(user_id)
        if removed is None or removed.state in (
                spb.PARTICIPANT_STATE_REMOVED, spb.PARTICIPANT_STATE_UNSPECIFIED):
            raise NotFound(f"user {shown(user_id, quote=False)} is not a participant of this session")
        if session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition("the session has ended")
        await self._set_state(session, removed, spb.PARTICIPANT_STATE_REMOVED)
        if removed.connection is not None:
            removed.connection.fail(PermissionDenied(
                f"removed from session {session.session_id} by its creator"))
        session.announce(cpb.ROSTER_CHANGE_REMOVED, removed)
        if self.recordings is not None:
            await self.recordings.left(session, removed)
        log.info("participant removed by the host", extra={"session_id": session.session_id})
        if len(session.present) < 2:
            await self._finish(session, REMOVED)
        else:
            removed.log.close()
        return session

    async def _set_state(self, session: Session, member: Member, state: int) -> None:
        await self.store.set_participant_state(
            session.session_id, member.user_id, STATE_NAMES[state], time.time())
        member.state = state

    async def _finish(self, session: Session, reason: str) -> None:
        """Ends the session, then records the end and its metrics (once)."""
        if self.recordings is not None and session.status != spb.SESSION_STATUS_ENDED:
            await self.recordings.stop(session)
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
        if self._codes_held.get(session.code) == session.session_id:
            del self._codes_held[session.code]
        for m in session.members:
            m.log.append(session_ended=cpb.SessionEnded(reason=reason))
            m.log.close()
        return True

    def live(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.status != spb.SESSION_STATUS_ENDED]
