"""The whole public API over PostgreSQL: who may see and do what, account
deletion and export, and privacy of logs. Gateway and session_svc are real
(fake model engines), sharing the gateway tests' scratch schema."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dragoman import config
from dragoman.v1 import auth_pb2, sessions_pb2
from dragoman.v1 import conversation_pb2 as cpb
from gateway import server
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, one_utterance, user
from tests.rawclient import RawClient, join_request
from tests.session_svc.stack import Stack, captured_logs, session_stack

OK, NOT_FOUND, FAILED = (
    grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    fast_audio = dataclasses.replace(settings.limits, audio_burst_chunks=10_000)
    async with session_stack(dataclasses.replace(settings, limits=fast_audio)) as running:
        yield running


@pytest.fixture(scope="module")
async def gateway(stack: Stack) -> AsyncIterator[str]:
    async for address in started(await server.create(stack.settings)):
        yield address


async def status_of(awaitable: object) -> grpc.StatusCode:
    try:
        await awaitable  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def first_event(call: object) -> grpc.StatusCode:
    """Status of a stream after its first event (OK once one arrives)."""
    try:
        async for _ in call:  # type: ignore[attr-defined]
            return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        return e.code()
    finally:
        call.cancel()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK


async def one_request(*requests: cpb.ConverseRequest) -> AsyncIterator[cpb.ConverseRequest]:
    for request in requests:
        yield request
    await asyncio.sleep(30)  # keep the stream open until cancelled


async def test_only_participants_see_or_act_on_a_session(gateway: str) -> None:
    owner, partner, stranger = [await user(gateway) for _ in range(3)]
    session = await owner.create_session("en")
    await partner.join_session(session.code, "pt")
    sid = session.session_id
    roles = {"owner": owner, "partner": partner, "stranger": stranger}

    def get(c: RawClient) -> object:
        return c.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=sid), metadata=c.metadata)

    def listen(c: RawClient) -> object:
        return c.conversation.Listen(cpb.ListenRequest(join=join_request(sid).join), metadata=c.metadata)

    def send(c: RawClient) -> object:
        return c.conversation.SendAudio(cpb.SendAudioRequest(
            session_id=sid, audio=cpb.AudioChunk(data=b"", sequence=1)), metadata=c.metadata)

    def converse(c: RawClient) -> object:
        return c.converse(one_request(join_request(sid)))

    async def listed(c: RawClient) -> bool:
        reply = await c.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=c.metadata)
        return sid in [s.session_id for s in reply.sessions]

    expected = {
        "owner": {"get": OK, "listen": OK, "converse": OK, "send": FAILED, "listed": True},
        "partner": {"get": OK, "listen": OK, "converse": OK, "send": FAILED, "listed": True},
        "stranger": {"get": NOT_FOUND, "listen": NOT_FOUND, "converse": NOT_FOUND,
                     "send": NOT_FOUND, "listed": False},
    }
    for role, c in roles.items():
        seen = {
            "get": await status_of(get(c)),
            # before any stream was open (a cancelled one closes asynchronously):
            "send": await status_of(send(c)),  # no Listen open: FAILED_PRECONDITION for members
            "listen": await first_event(listen(c)),
            "converse": await first_event(converse(c)),
            "listed": await listed(c),
        }
        assert seen == expected[role], role

    # the stranger learns nothing: the same answer as for a session that never existed
    ghost = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as real:
        await stranger.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=sid), metadata=stranger.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as fake:
        await stranger.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=ghost), metadata=stranger.metadata)
    assert real.value.details().replace(sid, "X") == fake.value.details().replace(ghost, "X")
    # nor can they end it (joining it with the code, while it is open, is how one takes part)
    assert await status_of(stranger.end_session(sid)) == NOT_FOUND
    # the owner cannot join their own waiting session; either participant may end one
    waiting = await owner.create_session("en")
    assert await status_of(owner.join_session(waiting.code, "en")) == FAILED
    ended = await partner.end_session(sid)
    assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
    assert await status_of(stranger.join_session(session.code, "es")) == NOT_FOUND
    assert (await owner.end_session(sid)).session.status == sessions_pb2.SESSION_STATUS_ENDED
    assert await status_of(stranger.end_session(sid)) == NOT_FOUND
    got = await get(owner)  # type: ignore[misc]
    assert got.session.metrics.duration_seconds > 0
    for c in roles.values():
        await c.channel.close()


async def talk(stack: Stack, gateway: str, fleurs: Path) -> tuple[RawClient, RawClient, str, list]:  # type: ignore[type-arg]
    """Ana (en) says one utterance to Ben (pt) through the gateway; returns Ben's events."""
    ana, ben = await user(gateway, "en"), await user(gateway, "pt")
    session_id, events = await one_utterance(ana, ben, fleurs)
    return ana, ben, session_id, events


