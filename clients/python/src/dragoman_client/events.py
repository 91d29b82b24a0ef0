"""Typed conversation events: what `Session.converse` yields.

Each is a frozen dataclass with the event's `sequence` (counting the stream from 1,
what a reconnect resumes after) and `raw`, the ConversationEvent as received, for
fields not copied here. Heartbeats are not yielded.
"""

from __future__ import annotations

import dataclasses

from dragoman_client._gen.dragoman.v1 import conversation_pb2 as pb
from dragoman_client._gen.dragoman.v1 import recording_pb2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    sequence: int
    raw: pb.ConversationEvent = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UtteranceEvent(Event):
    utterance_id: str
    own: bool
    """True when the receiver spoke the utterance (SPEAKER_SELF)."""
    speaker_participant_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessingStarted(UtteranceEvent):
    """Someone started speaking."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transcription(UtteranceEvent):
    """What was said, in the speaker's language; partials (`is_final` False) replace each other."""

    text: str
    language: str
    is_final: bool
    stability: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Translation(UtteranceEvent):
    """What was said, in the receiver's language; partials replace each other."""

    text: str
    source_text: str
    source_language: str
    target_language: str
    is_final: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechAudio(Event):
    """A chunk of translated speech: PCM16 mono at `sample_rate`; `is_last` ends the utterance."""

    utterance_id: str
    data: bytes
    sample_rate: int
    chunk_index: int
    is_last: bool
    text: str
    speaker_participant_id: str
    """Who said it: with more than two people, which of the others this is."""
    piece_index: int
    """In simultaneous mode, which piece of the utterance (from 1) the chunk belongs to; 0 otherwise."""
    source_text: str
    """The speaker's words the piece (or the utterance, spoken whole) translates; on its
    first chunk only."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessingEnded(UtteranceEvent):
    """An utterance is done: every event about it has been sent."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConversationError(Event):
    """A problem with one utterance (or the stream) while the stream goes on."""

    code: str
    """The ErrorCode's name, e.g. ERROR_CODE_SERVICE_UNAVAILABLE."""
    message: str
    utterance_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class RosterChanged(Event):
    """Who is in the session changed, or the host locked or unlocked it."""

    participant_ids: tuple[str, ...]
    locked: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordingChanged(Event):
    """A recording of the session was asked for (answer it with
    `Client.answer_recording_consent`), answered, started or stopped (docs/recording.md)."""

    change: str
    """The RecordingChange's name, e.g. RECORDING_CHANGE_REQUESTED."""
    participant_id: str
    """Who asked, answered or withdrew; empty when it started or stopped."""
    recording_id: str
    state: str
    """The RecordingState's name after the change, e.g. RECORDING_STATE_RECORDING."""
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Other(Event):
    """An event kind this version of the SDK does not type (see `raw`)."""

    kind: str


def _about(event: pb.ConversationEvent, body: pb.Transcription | pb.Translation | pb.ProcessingStarted
           | pb.ProcessingEnded) -> dict[str, object]:
    return {"sequence": event.sequence, "raw": event, "utterance_id": body.utterance_id,
            "own": body.speaker == pb.SPEAKER_SELF, "speaker_participant_id": body.speaker_participant_id}


def from_proto(event: pb.ConversationEvent) -> Event | None:
    """The typed event for `event`; None for a heartbeat."""
    kind = event.WhichOneof("kind")
    if kind == "heartbeat":
        return None
    if kind == "transcription":
        t = event.transcription
        return Transcription(**_about(event, t), text=t.text, language=t.language_code,  # type: ignore[arg-type]
                             is_final=t.is_final, stability=t.stability)
    if kind == "translation":
        r = event.translation
        return Translation(**_about(event, r), text=r.text, source_text=r.source_text,  # type: ignore[arg-type]
                           source_language=r.source_language_code,
                           target_language=r.target_language_code, is_final=r.is_final)
    if kind == "speech_audio":
        a = event.speech_audio
        return SpeechAudio(sequence=event.sequence, raw=event, utterance_id=a.utterance_id, data=a.data,
                           sample_rate=a.sample_rate_hertz, chunk_index=a.chunk_index,
                           is_last=a.is_last, text=a.text, speaker_participant_id=a.speaker_participant_id,
                           piece_index=a.piece_index, source_text=a.source_text)
    if kind == "processing_started":
        return ProcessingStarted(**_about(event, event.processing_started))  # type: ignore[arg-type]
    if kind == "processing_ended":
        return ProcessingEnded(**_about(event, event.processing_ended))  # type: ignore[arg-type]
    if kind == "error":
        e = event.error
        return ConversationError(sequence=event.sequence, raw=event, code=pb.ErrorCode.Name(e.code),
                                 message=e.message, utterance_id=e.utterance_id)
    if kind == "roster_changed":
        c = event.roster_changed
        return RosterChanged(sequence=event.sequence, raw=event,
                             participant_ids=tuple(p.participant_id for p in c.roster), locked=c.locked)
    if kind == "recording_changed":
        r = event.recording_changed
        return RecordingChanged(sequence=event.sequence, raw=event,
                                change=recording_pb2.RecordingChange.Name(r.change),
                                participant_id=r.participant_id,
                                recording_id=r.recording.recording_id,
                                state=recording_pb2.RecordingState.Name(r.recording.state),
                                reason=r.reason)
    if kind == "session_ended":
        return SessionEnded(sequence=event.sequence, raw=event, reason=event.session_ended.reason)
    return Other(sequence=event.sequence, raw=event, kind=kind or "")
