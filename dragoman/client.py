"""A small asyncio client of the public API, for integrators, the demo and tests.

    async with Client("127.0.0.1:50051") as c:
        await c.register("alice", "alice@example.org", "correct horse", "en")
        session = await c.create_session("en")
        call = c.converse(requests)       # requests: async iterator of ConverseRequest
        async for response in call: ...

`speak()` turns PCM16 into paced `ConverseRequest` audio messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import audio, rpc
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    recording_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    vocabulary_pb2_grpc,
)


class Client:
    """Public API client holding the caller's tokens."""

    def __init__(self, address: str, *, channel: grpc.aio.Channel | None = None) -> None:
        self.address = address
        self.channel = channel or grpc.aio.insecure_channel(address, options=rpc.CHANNEL_OPTIONS)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.sessions = sessions_pb2_grpc.SessionServiceStub(self.channel)
        self.conversation = conversation_pb2_grpc.ConversationServiceStub(self.channel)
        self.vocabularies = vocabulary_pb2_grpc.VocabularyServiceStub(self.channel)
        self.recordings = recording_pb2_grpc.RecordingServiceStub(self.channel)
        self.user_id = ""
        self.tokens = auth_pb2.TokenPair()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.channel.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.access_token}"),)

    async def register(self, username: str, email: str, password: str, language: str) -> str:
        reply = await self.auth.Register(auth_pb2.RegisterRequest(
            username=username, email=email, password=password, preferred_language_code=language))
        self.user_id, self.tokens = reply.user_id, reply.tokens
        return self.user_id

    async def login(self, username: str, password: str) -> str:
        reply = await self.auth.Login(auth_pb2.LoginRequest(username=username, password=password))
        self.user_id, self.tokens = reply.user_id, reply.tokens
        return self.user_id

    async def refresh(self) -> None:
        """Spends the refresh token for a new pair (an access token lasts
        auth.access_token_ttl_s; a long run outlives it)."""
        reply = await self.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=self.tokens.refresh_token))
        self.tokens = reply.tokens

    async def create_session(
        self, language: str, voice: str = "", max_participants: int = 0,
    ) -> sessions_pb2.Session:
        """A new session hosted by the caller; `max_participants` 0: the deployment's limit."""
        reply = await self.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                language_code=language, voice=voice, max_participants=max_participants),
            metadata=self.metadata)
        return reply.session

    async def join_session(
        self, code: str, language: str, voice: str = "", allow_one_way: bool = False,
    ) -> sessions_pb2.Session:
        reply = await self.sessions.JoinSession(
            sessions_pb2.JoinSessionRequest(
                code=code, language_code=language, voice=voice, allow_one_way=allow_one_way),
            metadata=self.metadata)
        return reply.session

    async def list_languages(self) -> sessions_pb2.ListLanguagesResponse:
        """What the deployment serves; needs no sign-in."""
        return await self.sessions.ListLanguages(sessions_pb2.ListLanguagesRequest())

    async def end_session(self, session_id: str) -> sessions_pb2.EndSessionResponse:
        return await self.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=session_id), metadata=self.metadata)

    async def lock_session(self, session_id: str, locked: bool = True) -> sessions_pb2.Session:
        """The host locks the session against new joiners (or unlocks it)."""
        reply = await self.sessions.LockSession(
            sessions_pb2.LockSessionRequest(session_id=session_id, locked=locked),
            metadata=self.metadata)
        return reply.session

    async def leave_session(self, session_id: str) -> sessions_pb2.Session:
        reply = await self.sessions.LeaveSession(
            sessions_pb2.LeaveSessionRequest(session_id=session_id), metadata=self.metadata)
        return reply.session

    async def remove_participant(self, session_id: str, user_id: str) -> sessions_pb2.Session:
        """The host removes a participant, who cannot join again."""
        reply = await self.sessions.RemoveParticipant(
            sessions_pb2.RemoveParticipantRequest(session_id=session_id, user_id=user_id),
            metadata=self.metadata)
        return reply.session

    async def export_transcript(
        self, session_id: str, fmt: sessions_pb2.TranscriptFormat.ValueType,
    ) -> sessions_pb2.ExportTranscriptResponse:
        """The session's transcript as a file (content type, name, bytes)."""
        return await self.sessions.ExportTranscript(
            sessions_pb2.ExportTranscriptRequest(session_id=session_id, format=fmt),
            metadata=self.metadata)

    def converse(
        self, requests: AsyncIterable[conversation_pb2.ConverseRequest]
    ) -> grpc.aio.StreamStreamCall:
        return self.conversation.Converse(requests, metadata=self.metadata)


def open_sealed_transcript(content: bytes, key: bytes) -> dict[str, object]:
    """A participant-keyed session's export (ExportTranscript), opened with the key the
    client sent as JoinConversation.history_key: the file with each record's `sealed`
    replaced by the utterance it holds (docs/privacy.md). DecryptionError for another key."""
    from dragoman.db import crypto  # cryptography's AES-GCM, as the server sealed it

    doc = json.loads(content)
    aead = AESGCM(key)
    doc["utterances"] = [
        {**json.loads(crypto.unseal(aead, base64.b64decode(r["sealed"]), r["aad"].encode())),
         "start_ms": r["start_ms"], "end_ms": r["end_ms"]}
        for r in doc.pop("records")]
    return doc  # type: ignore[no-any-return]


def join_request(
    session_id: str, rate_hz: int = audio.STT_RATE_HZ, output_rate_hz: int = 0,
    resume_after: int = 0, history_key: bytes = b"",
) -> conversation_pb2.ConverseRequest:
    return conversation_pb2.ConverseRequest(join=conversation_pb2.JoinConversation(
        session_id=session_id, encoding=conversation_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=rate_hz, output_sample_rate_hertz=output_rate_hz,
        resume_after_sequence=resume_after, history_key=history_key,
    ))


async def speak(
    pcm16: bytes, rate_hz: int, *, first_sequence: int = 1, chunk_ms: int = 100,
    realtime: bool = True, speed: float = 1.0,
) -> AsyncIterator[conversation_pb2.ConverseRequest]:
    """Audio messages of `chunk_ms`, paced at `speed` times real time unless `realtime` is False."""
    start = time.monotonic()
    for i, data in enumerate(audio.chunks(pcm16, rate_hz, chunk_ms)):
        if realtime:
            await asyncio.sleep(max(0.0, start + i * chunk_ms / 1000 / speed - time.monotonic()))
        ts = Timestamp()
        ts.GetCurrentTime()
        yield conversation_pb2.ConverseRequest(audio=conversation_pb2.AudioChunk(
            data=data, sequence=first_sequence + i, capture_time=ts))
