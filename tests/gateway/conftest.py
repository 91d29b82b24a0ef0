"""A real gateway on port 0 in front of the session_svc double, its accounts
in a scratch schema of the test PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from dragoman import config
from dragoman.db.testing import scratch_schema
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    sessions_pb2_grpc,
)
from gateway import server
from tests.conftest import started
from tests.gateway.double import SessionDouble, serve
from tests.rawclient import RawClient, join_request, speak
from tests.session_svc.conftest import utterance

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
PASSWORD = "correct horse battery"


def with_session_address(settings: config.Settings, address: str) -> config.Settings:
    return dataclasses.replace(
        settings,
        auth=dataclasses.replace(settings.auth, jwt_secret=SECRET),
        addresses=dataclasses.replace(settings.addresses, session=address),
    )


def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {access_token}"),)


async def failure(call: object, code: grpc.StatusCode) -> str:
    """The details of the error `call` fails with, asserting its status is `code`."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def user(address: str, language: str = "en") -> RawClient:
    """A newly registered user, signed in at the gateway `address`."""
    client = RawClient(address)
    name = unique_name("u")
    await client.register(name, f"{name}@example.org", PASSWORD, language)
    return client


async def one_utterance(
    ana: RawClient, ben: RawClient, fleurs: Path, languages: tuple[str, str] = ("en", "pt"),
) -> tuple[str, list[conversation_pb2.ConversationEvent]]:
    """Ana creates a session, Ben joins, Ana says one FLEURS utterance: the session id and
    Ben's events up to the end of its processing."""
    session = await ana.create_session(languages[0])
    await ben.join_session(session.code, languages[1])
    queues: list[asyncio.Queue[conversation_pb2.ConverseRequest | None]] = [
        asyncio.Queue(), asyncio.Queue()]

    async def stream(q: asyncio.Queue[conversation_pb2.ConverseRequest | None],
                     ) -> AsyncIterator[conversation_pb2.ConverseRequest]:
        while (item := await q.get()) is not None:
            yield item

    for q in queues:
        q.put_nowait(join_request(session.session_id))
    ana_call, ben_call = ana.converse(stream(queues[0])), ben.converse(stream(queues[1]))
    async for request in speak(utterance(fleurs), 16000, realtime=False):
        queues[0].put_nowait(request)
    events = []
    async for response in ben_call:
        events.append(response.event)
        if response.event.WhichOneof("kind") == "processing_ended":
            break
    for q in queues:
        q.put_nowait(None)
    ana_call.cancel()
    ben_call.cancel()
    return session.session_id, events


@dataclass
class Stubs:
    auth: auth_pb2_grpc.AuthServiceAsyncStub
    sessions: sessions_pb2_grpc.SessionServiceAsyncStub
    conversation: conversation_pb2_grpc.ConversationServiceAsyncStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            auth_pb2_grpc.AuthServiceStub(channel),  # type: ignore[arg-type]
            sessions_pb2_grpc.SessionServiceStub(channel),  # type: ignore[arg-type]
            conversation_pb2_grpc.ConversationServiceStub(channel),  # type: ignore[arg-type]
        )

    async def register(self, username: str = "") -> tuple[str, auth_pb2.RegisterResponse]:
        username = username or unique_name()
        reply = await self.auth.Register(auth_pb2.RegisterRequest(
            username=username, email=f"{username}@example.org", password=PASSWORD,
            preferred_language_code="en",
        ))
        return username, reply


@pytest.fixture(scope="session")
def settings(settings: config.Settings) -> Iterator[config.Settings]:
    """The settings of the gateway tests: their own schema, dropped after."""
    with scratch_schema(prefix="gateway") as database:
        yield dataclasses.replace(settings, database=database)


@pytest.fixture(scope="module")
async def double() -> SessionDouble:
    return SessionDouble()


@pytest.fixture(scope="module")
async def double_address(double: SessionDouble) -> AsyncIterator[str]:
    async for address in started(serve(double)):
        yield address


@pytest.fixture(autouse=True)
def _fresh_double(double: SessionDouble) -> None:
    double.reset()


@pytest.fixture(scope="module")
async def gateway(settings: config.Settings, double_address: str) -> AsyncIterator[str]:
    service = await server.create(with_session_address(settings, double_address))
    async for address in started(service):
        yield address


@pytest.fixture(scope="module")
async def stubs(gateway: str) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(gateway) as channel:
        yield Stubs.on(channel)


@pytest.fixture(scope="module")
async def alice(stubs: Stubs) -> tuple[str, auth_pb2.RegisterResponse]:
    """A registered user shared by the proxy tests."""
    return await stubs.register(unique_name("alice"))
