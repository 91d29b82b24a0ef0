"""SessionDataService: what the gateway asks of session_svc's tables (the owner
of a live session, a user's data to export or delete), over real gRPC and
PostgreSQL, directly and on the trunk."""

from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from dragoman import config, mux
from dragoman.session.v1 import session_pb2, session_pb2_grpc
from dragoman.v1 import sessions_pb2
from tests.conftest import ASSERTIONS
from tests.session_svc.conftest import Caller, utterance
from tests.session_svc.stack import Stack, scratch_settings, session_stack

ADVERTISED = "10.0.0.9:50051"
"""The address the replica records as the owner of its sessions (nothing listens there)."""


@pytest.fixture(scope="module")
def data_settings(settings: config.Settings) -> Iterator[config.Settings]:
    with scratch_settings(settings, "session_data") as scratch:
        yield dataclasses.replace(
            scratch, session=dataclasses.replace(scratch.session, advertise_address=ADVERTISED))


@pytest.fixture(scope="module")
async def stack(data_settings: config.Settings) -> AsyncIterator[Stack]:
    async with session_stack(data_settings) as running:
        yield running


@pytest.fixture(params=[False, True], ids=["grpc", "trunk"])
async def data(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[
        session_pb2_grpc.SessionDataServiceAsyncStub]:
    channel = mux.channel(stack.session, trunk=request.param)
    yield session_pb2_grpc.SessionDataServiceStub(channel)  # type: ignore[misc]
    await channel.close()


_n = 0


def callers(stack: Stack, *names: str) -> list[Caller]:
    global _n
    _n += 1
    return [Caller(stack.session, f"{name}-d{_n}") for name in names]


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


async def test_the_owner_of_a_live_session_is_found_by_id_and_by_code(
    stack: Stack, data: session_pb2_grpc.SessionDataServiceAsyncStub,
) -> None:
    ana, ben = callers(stack, "ana", "ben")
    session = await ana.create("en")
    as_gateway = ASSERTIONS.metadata("gateway", "gateway")
    owner = functools.partial(data.GetSessionOwner, metadata=as_gateway)
    by_id = session_pb2.GetSessionOwnerRequest(session_id=session.session_id)
    by_code = session_pb2.GetSessionOwnerRequest(code=session.code)
    assert (await owner(by_id)).owner == ADVERTISED
    assert (await owner(by_code)).owner == ADVERTISED

    await ben.join(session.code, "pt")  # active: others may still join with the code
    assert (await owner(by_id)).owner == ADVERTISED
    assert (await owner(by_code)).owner == ADVERTISED

    await ana.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=session.session_id), metadata=ana.metadata)
    assert await code_of(owner(by_code)) == (
        grpc.StatusCode.NOT_FOUND, f"no live session has code {session.code}")
    assert await code_of(owner(by_id)) == (
        grpc.StatusCode.NOT_FOUND, f"no live session has id {session.session_id}")
    assert await code_of(owner(
        session_pb2.GetSessionOwnerRequest(session_id="never-was"))) == (
        grpc.StatusCode.NOT_FOUND, "no live session has id never-was")
    assert await code_of(owner(session_pb2.GetSessionOwnerRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT, "session_id or code is required")
    # only a gateway may ask which codes exist: an ordinary caller is refused
    assert (await code_of(data.GetSessionOwner(by_code)))[0] == grpc.StatusCode.UNAUTHENTICATED
    for c in (ana, ben):
        await c.close()


async def converse_once(stack: Stack, fleurs: Path) -> tuple[Caller, Caller, str]:
    """Ana says one utterance to Ben, then Ben ends the session."""
    ana, ben = callers(stack, "ana", "ben")
    session = await ana.create("en")
    await ben.join(session.code, "pt")
    ana_call, ben_call = ana.converse(session.session_id), ben.converse(session.session_id)
    await ana.say(utterance(fleurs))
    await ben.collect(ben_call, "processing_ended")
    await ana.collect(ana_call, "processing_ended")
    await ben.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=session.session_id), metadata=ben.metadata)
    return ana, ben, session.session_id


async def test_export_has_the_callers_sessions_and_their_utterances(
    stack: Stack, data: session_pb2_grpc.SessionDataServiceAsyncStub, fleurs: Path,
) -> None:
    ana, ben, sid = await converse_once(stack, fleurs)
    alone = await ana.create("en")

    exported = await data.ExportUserData(session_pb2.ExportUserDataRequest(), metadata=ana.metadata)
    assert [s.session_id for s in exported.sessions] == [alone.session_id, sid]  # newest first
    waiting, ended = exported.sessions
    assert waiting.status == sessions_pb2.SESSION_STATUS_WAITING and waiting.code == alone.code
    assert ended.status == sessions_pb2.SESSION_STATUS_ENDED and not ended.code
    assert ended.metrics.utterance_count == 1 and ended.HasField("end_time")
    assert [p.user_id for p in ended.participants] == [ana.user_id, ben.user_id]
    [said] = exported.utterances
    assert (said.session_id, said.speaker_user_id) == (sid, ana.user_id)
    assert (said.source_language_code, said.target_language_code) == ("en", "pt")
    assert said.source_text and said.translated_text  # decrypted
    assert said.latency.total.ToMilliseconds() > 0 and said.HasField("create_time")

    # Ben sees the same session and the utterance said to him, not Ana's other session
    his = await data.ExportUserData(session_pb2.ExportUserDataRequest(), metadata=ben.metadata)
    assert [s.session_id for s in his.sessions] == [sid]
    assert [u.utterance_id for u in his.utterances] == [said.utterance_id]
    stranger = await data.ExportUserData(
        session_pb2.ExportUserDataRequest(), metadata=ASSERTIONS.metadata("nobody-d", "Nobody"))
    assert list(stranger.sessions) == [] and list(stranger.utterances) == []
    assert (await code_of(data.ExportUserData(session_pb2.ExportUserDataRequest())))[0] \
        == grpc.StatusCode.UNAUTHENTICATED
    await ana.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=alone.session_id), metadata=ana.metadata)
    for c in (ana, ben):
        await c.close()


