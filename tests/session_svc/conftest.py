"""session_svc over real gRPC, its model services running fake engines (plumbing only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from dragoman import audio, config, mux
from dragoman.tls import MeshTls
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import conversation_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from tests.conftest import ASSERTIONS
from tests.rawclient import join_request, speak
from tests.session_svc.stack import Stack, session_stack


@pytest.fixture(scope="session")
async def plumbing(settings: config.Settings) -> AsyncIterator[Stack]:
    async with session_stack(settings) as stack:
        yield stack


class Caller:
    """Calls session_svc directly as a given user (what the gateway does)."""

    def __init__(self, address: str, user_id: str, trunk: bool = False,
                 tls: MeshTls | None = None) -> None:
        self.channel = mux.channel(address, trunk=trunk, tls=tls, server_role="session")
        self.user_id = user_id
        self.metadata = ASSERTIONS.metadata(user_id, user_id.title())
        self.sessions = sessions_pb2_grpc.SessionServiceStub(self.channel)
        self.conversation = conversation_pb2_grpc.ConversationServiceStub(self.channel)
        self.requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        self.events: list[pb.ConversationEvent] = []

    async def create(self, language: str) -> sessions_pb2.Session:
        reply = await self.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(language_code=language), metadata=self.metadata)
        return reply.session

    async def join(self, code: str, language: str) -> sessions_pb2.Session:
        reply = await self.sessions.JoinSession(
            sessions_pb2.JoinSessionRequest(code=code, language_code=language), metadata=self.metadata)
        return reply.session

    async def _stream(self) -> AsyncIterator[pb.ConverseRequest]:
        while (r := await self.requests.get()) is not None:
            yield r

    def converse(self, session_id: str, resume_after: int = 0, history_key: bytes = b"") -> object:
        self.requests = asyncio.Queue()
        self.requests.put_nowait(join_request(
            session_id, 16000, resume_after=resume_after, history_key=history_key))
        return self.conversation.Converse(self._stream(), metadata=self.metadata)

    async def collect(  # type: ignore[no-untyped-def]
        self, call, until: str, count: int = 1, timeout: float = 30
    ) -> list[pb.ConversationEvent]:
        """Reads events into self.events until `count` events of kind `until` arrived."""
        seen = 0

        async def run() -> None:
            nonlocal seen
            async for response in call:
                self.events.append(response.event)
                if response.event.WhichOneof("kind") == until:
                    seen += 1
                    if seen == count:
                        return

        await asyncio.wait_for(run(), timeout)
        return self.events

    async def say(self, pcm: bytes, first_sequence: int = 1) -> None:
        async for request in speak(pcm, 16000, first_sequence=first_sequence, realtime=False):
            await self.requests.put(request)

    async def close(self) -> None:
        await self.requests.put(None)
        await self.channel.close()


async def answers(channel: object, session_id: str,
                  metadata: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """(status, message) of GetSession on `session_id`, CreateSession, ListSessions
    and a Converse stream joining `session_id`, made on `channel` with `metadata`:
    one pair when session_svc refuses them all alike."""
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)

    async def join() -> AsyncIterator[pb.ConverseRequest]:
        yield join_request(session_id, 16000)

    async def converse() -> None:
        async for _ in conversation_pb2_grpc.ConversationServiceStub(channel).Converse(
                join(), metadata=metadata):
            return

    out = set()
    for call in (
        sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id), metadata=metadata),
        sessions.CreateSession(sessions_pb2.CreateSessionRequest(language_code="en"), metadata=metadata),
        sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=metadata),
        converse(),
    ):
        try:
            await call
            out.add(("OK", ""))
        except grpc.aio.AioRpcError as e:
            out.add((e.code().name, e.details() or ""))
    return out


def utterance(fleurs: Path, name: str = "fleurs-en-004") -> bytes:
    """Real speech (the VAD is real) with silence around it."""
    speech = audio.decode_file(fleurs / f"{name}.ogg")
    pad, tail = np.zeros(4800, np.float32), np.zeros(32000, np.float32)
    return audio.float_to_pcm16(np.concatenate([pad, speech, tail]))


def kinds(events: list[pb.ConversationEvent]) -> list[str]:
    return [e.WhichOneof("kind") for e in events if e.WhichOneof("kind") != "heartbeat"]
