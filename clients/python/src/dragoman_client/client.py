"""The client: sign-in with token refresh, sessions, and conversations."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman_client import errors, events
from dragoman_client._gen.dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    recording_pb2,
    recording_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    vocabulary_pb2,
    vocabulary_pb2_grpc,
)

REFRESH_MARGIN_S = 30.0
"""An access token this close to expiry is refreshed before a call rather than after a refusal."""
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    # a conversation can sit silent for minutes; keepalive pings notice a dead connection
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
_FORMATS = {
    "txt": sessions_pb2.TRANSCRIPT_FORMAT_TEXT,
    "srt": sessions_pb2.TRANSCRIPT_FORMAT_SRT,
    "vtt": sessions_pb2.TRANSCRIPT_FORMAT_WEBVTT,
    "json": sessions_pb2.TRANSCRIPT_FORMAT_JSON,
}
TRANSCRIPT_FORMATS = tuple(_FORMATS)
"""The `format`s of `export_transcript`."""
_ENCODINGS = {
    "linear16": conversation_pb2.AUDIO_ENCODING_LINEAR16,
    "ogg_opus": conversation_pb2.AUDIO_ENCODING_OGG_OPUS,
}
_PRIVACY_MODES = {
    "standard": sessions_pb2.PRIVACY_MODE_STANDARD,
    "private": sessions_pb2.PRIVACY_MODE_PRIVATE,
    "participant-keyed": sessions_pb2.PRIVACY_MODE_PARTICIPANT_KEYED,
}
PRIVACY_MODES = tuple(_PRIVACY_MODES)
"""The `privacy_mode`s of `create_session` (docs/privacy.md)."""
HISTORY_KEY_BYTES = 32
"""A participant-keyed session's `history_key`: an AES-256 key."""
T = TypeVar("T")


def new_history_key() -> bytes:
    """A random key for `Session.converse(history_key=...)`. Keep it: the history it seals
    is unreadable without it, and the server cannot recover it."""
    return secrets.token_bytes(HISTORY_KEY_BYTES)


@dataclasses.dataclass(frozen=True)
class Language:
    code: str
    name: str
    recognized: bool
    """Its speech is recognised (it can be spoken into a session)."""
    spoken: bool
    """A voice speaks translations into it."""


@dataclasses.dataclass(frozen=True)
class Route:
    """How speech in `source` reaches a listener of `target`."""

    source: str
    target: str
    available: bool
    path: str
    """The TranslationPath's name, e.g. TRANSLATION_PATH_CASCADE."""
    install: str
    """When not available: the command that installs what is missing."""


@dataclasses.dataclass(frozen=True)
class Languages:
    languages: list[Language]
    routes: list[Route]


@dataclasses.dataclass(frozen=True)
class Transcript:
    filename: str
    content_type: str
    content: bytes


