"""SessionService and ConversationService through the gateway to the session_svc double."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from dragoman import config, rpc
from dragoman.assertion import IDENTITY_HEADER
from dragoman.v1 import auth_pb2, conversation_pb2, sessions_pb2
from gateway import server
from tests.conftest import ASSERTIONS, started
from tests.gateway.conftest import PASSWORD, Stubs, bearer, unique_name, with_session_address
from tests.gateway.double import (
    ENDED_ELSEWHERE,
    MISSING_CODE,
    MISSING_SESSION,
    REPLACED,
    SessionDouble,
)

User = tuple[str, auth_pb2.RegisterResponse]
ConverseRequest = conversation_pb2.ConverseRequest


def token(user: User) -> tuple[tuple[str, str], ...]:
    return bearer(user[1].tokens.access_token)


def join(session_id: str = "s-1") -> ConverseRequest:
    return ConverseRequest(join=conversation_pb2.JoinConversation(session_id=session_id))


def audio(sequence: int) -> ConverseRequest:
    return ConverseRequest(audio=conversation_pb2.AudioChunk(
        data=bytes([sequence]) * 320, sequence=sequence
    ))


async def pump_tasks_left() -> list[asyncio.Task[object]]:
    """Gateway pump tasks still alive after a short settling wait."""
    for _ in range(100):
        left = [t for t in asyncio.all_tasks() if t.get_name() == "gateway-bidi-pump"]
        if not left:
            return []
        await asyncio.sleep(0.02)
    return left


async def test_session_calls_carry_the_token_identity(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    username, registered = alice
    created = await stubs.sessions.CreateSession(
        sessions_pb2.CreateSessionRequest(language_code="en", voice="joe"), metadata=token(alice)
    )
    me = created.session.participants[0]
    assert (me.user_id, me.display_name) == (registered.user_id, username)
    assert (me.language_code, me.voice) == ("en", "joe")
    assert created.session.code == "123456"

    joined = await stubs.sessions.JoinSession(
        sessions_pb2.JoinSessionRequest(code="123456", language_code="pt-BR"),
        metadata=token(alice),
    )
    assert joined.session.status == sessions_pb2.SESSION_STATUS_ACTIVE
    assert joined.session.participants[0].language_code == "pt-BR"
    ended = await stubs.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id="s-1"), metadata=token(alice)
    )
    assert ended.session.status == sessions_pb2.SESSION_STATUS_ENDED
    assert ended.metrics.utterance_count == 3
    assert [c.method for c in double.calls] == ["CreateSession", "JoinSession", "EndSession"]


async def test_lock_leave_and_remove_reach_the_sessions_replica_as_the_caller(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    double.owners_asked.clear()
    locked = await stubs.sessions.LockSession(
        sessions_pb2.LockSessionRequest(session_id="lock-me", locked=True), metadata=token(alice))
    assert locked.session.locked
    left = await stubs.sessions.LeaveSession(
        sessions_pb2.LeaveSessionRequest(session_id="leave-me"), metadata=token(alice))
    assert left.session.participants[0].state == sessions_pb2.PARTICIPANT_STATE_LEFT
    removed = await stubs.sessions.RemoveParticipant(
        sessions_pb2.RemoveParticipantRequest(session_id="remove-from", user_id="mallory"),
        metadata=token(alice))
    assert removed.session.participants[1].state == sessions_pb2.PARTICIPANT_STATE_REMOVED
    assert [c.method for c in double.calls] == ["LockSession", "LeaveSession", "RemoveParticipant"]
    assert {c.asserted[0] for c in double.calls} == {alice[1].user_id}
    assert double.owners_asked == ["lock-me", "leave-me", "remove-from"]  # routed by the session's owner
    for call in (
        stubs.sessions.LockSession(sessions_pb2.LockSessionRequest(), metadata=token(alice)),
        stubs.sessions.LeaveSession(sessions_pb2.LeaveSessionRequest(), metadata=token(alice)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id" in (info.value.details() or "")
    assert len(double.calls) == 3  # refused at the edge


async def test_languages_are_listed_without_a_token_and_go_down_with_no_identity(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    for metadata in ((), token(alice)):  # a signed-in caller's identity is not passed on either
        reply = await stubs.sessions.ListLanguages(sessions_pb2.ListLanguagesRequest(),
                                                   metadata=metadata)
        assert [lang.language_code for lang in reply.languages] == ["en"]
        seen = double.calls[-1]
        assert seen.method == "ListLanguages" and seen.values(IDENTITY_HEADER) == []


async def test_history_pages_are_proxied(stubs: Stubs, double: SessionDouble, alice: User) -> None:
    first = await stubs.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(page_size=1), metadata=token(alice))
    assert [s.session_id for s in first.sessions] == ["s-1"] and first.next_page_token == "page-2"
    second = await stubs.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(page_token=first.next_page_token), metadata=token(alice))
    assert [s.session_id for s in second.sessions] == ["s-0"] and not second.next_page_token
    assert double.calls[-1].asserted[0] == alice[1].user_id


async def test_deleting_an_account_ends_its_live_sessions_first(
    stubs: Stubs, double: SessionDouble
) -> None:
    _, doomed = await stubs.register(unique_name("doomed"))
    metadata = bearer(doomed.tokens.access_token)
    deleted = await stubs.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=metadata)
    assert (deleted.deleted_session_count, deleted.deleted_utterance_count) == (2, 5)
    assert [c.method for c in double.calls] == [
        "ListSessions", "EndSession", "ListSessions", "DeleteUserData"]
    assert all(c.asserted[0] == doomed.user_id for c in double.calls)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.auth.Login(auth_pb2.LoginRequest(username=doomed.user_id, password=PASSWORD))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_account_whose_session_data_was_not_deleted_stays_until_a_retry(
    stubs: Stubs, double: SessionDouble
) -> None:
    username, doomed = await stubs.register(unique_name("doomed"))
    metadata = bearer(doomed.tokens.access_token)
    double.deletes_fail = True
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=metadata)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.UNAVAILABLE, "session service is unavailable")
    # nothing of the account went: its owner can log in and ask again
    await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    double.deletes_fail = False
    deleted = await stubs.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=metadata)
    assert (deleted.deleted_session_count, deleted.deleted_utterance_count) == (2, 5)
    assert double.calls[-1].method == "DeleteUserData"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_export_joins_the_account_and_what_session_svc_keeps(
    stubs: Stubs, double: SessionDouble
) -> None:
    username, user = await stubs.register(unique_name("exporter"))
    exported = await stubs.auth.ExportMyData(
        auth_pb2.ExportMyDataRequest(), metadata=bearer(user.tokens.access_token))
    assert (exported.account.user_id, exported.account.username) == (user.user_id, username)
    assert len(exported.logins) == 1
    [session] = exported.sessions
    assert session.session_id == "s-0" and session.participants[0].user_id == user.user_id
    [said] = exported.utterances
    assert (said.speaker_user_id, said.source_text) == (user.user_id, "hello")
    [seen] = double.calls
    assert seen.method == "ExportUserData" and seen.asserted[0] == user.user_id


async def test_calls_naming_a_session_ask_session_svc_for_its_owner(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    await stubs.sessions.JoinSession(
        sessions_pb2.JoinSessionRequest(code="654321", language_code="pt"), metadata=token(alice))
    await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-owned"), metadata=token(alice))
    await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-owned"), metadata=token(alice))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id="missing"), metadata=token(alice))
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.NOT_FOUND, MISSING_SESSION)
    # the owner of an id is remembered; a code and an unknown id are asked each time
    assert double.owners_asked == ["654321", "s-owned", "missing"]
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id="missing"), metadata=token(alice))
    assert double.owners_asked == ["654321", "s-owned", "missing", "missing"]


async def test_client_identity_headers_are_dropped(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    forged = (
        (IDENTITY_HEADER, ASSERTIONS.sign("someone-else", "admin")),
        ("x-dragoman-role", "root"),
        (rpc.CORRELATION_HEADER, "trace-me-123"),
    )
    reply = await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-9"), metadata=token(alice) + forged
    )
    assert reply.session.participants[0].user_id == alice[1].user_id
    seen = double.calls[-1]
    assert seen.asserted == (alice[1].user_id, alice[0])
    assert len(seen.values(IDENTITY_HEADER)) == 1
    assert seen.values("x-dragoman-role") == []
    assert seen.values("authorization") == []
    assert seen.values(rpc.CORRELATION_HEADER) == ["trace-me-123"]


async def test_the_remaining_deadline_goes_downstream(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    request = sessions_pb2.GetSessionRequest(session_id="s-1")
    await stubs.sessions.GetSession(request, metadata=token(alice), timeout=20)
    remaining_s = double.calls[-1].time_remaining_s
    # gRPC rounds the grpc-timeout header up a little on each hop
    assert remaining_s is not None and 0 < remaining_s <= 21
    await stubs.sessions.GetSession(request, metadata=token(alice))
    assert double.calls[-1].time_remaining_s is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, md: s.sessions.CreateSession(sessions_pb2.CreateSessionRequest(), metadata=md),
         "language_code is required"),
        (lambda s, md: s.sessions.JoinSession(
            sessions_pb2.JoinSessionRequest(language_code="en"), metadata=md),
         "code is required"),
        (lambda s, md: s.sessions.GetSession(sessions_pb2.GetSessionRequest(), metadata=md),
         "session_id is required"),
        (lambda s, md: s.conversation.SendAudio(
            conversation_pb2.SendAudioRequest(), metadata=md),
         "session_id is required"),
    ],
    ids=["create", "join", "get", "send-audio"],
)
async def test_obviously_bad_requests_stop_at_the_edge(
    stubs: Stubs, double: SessionDouble, alice: User, call: object, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(stubs, token(alice))  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message
    assert double.calls == []


async def test_downstream_not_found_keeps_code_and_message(
    stubs: Stubs, alice: User
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id="missing"), metadata=token(alice)
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == MISSING_SESSION
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.sessions.JoinSession(
            sessions_pb2.JoinSessionRequest(code="000000", language_code="en"),
            metadata=token(alice),
        )
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.NOT_FOUND, MISSING_CODE)
    # and the gateway goes on serving
    reply = await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-1"), metadata=token(alice)
    )
    assert reply.session.session_id == "s-1"


async def test_send_audio_is_proxied(stubs: Stubs, double: SessionDouble, alice: User) -> None:
    reply = await stubs.conversation.SendAudio(
        conversation_pb2.SendAudioRequest(
            session_id="s-1", audio=conversation_pb2.AudioChunk(data=b"\0\0", sequence=41)
        ),
        metadata=token(alice),
    )
    assert reply.sequence == 41
    assert double.calls[-1].asserted[0] == alice[1].user_id


async def listen(stubs: Stubs, user: User, session_id: str) -> grpc.aio.UnaryStreamCall:
    return stubs.conversation.Listen(
        conversation_pb2.ListenRequest(join=conversation_pb2.JoinConversation(
            session_id=session_id
        )),
        metadata=token(user),
    )


async def test_listen_streams_downstream_events(stubs: Stubs, alice: User) -> None:
    events = [r.event async for r in await listen(stubs, alice, "s-1")]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[0].session_paired.partner_user_id == alice[1].user_id
    assert all(e.HasField("heartbeat") for e in events[1:])


async def test_listen_errors_keep_code_and_message(stubs: Stubs, alice: User) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in await listen(stubs, alice, "missing"):
            pass
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND, MISSING_SESSION
    )
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in await listen(stubs, alice, "fails-midway"):
            received.append(response.event)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND, ENDED_ELSEWHERE
    )
    assert len(received) == 1 and received[0].HasField("session_paired")


async def test_cancelling_listen_cancels_the_downstream_call(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    call = await listen(stubs, alice, "endless")
    await call.read()
    await call.read()
    call.cancel()
    assert await asyncio.wait_for(double.cancelled.get(), 10) == "Listen"


async def test_converse_echoes_both_ways(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    call = stubs.conversation.Converse(metadata=token(alice))
    await call.write(join())
    first = await call.read()
    assert first.event.session_paired.partner_user_id == alice[1].user_id
    assert first.event.session_paired.partner_display_name == alice[0]
    for sequence in (1, 2, 3):
        await call.write(audio(sequence))
        echoed = (await call.read()).event
        assert echoed.speech_audio.chunk_index == sequence
        assert echoed.speech_audio.data == bytes([sequence]) * 320
    await call.write(ConverseRequest(heartbeat=conversation_pb2.ClientHeartbeat()))
    assert (await call.read()).event.HasField("heartbeat")
    await call.write(ConverseRequest(leave=conversation_pb2.LeaveConversation()))
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert double.calls[-1].asserted[0] == alice[1].user_id
    assert await pump_tasks_left() == []


async def test_converse_with_a_request_iterator_ends_when_input_ends(
    stubs: Stubs, alice: User
) -> None:
    async def requests() -> AsyncIterator[ConverseRequest]:
        yield join()
        for sequence in (1, 2):
            yield audio(sequence)

    call = stubs.conversation.Converse(requests(), metadata=token(alice))
    events = [r.event async for r in call]
    assert events[0].HasField("session_paired")
    assert [e.speech_audio.chunk_index for e in events[1:3]] == [1, 2]
    assert events[3].partner_disconnected.reason == "left"
    assert await call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("session_id", "code", "message"),
    [
        ("missing", grpc.StatusCode.NOT_FOUND, MISSING_SESSION),
        ("replaced", grpc.StatusCode.ABORTED, REPLACED),
    ],
)
async def test_converse_downstream_error_keeps_code_and_message(
    stubs: Stubs, alice: User, session_id: str, code: grpc.StatusCode, message: str
) -> None:
    call = stubs.conversation.Converse(metadata=token(alice))
    await call.write(join(session_id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert (info.value.code(), info.value.details()) == (code, message)
    assert await pump_tasks_left() == []


async def test_cancelling_converse_cancels_the_downstream_call(
    stubs: Stubs, double: SessionDouble, alice: User
) -> None:
    call = stubs.conversation.Converse(metadata=token(alice))
    await call.write(join())
    await call.read()
    call.cancel()
    assert await asyncio.wait_for(double.cancelled.get(), 10) == "Converse"
    assert await pump_tasks_left() == []
    # the gateway serves the next conversation
    again = stubs.conversation.Converse(metadata=token(alice))
    await again.write(join())
    assert (await again.read()).event.HasField("session_paired")
    await again.done_writing()
    assert (await again.read()).event.HasField("partner_disconnected")
    assert await again.read() == grpc.aio.EOF


def dead_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_unreachable_session_service_is_unavailable(settings: config.Settings) -> None:
    service = await server.create(with_session_address(settings, dead_address()))
    async for address in started(service):
        async with grpc.aio.insecure_channel(address) as channel:
            stubs = Stubs.on(channel)
            _, user = await stubs.register(unique_name("lonely"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stubs.sessions.CreateSession(
                    sessions_pb2.CreateSessionRequest(language_code="en"),
                    metadata=bearer(user.tokens.access_token),
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details().startswith("session service is unavailable")

            call = stubs.conversation.Converse(metadata=bearer(user.tokens.access_token))
            await call.write(join())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details().startswith("session service is unavailable")

            # still serving its own calls
            refreshed = await stubs.auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=user.tokens.refresh_token)
            )
            assert refreshed.tokens.access_token
    assert await pump_tasks_left() == []


async def test_a_given_session_channel_is_used_and_left_open(
    settings: config.Settings, double_address: str, double: SessionDouble
) -> None:
    async with rpc.channel(double_address) as session_channel:
        unreachable = with_session_address(settings, dead_address())
        service = await server.create(unreachable, session_channel=session_channel)
        async for address in started(service):
            async with grpc.aio.insecure_channel(address) as channel:
                stubs = Stubs.on(channel)
                _, user = await stubs.register(unique_name("bob"))
                await stubs.sessions.GetSession(
                    sessions_pb2.GetSessionRequest(session_id="s-1"),
                    metadata=bearer(user.tokens.access_token),
                )
        assert double.calls[-1].asserted[0] == user.user_id
        state = session_channel.get_state()
        assert state != grpc.ChannelConnectivity.SHUTDOWN