async def test_deleting_user_data_deletes_it_once(
    stack: Stack, data: session_pb2_grpc.SessionDataServiceAsyncStub, fleurs: Path,
) -> None:
    ana, ben, sid = await converse_once(stack, fleurs)
    alone = await ana.create("en")
    await ana.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=alone.session_id), metadata=ana.metadata)
    ana_id = ana.user_id

    deleted = await data.DeleteUserData(session_pb2.DeleteUserDataRequest(), metadata=ana.metadata)
    assert (deleted.deleted_session_count, deleted.deleted_utterance_count) == (2, 1)
    again = await data.DeleteUserData(session_pb2.DeleteUserDataRequest(), metadata=ana.metadata)
    assert (again.deleted_session_count, again.deleted_utterance_count) == (0, 0)

    empty = await data.ExportUserData(session_pb2.ExportUserDataRequest(), metadata=ana.metadata)
    assert list(empty.sessions) == [] and list(empty.utterances) == []
    for table, column in (("session_participants", "user_id"),
                          ("translation_logs", "speaker_user_id")):
        assert stack.query(f"SELECT count(*) FROM {table} WHERE {column} = %s", (ana_id,)) == [(0,)]
    # her session alone went whole; Ben keeps his, without her and what she said
    assert stack.query("SELECT count(*) FROM sessions WHERE session_id = %s",
                       (alone.session_id,)) == [(0,)]
    his = await data.ExportUserData(session_pb2.ExportUserDataRequest(), metadata=ben.metadata)
    [kept] = his.sessions
    assert kept.session_id == sid and [p.user_id for p in kept.participants] == [ben.user_id]
    assert kept.metrics.utterance_count == 1 and list(his.utterances) == []
    assert (await code_of(data.DeleteUserData(session_pb2.DeleteUserDataRequest())))[0] \
        == grpc.StatusCode.UNAUTHENTICATED
    for c in (ana, ben):
        await c.close()


async def test_a_nul_in_a_key_is_precise_through_the_service(
    stack: Stack, data: session_pb2_grpc.SessionDataServiceAsyncStub,
) -> None:
    """The database adapters refuse text with a NUL (db.Unstorable) before a query is
    sent; session_svc maps that to NOT_FOUND for lookups by id or code and to
    INVALID_ARGUMENT naming the field for a page token, never INTERNAL."""
    (ana,) = callers(stack, "ana")
    owner = functools.partial(data.GetSessionOwner, metadata=ASSERTIONS.metadata("gateway", "gateway"))
    assert await code_of(owner(session_pb2.GetSessionOwnerRequest(session_id="s\0"))) == (
        grpc.StatusCode.NOT_FOUND, "no live session has id s\0")
    assert (await code_of(owner(session_pb2.GetSessionOwnerRequest(code="12\x0034"))))[0] == \
        grpc.StatusCode.NOT_FOUND
    for call in (ana.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id="\0"),
                                         metadata=ana.metadata),
                 ana.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id="x\0y"),
                                         metadata=ana.metadata)):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND and "not found" in details
    nul_token = base64.urlsafe_b64encode(b"1:\0").decode()  # decodes to a session id "\0"
    assert await code_of(ana.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(page_token=nul_token), metadata=ana.metadata)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "page_token is not a token from ListSessions")
    await ana.close()


async def test_a_live_session_reports_the_errors_its_replica_counted(
    stack: Stack, data: session_pb2_grpc.SessionDataServiceAsyncStub, fleurs: Path,
) -> None:
    ana, ben = callers(stack, "ana", "ben")
    session = await ana.create("en")
    await ben.join(session.code, "pt")
    ana_call, _ = ana.converse(session.session_id), ben.converse(session.session_id)
    stack.mt.fail_with = RuntimeError("scripted translation failure")
    try:
        await ana.say(utterance(fleurs))
        await ana.collect(ana_call, "error")
    finally:
        stack.mt.fail_with = None
    as_gateway = ASSERTIONS.metadata("gateway", "gateway")
    live = await data.ListLiveSessions(session_pb2.ListLiveSessionsRequest(), metadata=as_gateway)
    mine = next(s for s in live.sessions if s.session_id == session.session_id)
    assert (mine.error_count, mine.error_count_known) == (1, True)

    ended = await ana.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=session.session_id), metadata=ana.metadata)
    assert ended.metrics.error_count == 1  # the same count reaches the stored metrics
    live = await data.ListLiveSessions(session_pb2.ListLiveSessionsRequest(), metadata=as_gateway)
    assert session.session_id not in {s.session_id for s in live.sessions}
    for c in (ana, ben):
        await c.close()