def rows_mentioning(stack: Stack, *needles: str) -> dict[str, int]:
    tables = [t for (t,) in stack.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    counts = {}
    for table in tables:
        for needle in needles:
            [(n,)] = stack.query(
                f"SELECT count(*) FROM {table} t WHERE t::text ILIKE %s", (f"%{needle}%",))
            counts[f"{table}:{needle}"] = n  # type: ignore[assignment]
    return {k: v for k, v in counts.items() if v}


async def test_export_then_delete_leaves_no_row_of_the_user(
    stack: Stack, gateway: str, fleurs: Path
) -> None:
    ana, ben, sid, events = await talk(stack, gateway, fleurs)
    translation = next(e.translation for e in events
                       if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    await ana.end_session(sid)
    alone = await ana.create_session("en")

    exported = await ana.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=ana.metadata)
    assert exported.account.user_id == ana.user_id and exported.account.email.endswith("@example.org")
    assert len(exported.logins) == 1 and not exported.logins[0].revoked
    assert [s.session_id for s in exported.sessions] == [alone.session_id, sid]
    assert exported.sessions[1].metrics.utterance_count == 1
    [said] = exported.utterances
    assert (said.session_id, said.speaker_user_id) == (sid, ana.user_id)
    assert (said.source_text, said.translated_text) == (translation.source_text, translation.text)
    assert said.latency.total.ToMilliseconds() > 0
    username = exported.account.username
    assert rows_mentioning(stack, ana.user_id, username)  # there is data to delete

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ana.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(password="not my password"), metadata=ana.metadata)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "wrong password")
    deleted = await ana.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=ana.metadata)
    assert (deleted.deleted_session_count, deleted.deleted_utterance_count) == (2, 1)

    assert rows_mentioning(stack, ana.user_id, username, said.source_text) == {}
    assert stack.query("SELECT count(*) FROM sessions WHERE session_id = %s",
                       (alone.session_id,)) == [(0,)]
    # Ben keeps his session, without Ana in it
    history = await ben.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=ben.metadata)
    [kept] = [s for s in history.sessions if s.session_id == sid]
    assert [p.user_id for p in kept.participants] == [ben.user_id]
    assert kept.metrics.utterance_count == 1
    # and Ana's credentials are dead
    for call in (
        ana.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=ana.tokens.refresh_token)),
        ana.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD)),
        ana.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=ana.metadata),
    ):
        assert await status_of(call) in (grpc.StatusCode.UNAUTHENTICATED, NOT_FOUND)
    for c in (ana, ben):
        await c.channel.close()


async def test_logs_carry_no_tokens_passwords_or_text(
    stack: Stack, gateway: str, fleurs: Path
) -> None:
    with captured_logs() as captured:
        ana, ben, sid, events = await talk(stack, gateway, fleurs)
        first = ana.tokens
        renewed = await ana.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
        await status_of(ana.auth.RefreshToken(  # reuse: detected and logged
            auth_pb2.RefreshTokenRequest(refresh_token=first.refresh_token)))
        await ana.auth.Logout(auth_pb2.LogoutRequest(refresh_token=renewed.tokens.refresh_token))
    text = captured.getvalue()
    translation = next(e.translation for e in events
                       if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    assert ana.user_id in text and "refresh token shown again" in text  # the right logs
    secrets = [first.access_token, first.refresh_token, renewed.tokens.access_token,
               renewed.tokens.refresh_token, PASSWORD, translation.source_text, translation.text]
    assert [s for s in secrets if s in text] == []
    for c in (ana, ben):
        await c.channel.close()