async def connect(url: str, *, tls: bool | None = None, ca: str | Path | bytes | None = None) -> Client:
    """A client of the gateway at `url`: `host:port`, `grpc://host:port` (plain) or
    `grpcs://host:port` / `https://host:port` (TLS). `tls` overrides the scheme; `ca` is the
    PEM (or its path) of a private certificate authority, and implies TLS."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname or not parts.port:
        raise ValueError(f"not a gateway address (host:port or grpcs://host:port): {url!r}")
    if tls is None:
        tls = parts.scheme in ("grpcs", "https") or ca is not None
    target = f"{parts.hostname}:{parts.port}"
    if tls:
        root = Path(ca).read_bytes() if isinstance(ca, (str, Path)) else ca
        credentials = grpc.ssl_channel_credentials(root)
        channel = grpc.aio.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
    else:
        channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    return Client(channel)


class Client:
    """One user's connection to a gateway. Sign in with `register` or `login`; the access
    token is refreshed when it nears expiry or is refused, so long-lived clients stay signed in."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._sessions = sessions_pb2_grpc.SessionServiceStub(channel)
        self._conversation = conversation_pb2_grpc.ConversationServiceStub(channel)
        self._vocabularies = vocabulary_pb2_grpc.VocabularyServiceStub(channel)
        self._recordings = recording_pb2_grpc.RecordingServiceStub(channel)
        self._tokens: auth_pb2.TokenPair | None = None
        self._refreshing = asyncio.Lock()
        self.user_id = ""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    # --- sign-in

    async def register(self, username: str, password: str, *, email: str, language: str = "en") -> str:
        """A new account, signed in; returns its user id."""
        reply = await _call(self._auth.Register(auth_pb2.RegisterRequest(
            username=username, email=email, password=password, preferred_language_code=language)))
        self.user_id, self._tokens = reply.user_id, reply.tokens
        return self.user_id

    async def login(self, username: str, password: str) -> str:
        """Signs in; returns the user id."""
        reply = await _call(self._auth.Login(auth_pb2.LoginRequest(username=username, password=password)))
        self.user_id, self._tokens = reply.user_id, reply.tokens
        return self.user_id

    async def sign_in(self, username: str, password: str, *, email: str, language: str = "en") -> str:
        """Logs in, registering the account first if it does not exist yet; returns the user id."""
        try:
            return await self.register(username, password, email=email, language=language)
        except errors.AlreadyExistsError:
            return await self.login(username, password)

    async def refresh(self) -> None:
        """Swaps the refresh token for a new token pair (done for you before and after expiry)."""
        tokens = self._signed_in()
        async with self._refreshing:
            if self._tokens is not tokens:  # another call refreshed meanwhile
                return
            reply = await _call(self._auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)))
            self._tokens = reply.tokens

    async def logout(self) -> None:
        """Ends this login: its tokens stop working on every gateway."""
        tokens = self._signed_in()
        await _call(self._auth.Logout(auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token)))
        self._tokens = None

    def through(self, channel: grpc.aio.Channel) -> Client:
        """This login on another channel, e.g. to another gateway when this one is gone: a
        token is good at every gateway of the deployment. The caller closes either client."""
        other = Client(channel)
        other.user_id, other._tokens = self.user_id, self._tokens
        return other

    @property
    def access_token(self) -> str:
        return self._signed_in().access_token

    def _signed_in(self) -> auth_pb2.TokenPair:
        if self._tokens is None:
            raise errors.AuthenticationError(grpc.StatusCode.UNAUTHENTICATED,
                                             "not signed in: call register or login first")
        return self._tokens

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """The `authorization` metadata of a call you make yourself on `channel` with the
        generated stubs (`conversation_pb2_grpc` and the others), refreshed near expiry."""
        tokens = self._signed_in()
        if tokens.access_token_expire_time.seconds and \
                tokens.access_token_expire_time.ToSeconds() - time.time() < REFRESH_MARGIN_S:
            await self.refresh()
        return (("authorization", f"Bearer {self._signed_in().access_token}"),)

    async def _authorized(self, call: Callable[..., Awaitable[T]], request: Any) -> T:
        """`call(request)` with `metadata()`; refused as expired or revoked, once more
        after a refresh."""
        tokens = self._tokens
        try:
            return await call(request, metadata=await self.metadata())
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAUTHENTICATED or tokens is None or self._tokens is not tokens:
                raise errors.from_rpc_error(e) from None
        await self.refresh()
        return await _call(call(request, metadata=await self.metadata()))

    # --- sessions

    async def create_session(self, language: str, *, voice: str = "", max_participants: int = 0,
                             privacy_mode: str = "standard") -> Session:
        """A new session hosted by you, speaking `language`; others join with its `code`.
        `privacy_mode` is one of PRIVACY_MODES; in a participant-keyed one each participant
        converses with a `history_key`."""
        if privacy_mode not in _PRIVACY_MODES:
            raise ValueError(f"privacy_mode must be one of {', '.join(_PRIVACY_MODES)}, not {privacy_mode!r}")
        reply = await self._authorized(self._sessions.CreateSession, sessions_pb2.CreateSessionRequest(
            language_code=language, voice=voice, max_participants=max_participants,
            privacy_mode=_PRIVACY_MODES[privacy_mode]))
        return Session(self, reply.session)

    async def join_session(self, code: str, *, language: str, voice: str = "",
                           allow_one_way: bool = False) -> Session:
        """Joins the session of the 6-digit `code`, speaking `language`; `allow_one_way`
        accepts a pair the mesh translates in one direction only."""
        reply = await self._authorized(self._sessions.JoinSession, sessions_pb2.JoinSessionRequest(
            code=code, language_code=language, voice=voice, allow_one_way=allow_one_way))
        return Session(self, reply.session)

    async def get_session(self, session_id: str) -> Session:
        """A session you are in, e.g. to converse again after a restart."""
        reply = await self._authorized(self._sessions.GetSession,
                                       sessions_pb2.GetSessionRequest(session_id=session_id))
        return Session(self, reply.session)

    async def list_languages(self) -> Languages:
        """The languages the deployment serves and how each pair is translated (no sign-in needed)."""
        reply = await _call(self._sessions.ListLanguages(sessions_pb2.ListLanguagesRequest()))
        return Languages(
            [Language(s.language_code, s.display_name, s.recognized, s.spoken) for s in reply.languages],
            [Route(r.source_language_code, r.target_language_code, r.available,
                   conversation_pb2.TranslationPath.Name(r.path), r.install) for r in reply.routes])

    async def export_transcript(self, session_id: str, format: str = "txt") -> Transcript:
        """A session's transcript with your translations: `format` txt, srt, vtt or json."""
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {', '.join(_FORMATS)}, not {format!r}")
        reply = await self._authorized(self._sessions.ExportTranscript, sessions_pb2.ExportTranscriptRequest(
            session_id=session_id, format=_FORMATS[format]))
        return Transcript(reply.filename, reply.content_type, reply.content)


    # --- vocabularies

    async def create_vocabulary(self, vocabulary: vocabulary_pb2.Vocabulary) -> vocabulary_pb2.Vocabulary:
        """Saves one of your vocabularies (`display_name`, `terms` to recognise, fixed
        `translations` per language pair, words to `do_not_translate`); returns it with its id."""
        reply = await self._authorized(self._vocabularies.CreateVocabulary,
                                       vocabulary_pb2.CreateVocabularyRequest(vocabulary=vocabulary))
        return reply.vocabulary

    async def list_vocabularies(self) -> list[vocabulary_pb2.Vocabulary]:
        """Your vocabularies."""
        reply = await self._authorized(self._vocabularies.ListVocabularies,
                                       vocabulary_pb2.ListVocabulariesRequest())
        return list(reply.vocabularies)

    async def delete_vocabulary(self, vocabulary_id: str) -> None:
        await self._authorized(self._vocabularies.DeleteVocabulary,
                               vocabulary_pb2.DeleteVocabularyRequest(vocabulary_id=vocabulary_id))


    # --- recordings (docs/recording.md)

    async def request_recording(self, session_id: str, *, translated_speech: bool = False,
                                original_voice: bool = False) -> recording_pb2.Recording:
        """Asks everyone in the session to consent to recording it (your asking is your
        consent); it starts once all have. `translated_speech` keeps the speech they heard,
        `original_voice` asks to keep the speakers' own voices too."""
        reply = await self._authorized(self._recordings.RequestRecording,
                                       recording_pb2.RequestRecordingRequest(
                                           session_id=session_id, translated_speech=translated_speech,
                                           original_voice=original_voice))
        return reply.recording

    async def answer_recording_consent(self, recording_id: str, consent: bool, *,
                                       original_voice: bool = False) -> recording_pb2.Recording:
        """Consents to (or refuses) a recording asked for (`RecordingChanged` REQUESTED)."""
        reply = await self._authorized(self._recordings.AnswerRecordingConsent,
                                       recording_pb2.AnswerRecordingConsentRequest(
                                           recording_id=recording_id, consent=consent,
                                           original_voice=original_voice))
        return reply.recording

    async def withdraw_recording_consent(self, recording_id: str) -> recording_pb2.Recording:
        """Stops a recording at once: nothing said after it is kept."""
        reply = await self._authorized(self._recordings.WithdrawRecordingConsent,
                                       recording_pb2.WithdrawRecordingConsentRequest(
                                           recording_id=recording_id))
        return reply.recording

    async def list_recordings(self, session_id: str = "") -> list[recording_pb2.Recording]:
        """The recordings of your sessions (of one, with `session_id`), newest first."""
        found: list[recording_pb2.Recording] = []
        token = ""
        while True:
            reply = await self._authorized(self._recordings.ListRecordings,
                                           recording_pb2.ListRecordingsRequest(
                                               page_size=100, page_token=token,
                                               session_id=session_id))
            found += reply.recordings
            token = reply.next_page_token
            if not token:
                return found

    async def download_recording(
        self, recording_id: str, *, language_codes: Iterable[str] = (), text_only: bool = False,
    ) -> tuple[recording_pb2.Recording, list[recording_pb2.RecordedUtterance]]:
        """A recording and what it kept, utterance by utterance in spoken order, with the
        translated speech (Ogg Opus) in `language_codes` (all when empty)."""
        call = self._recordings.DownloadRecording(recording_pb2.DownloadRecordingRequest(
            recording_id=recording_id, language_codes=list(language_codes), text_only=text_only),
            metadata=await self.metadata())
        try:
            replies = [r async for r in call]
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e) from None
        return replies[0].recording, [r.utterance for r in replies[1:]]


