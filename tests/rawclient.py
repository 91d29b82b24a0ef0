"""The public API as the generated stubs give it, for tests that send what the SDK
(clients/python) never would: audio before `join`, replayed sequences, bad tokens,
half-closed streams. A `RawClient` is one user's channel, stubs and tokens; every
other call is the stub's, with `metadata`, and its errors are grpc.aio.AioRpcError.

    c = RawClient(gateway)
    await c.register("ana", "ana@example.org", PASSWORD, "en")
    session = await c.create_session("en")
    call = c.conversation.Converse(requests, metadata=c.metadata)   # or c.converse(requests)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import audio, rpc
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2_grpc,
    recording_pb2_grpc,
    sessions_pb2_grpc,
    vocabulary_pb2_grpc,
)
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb


class RawClient:
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

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.channel.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The current access token, as every signed-in call carries it."""
        return (("authorization", f"Bearer {self.tokens.access_token}"),)

    async def register(self, username: str, email: str, password: str, language: str) -> str:
        signed = await self.auth.Register(auth_pb2.RegisterRequest(
            username=username, email=email, password=password, preferred_language_code=language))
        self.user_id, self.tokens = signed.user_id, signed.tokens
        return self.user_id

    async def login(self, username: str, password: str) -> str:
        signed = await self.auth.Login(auth_pb2.LoginRequest(username=username, password=password))
        self.user_id, self.tokens = signed.user_id, signed.tokens
        return self.user_id

    # the calls nearly every conversation test starts and ends with
    async def create_session(self, language: str, voice: str = "", max_participants: int = 0,
                             ) -> spb.Session:
        request = spb.CreateSessionRequest(language_code=language, voice=voice,
                                           max_participants=max_participants)
        return (await self.sessions.CreateSession(request, metadata=self.metadata)).session

    async def join_session(self, code: str, language: str, voice: str = "", allow_one_way: bool = False,
                           ) -> spb.Session:
        request = spb.JoinSessionRequest(code=code, language_code=language, voice=voice,
                                         allow_one_way=allow_one_way)
        return (await self.sessions.JoinSession(request, metadata=self.metadata)).session

    async def end_session(self, session_id: str) -> spb.EndSessionResponse:
        return await self.sessions.EndSession(spb.EndSessionRequest(session_id=session_id),
                                              metadata=self.metadata)

    def converse(self, requests: AsyncIterable[cpb.ConverseRequest]) -> grpc.aio.StreamStreamCall:
        return self.conversation.Converse(requests, metadata=self.metadata)


def join_request(
    session_id: str, rate_hz: int = audio.STT_RATE_HZ, output_rate_hz: int = 0,
    resume_after: int = 0, history_key: bytes = b"",
) -> cpb.ConverseRequest:
    """A `join` of LINEAR16 audio at `rate_hz`."""
    return cpb.ConverseRequest(join=cpb.JoinConversation(
        session_id=session_id, encoding=cpb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate_hz,
        output_sample_rate_hertz=output_rate_hz, resume_after_sequence=resume_after,
        history_key=history_key))


async def speak(
    pcm16: bytes, rate_hz: int, *, first_sequence: int = 1, chunk_ms: int = 100,
    realtime: bool = True, speed: float = 1.0,
) -> AsyncIterator[cpb.ConverseRequest]:
    """`pcm16` as numbered audio messages of `chunk_ms`, at `speed` times real time unless
    `realtime` is False."""
    start = time.monotonic()
    for i, data in enumerate(audio.chunks(pcm16, rate_hz, chunk_ms)):
        if realtime:
            await asyncio.sleep(max(0.0, start + i * chunk_ms / 1000 / speed - time.monotonic()))
        captured = Timestamp()
        captured.GetCurrentTime()
        yield cpb.ConverseRequest(audio=cpb.AudioChunk(data=data, sequence=first_sequence + i,
                                                       capture_time=captured))
