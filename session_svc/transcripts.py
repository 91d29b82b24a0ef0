"""A session's transcript as one participant has it, written as a file (ExportTranscript).

Each utterance carries its speaker, language and text, and the translation into
the reader's language where one was made: what they read and heard. SubRip is
written by `srt` and WebVTT by `webvtt-py` (timestamps, numbering, cue layout);
plain text and JSON need no library.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import srt
import webvtt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dragoman.db import crypto
from dragoman.errors import InvalidArgument
from dragoman.languages import primary_subtag
from dragoman.v1 import sessions_pb2
from session_svc.records import SealedLog, SessionRecord, UtteranceLog
from session_svc.store import sealed_data

UNKNOWN_SPEAKER = "(deleted account)"
"""The speaker's name once their participant row went with their account."""


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    extension: str
    content_type: str


FORMATS: dict[sessions_pb2.TranscriptFormat.ValueType, Format] = {
    sessions_pb2.TRANSCRIPT_FORMAT_TEXT: Format("text", "txt", "text/plain; charset=utf-8"),
    sessions_pb2.TRANSCRIPT_FORMAT_SRT: Format("srt", "srt", "application/x-subrip; charset=utf-8"),
    sessions_pb2.TRANSCRIPT_FORMAT_WEBVTT: Format("webvtt", "vtt", "text/vtt; charset=utf-8"),
    sessions_pb2.TRANSCRIPT_FORMAT_JSON: Format("json", "json", "application/json; charset=utf-8"),
}


def format_of(value: sessions_pb2.TranscriptFormat.ValueType) -> Format:
    """The format a request names; INVALID_ARGUMENT naming the formats otherwise."""
    if value not in FORMATS:
        names = ", ".join(sessions_pb2.TranscriptFormat.Name(v) for v in FORMATS)
        raise InvalidArgument(f"format must be one of {names}; got {value}")
    return FORMATS[value]


@dataclass(frozen=True, slots=True)
class Line:
    """One utterance as the reader has it."""

    speaker_participant_id: str
    speaker_display_name: str
    language_code: str
    text: str
    translation_language_code: str
    translation: str
    """Into the reader's language; "" when none was made (their own speech, or theirs)."""
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Transcript:
    session_id: str
    create_time: datetime
    end_time: datetime | None
    language_code: str
    """The reader's."""
    participants: tuple[tuple[str, str, str], ...]
    """(participant id, display name, language code), host first."""
    lines: tuple[Line, ...]


def transcript(record: SessionRecord, reader_id: str, logs: Sequence[UtteranceLog]) -> Transcript:
    """The session's utterances (`logs`: a row per target language, in the order spoken)
    as the participant `reader_id` has them."""
    names = {p.user_id: p.display_name for p in record.participants}
    language = next(p.language_code for p in record.participants if p.user_id == reader_id)
    mine = primary_subtag(language)
    rows: dict[tuple[str, str], list[UtteranceLog]] = {}
    for log in logs:
        rows.setdefault((log.speaker_user_id, log.utterance_id), []).append(log)
    lines = []
    for of in rows.values():
        first = of[0]
        theirs = primary_subtag(first.source_language_code) != mine
        into = next((r for r in of if theirs and primary_subtag(r.target_language_code) == mine), None)
        start_ms, end_ms = _span_ms(first, record.created_at)
        lines.append(Line(
            speaker_participant_id=first.speaker_user_id,
            speaker_display_name=names.get(first.speaker_user_id, UNKNOWN_SPEAKER),
            language_code=first.source_language_code, text=_one_line(first.source_text),
            translation_language_code=into.target_language_code if into else "",
            translation=_one_line(into.translated_text) if into else "",
            start_ms=start_ms, end_ms=end_ms))
    lines.sort(key=lambda line: line.start_ms)
    return Transcript(
        session_id=record.session_id, create_time=record.created_at, end_time=record.ended_at,
        language_code=language,
        participants=tuple((p.user_id, p.display_name, p.language_code) for p in record.participants),
        lines=tuple(lines))


def _span_ms(log: UtteranceLog, session_start: datetime) -> tuple[int, int]:
    """When it was spoken; for rows logged before that was kept, when it was logged."""
    if log.start_ms is not None and log.end_ms is not None:
        return log.start_ms, log.end_ms
    at = 0 if log.created_at is None else max(
        0, round((log.created_at - session_start).total_seconds() * 1000))
    return at, at


def _one_line(text: str) -> str:
    """A cue's text on one line: a blank line would end an SRT or WebVTT cue."""
    return re.sub(r"\s+", " ", text).strip()