class Session:
    """A session you created or joined. `converse` streams your audio and yields events;
    called again after a lost connection, it resumes after the last event you got."""

    def __init__(self, client: Client, info: sessions_pb2.Session) -> None:
        self.client = client
        self.info = info
        self.last_sequence = 0
        """The sequence of the last event yielded: where the next `converse` resumes."""
        self.reconnects = 0
        """How many times `converse` re-established a lost connection."""
        self.history_key: bytes | None = None
        """The key of the last `converse(history_key=...)`, sent again by later ones."""

    @property
    def id(self) -> str:
        return self.info.session_id

    @property
    def code(self) -> str:
        return self.info.code

    @property
    def privacy_mode(self) -> str:
        """One of PRIVACY_MODES: "participant-keyed" needs a `history_key` to converse."""
        return {v: k for k, v in _PRIVACY_MODES.items()}.get(self.info.privacy_mode, "standard")

    async def converse(
        self, audio: AsyncIterable[bytes] | Iterable[bytes] | None = None, *, sample_rate: int = 16_000,
        encoding: str = "linear16", output_sample_rate: int = 0, resume: bool = True,
        reconnect_timeout_s: float = 30.0, history_key: bytes | None = None,
    ) -> AsyncIterator[events.Event]:
        """Your conversation stream: sends `audio` (chunks of about 100 ms at real-time pace:
        PCM16 mono at `sample_rate`, or with `encoding="ogg_opus"` an Ogg Opus stream;
        `audio.wav_chunks`, `audio.ogg_chunks` and `audio.microphone` give them), then leaves,
        and ends once your last utterance is done. Without `audio` it only listens, until
        you stop iterating. Translated speech comes at `output_sample_rate` (0: the voice's
        own). With `resume`, events after `last_sequence` come first, nothing twice.

        A connection lost (UNAVAILABLE) is re-established with backoff and the stream resumes
        after the last event yielded, sending the audio not yet sent; after
        `reconnect_timeout_s` without a connection (0: never retry) it raises UnavailableError.

        In a participant-keyed session every stream needs your `history_key` (32 bytes,
        e.g. `new_history_key()`): what you say and hear is kept sealed with it. It is
        remembered on the session for later calls; the server refuses a different one."""
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(_ENCODINGS)}, not {encoding!r}")
        if history_key is not None:
            if not isinstance(history_key, bytes | bytearray):
                raise TypeError(f"history_key must be bytes, not {type(history_key).__name__}")
            if len(history_key) != HISTORY_KEY_BYTES:
                raise ValueError(f"history_key must be {HISTORY_KEY_BYTES} bytes (an AES-256 key, e.g. "
                                 f"new_history_key()), got {len(history_key)}")
            self.history_key = bytes(history_key)
        # an Ogg stream is read from its headers: a new stream after a reconnection needs them again
        outgoing = _Outgoing(audio, replay_first=encoding == "ogg_opus")
        if not resume:
            self.last_sequence = 0
        failing_since: float | None = None
        attempt = 0
        try:
            while True:
                join = conversation_pb2.JoinConversation(
                    session_id=self.id, encoding=_ENCODINGS[encoding], sample_rate_hertz=sample_rate,
                    output_sample_rate_hertz=output_sample_rate, resume_after_sequence=self.last_sequence,
                    history_key=self.history_key or b"")
                stopped = asyncio.Event()
                try:
                    call = self.client._conversation.Converse(outgoing.requests(join, stopped),
                                                              metadata=await self.client.metadata())
                    try:
                        async for response in call:
                            event = events.from_proto(response.event)
                            # a resumed stream starts after last_sequence; the check keeps a
                            # replayed event from being yielded twice whatever the server does
                            if event is None or event.sequence <= self.last_sequence:
                                continue
                            failing_since, attempt = None, 0
                            self.last_sequence = event.sequence
                            yield event
                        return
                    except asyncio.CancelledError:
                        if outgoing.error is not None:
                            raise outgoing.error from None
                        raise
                    finally:
                        stopped.set()
                        call.cancel()
                except (grpc.aio.AioRpcError, errors.UnavailableError) as e:
                    error = errors.from_rpc_error(e) if isinstance(e, grpc.aio.AioRpcError) else e
                    if not isinstance(error, errors.UnavailableError):
                        raise error from None
                    now = time.monotonic()
                    failing_since = failing_since if failing_since is not None else now
                    if now - failing_since >= reconnect_timeout_s:
                        raise error from None
                attempt += 1
                self.reconnects += 1
                # 0.1 s, 0.2 s, ... up to 5 s, jittered so clients cut together do not return together
                await asyncio.sleep(min(5.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        finally:
            await outgoing.close()

    async def leave(self) -> None:
        """Leaves the session for good (the host's leaving hands the session on)."""
        self.info = (await self.client._authorized(self.client._sessions.LeaveSession,
                                                   sessions_pb2.LeaveSessionRequest(session_id=self.id))).session

    async def end(self) -> sessions_pb2.EndSessionResponse:
        """Ends the session for everyone (host only); returns its `metrics` (utterance count,
        latency, errors) and the ended `session`."""
        return await self.client._authorized(self.client._sessions.EndSession,
                                             sessions_pb2.EndSessionRequest(session_id=self.id))

    async def export_transcript(self, format: str = "txt") -> Transcript:
        return await self.client.export_transcript(self.id, format)


class _Outgoing:
    """The audio of one `converse`, across its reconnections: a task reads `audio` into a
    queue, and each stream's requests take from it, so a new stream goes on where the lost
    one stopped (a chunk in flight when the connection broke is lost, as on a phone)."""

    def __init__(self, audio: AsyncIterable[bytes] | Iterable[bytes] | None, *, replay_first: bool) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=50)
        self.replay_first = replay_first
        self.first: bytes | None = None
        """The first chunk, sent again at the start of every later stream with `replay_first`."""
        self.sequence = 0
        self.finished = False
        self.held: list[bytes | None] = []
        self.error: BaseException | None = None
        """What `audio` raised: it ends the conversation, raised by `converse`."""
        self.reader = asyncio.create_task(self._read(audio)) if audio is not None else None

    async def _read(self, audio: AsyncIterable[bytes] | Iterable[bytes]) -> None:
        try:
            async for chunk in _aiter(audio):
                await self.queue.put(chunk)
        except Exception as e:
            self.error = e
        await self.queue.put(None)

    async def requests(self, join: conversation_pb2.JoinConversation, stopped: asyncio.Event,
                       ) -> AsyncIterator[conversation_pb2.ConverseRequest]:
        """One stream's requests, until `stopped` is set when the stream is over: a lost
        stream's requests must not wait on (and take) the next stream's audio."""
        yield conversation_pb2.ConverseRequest(join=join)
        if self.reader is None:
            await stopped.wait()  # listen only: the stream stays open until it is over
            return
        if self.replay_first and self.first is not None:
            self.sequence += 1
            yield _audio(self.first, self.sequence)
        while not self.finished:
            data = await self._next(stopped)
            if stopped.is_set():
                return
            if data is None:
                if self.error is not None:
                    raise self.error  # grpc cancels the call; converse raises the error
                self.finished = True
                break
            if self.first is None:
                self.first = data
            # numbered across streams: each is above the one before, as the server requires
            self.sequence += 1
            yield _audio(data, self.sequence)
        yield conversation_pb2.ConverseRequest(leave=conversation_pb2.LeaveConversation())

    async def _next(self, stopped: asyncio.Event) -> bytes | None:
        """The next chunk, or None at the end; when `stopped` comes first a chunk taken
        meanwhile is kept for the next stream."""
        if self.held:
            return self.held.pop()
        get = asyncio.ensure_future(self.queue.get())
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            get.cancel()  # a cancelled Queue.get leaves its item in the queue
        if not get.done() or get.cancelled():
            return None
        if stopped.is_set():
            self.held.append(get.result())
            return None
        return get.result()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


def _audio(data: bytes, sequence: int) -> conversation_pb2.ConverseRequest:
    now = Timestamp()
    now.GetCurrentTime()
    return conversation_pb2.ConverseRequest(
        audio=conversation_pb2.AudioChunk(data=data, sequence=sequence, capture_time=now))


async def _aiter(chunks: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


async def _call(call: Awaitable[T]) -> T:
    try:
        return await call
    except grpc.aio.AioRpcError as e:
        raise errors.from_rpc_error(e) from None
