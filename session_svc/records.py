"""What session_svc keeps about sessions, as rows of its tables.

Plain records: `session_svc.store` reads and writes them, the servicers
(`session_svc.server`) turn them into protos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

STAGES = ("endpointing", "recognition", "translation", "synthesis_first_chunk", "delivery", "total")
"""Per-stage latencies, as `<stage>_ms` columns and UtteranceLatency fields."""


PARTICIPANT_STATES = ("joined", "left", "removed")
"""session_participants.state: in the session, left it (may join again), removed by the host."""

STANDARD, PRIVATE, PARTICIPANT_KEYED = "standard", "private", "participant-keyed"
"""sessions.privacy_mode: what is kept of the text (docs/privacy.md)."""


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: str
    display_name: str
    language_code: str
    voice: str
    state: str = "joined"
    """One of PARTICIPANT_STATES."""


@dataclass(frozen=True, slots=True)
class ParticipantMetrics:
    """Numbers of one participant of an ended session."""

    user_id: str
    utterances_spoken: int
    """Their utterances translated for someone (once however many heard them)."""
    utterances_heard: int
    mean_latency_ms: float
    p95_latency_ms: float
    """Of what they heard."""
    error_count: int


@dataclass(frozen=True, slots=True)
class Metrics:
    """Numbers of an ended session."""

    utterance_count: int
    error_count: int
    mean_latency_ms: float
    min_latency_ms: float
    max_latency_ms: float
    duration_ms: int
    participants: tuple[ParticipantMetrics, ...] = ()
    """Per participant, in roster order (none for sessions ended before they were kept)."""
    transcribed_count: int = 0
    """Final transcripts with text."""
    low_confidence_count: int = 0
    """Of those, the ones flagged low confidence."""

    @property
    def low_confidence_share(self) -> float:
        return self.low_confidence_count / self.transcribed_count if self.transcribed_count else 0.0


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored."""

    session_id: str
    code: str
    status: str
    """waiting, active or ended."""
    created_at: datetime
    ended_at: datetime | None
    participants: tuple[Participant, ...]
    """Host first, then in the order they joined."""
    metrics: Metrics | None
    locked: bool = False
    max_participants: int = 2
    privacy_mode: str = STANDARD


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
    start_ms: int | None = None
    end_ms: int | None = None
    """When it was spoken, from the session's start; None in rows logged before
    they were kept (migration 0005)."""
    reader_user_id: str = ""
    """In a participant-keyed session: whose copy this is (else "")."""
    reader_key: bytes | None = field(default=None, repr=False)
    """That reader's key, only until the row is written."""


@dataclass(frozen=True, slots=True)
class SealedLog:
    """One reader's copy of an utterance of a participant-keyed session, as stored:
    `sealed` opens only with their key (see `session_svc.store.seal_log`)."""

    log_id: str
    utterance_id: str
    start_ms: int | None
    end_ms: int | None
    sealed: bytes


@dataclass(frozen=True, slots=True)
class Deleted:
    """What deleting a user's session data removed."""

    sessions: int
    """Sessions the user took part in (whole sessions go once nobody is left)."""
    utterances: int
    """Log rows of what the user said, and their copies of participant-keyed sessions."""
    recordings: int = 0
    """Recordings the user was asked about (deleted whole)."""