def render(t: Transcript, fmt: Format) -> sessions_pb2.ExportTranscriptResponse:
    writers = {"text": _text, "srt": _srt, "webvtt": _webvtt, "json": _json}
    content = writers[fmt.name](t)
    filename = f"dragoman-{t.create_time:%Y%m%d-%H%M}-{t.session_id[:8]}.{fmt.extension}"
    return sessions_pb2.ExportTranscriptResponse(
        content_type=fmt.content_type, filename=filename, content=content.encode())


def _clock(ms: int) -> str:
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def _cue(line: Line) -> tuple[str, str]:
    """A subtitle's two lines: what the reader read (the translation, else what was
    said) after the speaker's name, then what was said when that was translated."""
    first = line.translation or line.text
    second = f"({line.language_code}) {line.text}" if line.translation else ""
    return first, second


def _text(t: Transcript) -> str:
    out = [f"Session {t.session_id}, {t.create_time:%Y-%m-%d %H:%M} UTC, "
           f"translations into {t.language_code}", ""]
    for line in t.lines:
        head = f"[{_clock(line.start_ms)[:8]}] "
        out.append(f"{head}{line.speaker_display_name} ({line.language_code}): {line.text}")
        if line.translation:
            out.append(f"{' ' * len(head)}{line.translation_language_code}: {line.translation}")
    return "\n".join(out) + "\n"


def _srt(t: Transcript) -> str:
    subtitles = []
    for i, line in enumerate(t.lines, 1):
        first, second = _cue(line)
        subtitles.append(srt.Subtitle(
            index=i, start=timedelta(milliseconds=line.start_ms),
            end=timedelta(milliseconds=line.end_ms),
            content="\n".join(filter(None, (f"{line.speaker_display_name}: {first}", second)))))
    return srt.compose(subtitles, reindex=False)


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _webvtt(t: Transcript) -> str:
    captions = []
    for line in t.lines:
        first, second = _cue(line)
        text = f"<v {_escaped(line.speaker_display_name)}>{_escaped(first)}"
        captions.append(webvtt.Caption(
            start=_clock(line.start_ms), end=_clock(line.end_ms),
            text=[text, _escaped(second)] if second else text))
    return webvtt.WebVTT(captions=captions).content


def _json(t: Transcript) -> str:
    return json.dumps({
        "session_id": t.session_id,
        "create_time": t.create_time.isoformat(),
        "end_time": t.end_time.isoformat() if t.end_time else None,
        "language_code": t.language_code,
        "participants": [{"participant_id": p, "display_name": n, "language_code": lang}
                         for p, n, lang in t.participants],
        "utterances": [asdict(line) for line in t.lines],
    }, ensure_ascii=False, indent=2) + "\n"


SEALED_CONTENT_TYPE = "application/vnd.dragoman.sealed-transcript+json; charset=utf-8"
"""A participant-keyed session's export: the reader's copy, still sealed with their key."""


def render_sealed(
    record: SessionRecord, sealed: Sequence[SealedLog]
) -> sessions_pb2.ExportTranscriptResponse:
    """The reader's copy of a participant-keyed session, as stored: each record's
    `sealed` (base64) is nonce (12 bytes) || AES-256-GCM ciphertext || tag of a JSON
    utterance, with `aad` (UTF-8) as associated data; the client opens it with its
    key (docs/privacy.md)."""
    doc = {
        "session_id": record.session_id,
        "create_time": record.created_at.isoformat(),
        "privacy_mode": record.privacy_mode,
        "cipher": "AES-256-GCM",
        "participants": [{"participant_id": p.user_id, "display_name": p.display_name,
                          "language_code": p.language_code} for p in record.participants],
        "records": [{"utterance_id": s.utterance_id, "start_ms": s.start_ms, "end_ms": s.end_ms,
                     "aad": sealed_data(s.log_id).decode(),
                     "sealed": base64.b64encode(s.sealed).decode()} for s in sealed],
    }
    filename = f"dragoman-{record.created_at:%Y%m%d-%H%M}-{record.session_id[:8]}.sealed.json"
    return sessions_pb2.ExportTranscriptResponse(
        content_type=SEALED_CONTENT_TYPE, filename=filename,
        content=json.dumps(doc, ensure_ascii=False, indent=1).encode())


def open_sealed(content: bytes, key: bytes) -> dict[str, object]:
    """A `render_sealed` export opened with the key the client streamed with
    (JoinConversation.history_key): the file with `records` replaced by the `utterances`
    they hold (`dragoman sessions export --key-file`). DecryptionError for another key."""
    doc = json.loads(content)
    aead = AESGCM(key)
    doc["utterances"] = [
        {**json.loads(crypto.unseal(aead, base64.b64decode(r["sealed"]), r["aad"].encode())),
         "start_ms": r["start_ms"], "end_ms": r["end_ms"]}
        for r in doc.pop("records")]
    return doc  # type: ignore[no-any-return]
