"""Every public RPC through the real gateway with random and boundary messages:
each case ends in a precise status, and afterwards the mesh still carries a
conversation."""

from __future__ import annotations

import grpc
from hypothesis import example, given
from hypothesis import strategies as st

from dragoman.v1 import auth_pb2, recording_pb2, sessions_pb2
from dragoman.v1 import conversation_pb2 as pb
from tests.fuzz.cases import (
    FUZZ,
    PASSWORD,
    chunks,
    client_stream_outcome,
    converse_requests,
    int32s,
    joins,
    languages,
    outcome,
    requests_of,
    still_converses,
    stream_outcome,
    texts,
    token_kinds,
    uint64s,
)
from tests.rawclient import RawClient

OK, INVALID, UNAUTHENTICATED = (
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED)


# -- AuthService ----------------------------------------------------------------------

@FUZZ
@example(username="nul-in-email", email="a\x00@example.org", password="password-123",
         language="en")  # was INTERNAL
@given(username=texts, email=texts, password=texts, language=languages)
async def test_register(gateway: str, username: str, email: str, password: str, language: str) -> None:
    async with RawClient(gateway) as client:
        await outcome("Register", client.auth.Register(auth_pb2.RegisterRequest(
            username=username, email=email, password=password, preferred_language_code=language)),
            ("username", "email", "password", "preferred_language_code"))


@FUZZ
@example(username="\x00", password="password-123")  # was INTERNAL
@given(username=texts, password=texts)
async def test_login(gateway: str, member: RawClient, username: str, password: str) -> None:
    code = await outcome("Login", member.auth.Login(
        auth_pb2.LoginRequest(username=username, password=password)), ("username", "password"))
    assert code != OK


@FUZZ
@given(token=st.one_of(texts, st.sampled_from(("access", "spent"))), logout=st.booleans())
async def test_refresh_and_logout(gateway: str, member: RawClient, token: str, logout: bool) -> None:
    if token == "access":  # an access token where a refresh token belongs
        token = member.tokens.access_token
    if logout:
        code = await outcome("Logout", member.auth.Logout(auth_pb2.LogoutRequest(refresh_token=token)),
                             ("refresh_token",))
    else:
        code = await outcome("RefreshToken", member.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=token)), ("refresh_token",))
        assert code != OK


@FUZZ
@given(password=texts)
async def test_delete_account_with_a_wrong_password(member: RawClient, password: str) -> None:
    code = await outcome("DeleteAccount", member.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=password), metadata=member.metadata), ("password",))
    assert code in (UNAUTHENTICATED, INVALID)


@FUZZ
@given(data=st.data())
async def test_tokens_of_the_wrong_kind_are_unauthenticated(member: RawClient, data: st.DataObject) -> None:
    kind, metadata = data.draw(token_kinds(member))
    calls = {
        "ExportMyData": lambda: member.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=metadata),
        "DeleteAccount": lambda: member.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=metadata),
        "CreateSession": lambda: member.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(language_code="en"), metadata=metadata),
        "ListSessions": lambda: member.sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(), metadata=metadata),
        "SendAudio": lambda: member.conversation.SendAudio(
            pb.SendAudioRequest(session_id="s", audio=pb.AudioChunk(sequence=1)), metadata=metadata),
    }
    rpc = data.draw(st.sampled_from(sorted(calls)))
    assert await outcome(rpc, calls[rpc]()) == UNAUTHENTICATED, kind
    for rpc, call in (
        ("Listen", member.conversation.Listen(pb.ListenRequest(), metadata=metadata)),
        ("Converse", member.conversation.Converse(requests_of([]), metadata=metadata)),
    ):
        assert await stream_outcome(rpc, call) == UNAUTHENTICATED, kind


async def test_export_after_the_token_cases(member: RawClient) -> None:
    """The member survived every forged token: their own token still works."""
    exported = await member.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=member.metadata)
    assert exported.account.username == "fuzz-member"


# -- SessionService -------------------------------------------------------------------

session_ids = st.one_of(texts, st.sampled_from(("own", "own", "ended")))


async def _session_id(member: RawClient, choice: str) -> str:
    if choice in ("own", "ended"):
        session = await member.create_session("en")
        if choice == "ended":
            await member.end_session(session.session_id)
        return session.session_id
    return choice


@FUZZ
@example(language="en", voice="af\x00heart", max_participants=0, privacy=0)  # was INTERNAL
@given(language=languages, voice=texts, max_participants=int32s,
       privacy=st.one_of(st.integers(0, 4), int32s))
async def test_create_session(
    member: RawClient, language: str, voice: str, max_participants: int, privacy: int,
) -> None:
    await outcome("CreateSession", member.sessions.CreateSession(sessions_pb2.CreateSessionRequest(
        language_code=language, voice=voice, max_participants=max_participants,
        privacy_mode=privacy), metadata=member.metadata),  # type: ignore[arg-type]
        ("language_code", "voice", "max_participants", "privacy_mode"))


@FUZZ
@example(code="\x00", language="pt", voice="", one_way=False)  # was INTERNAL
@given(code=st.one_of(texts, st.sampled_from(("own", "000000"))), language=languages, voice=texts,
       one_way=st.booleans())
async def test_join_session(member: RawClient, code: str, language: str, voice: str, one_way: bool) -> None:
    if code == "own":
        code = (await member.create_session("en")).code
    await outcome("JoinSession", member.sessions.JoinSession(sessions_pb2.JoinSessionRequest(
        code=code, language_code=language, voice=voice, allow_one_way=one_way),
        metadata=member.metadata), ("code", "language_code", "voice"))


async def test_a_refused_voice_leaves_the_code_waiting(gateway: str, member: RawClient) -> None:
    async with RawClient(gateway) as guest:
        await guest.register("fuzz-guest", "guest@example.org", "password-123", "pt")
        session = await member.create_session("en")
        refused = guest.sessions.JoinSession(sessions_pb2.JoinSessionRequest(
            code=session.code, language_code="pt", voice="af\x00heart"), metadata=guest.metadata)
        assert await outcome("JoinSession", refused, ("voice",)) == INVALID  # was INTERNAL
        joined = await guest.join_session(session.code, "pt")
        assert joined.session_id == session.session_id


@FUZZ
@example(choice="own", rpc="LockSession", user_id="", locked=True)  # was INTERNAL
@example(choice="own", rpc="LeaveSession", user_id="", locked=False)  # was INTERNAL
@example(choice="\x00", rpc="GetSession", user_id="", locked=False)  # was INTERNAL
@given(choice=session_ids, rpc=st.sampled_from(("GetSession", "EndSession", "LockSession",
                                                "LeaveSession", "RemoveParticipant")),
       user_id=texts, locked=st.booleans())
async def test_session_calls(member: RawClient, choice: str, rpc: str, user_id: str, locked: bool) -> None:
    session_id = await _session_id(member, choice)
    stub, meta = member.sessions, member.metadata
    request = {
        "GetSession": lambda: stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), metadata=meta),
        "EndSession": lambda: stub.EndSession(
            sessions_pb2.EndSessionRequest(session_id=session_id), metadata=meta),
        "LockSession": lambda: stub.LockSession(
            sessions_pb2.LockSessionRequest(session_id=session_id, locked=locked), metadata=meta),
        "LeaveSession": lambda: stub.LeaveSession(
            sessions_pb2.LeaveSessionRequest(session_id=session_id), metadata=meta),
        "RemoveParticipant": lambda: stub.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
            session_id=session_id, user_id=user_id), metadata=meta),
    }[rpc]
    await outcome(rpc, request(), ("session_id", "user_id"))


@FUZZ
@example(choice="ended", fmt=sessions_pb2.TRANSCRIPT_FORMAT_SRT)
@given(choice=session_ids, fmt=int32s)
async def test_export_transcript(member: RawClient, choice: str, fmt: int) -> None:
    session_id = await _session_id(member, choice)
    await outcome("ExportTranscript", member.sessions.ExportTranscript(
        sessions_pb2.ExportTranscriptRequest(session_id=session_id, format=fmt),  # type: ignore[arg-type]
        metadata=member.metadata), ("session_id", "format"))


@FUZZ
@example(page_size=0, page_token="MToA")  # a session id with a NUL in the token: was INTERNAL
@given(page_size=int32s, page_token=st.one_of(texts, st.sampled_from(("AAAA", "bm90IGEgdG9rZW4=", "=="))))
async def test_list_sessions(member: RawClient, page_size: int, page_token: str) -> None:
    await outcome("ListSessions", member.sessions.ListSessions(sessions_pb2.ListSessionsRequest(
        page_size=page_size, page_token=page_token), metadata=member.metadata), ("page_size", "page_token"))
    assert await outcome("ListLanguages", member.sessions.ListLanguages(
        sessions_pb2.ListLanguagesRequest())) == OK


# -- RecordingService -----------------------------------------------------------------

@FUZZ
@example(choice="own", rpc="RequestRecording", recording_id="", flag=True)  # alone: FAILED_PRECONDITION
@example(choice="own", rpc="GetRecording", recording_id="\x00", flag=False)
@given(choice=session_ids, rpc=st.sampled_from((
    "RequestRecording", "AnswerRecordingConsent", "WithdrawRecordingConsent", "GetRecording",
    "ListRecordings", "DownloadRecording")), recording_id=st.one_of(texts, st.sampled_from(
        ("own-", "own-0123456789abcdef"))), flag=st.booleans())
async def test_recording_calls(
    member: RawClient, choice: str, rpc: str, recording_id: str, flag: bool,
) -> None:
    session_id = await _session_id(member, choice)
    if recording_id.startswith("own-"):  # a recording id of the member's session that is no recording
        recording_id = session_id + recording_id[3:]
    stub, meta = member.recordings, member.metadata
    if rpc == "DownloadRecording":
        await stream_outcome(rpc, stub.DownloadRecording(recording_pb2.DownloadRecordingRequest(
            recording_id=recording_id, text_only=flag), metadata=meta), timeout_s=10, events=2)
        return
    request = {
        "RequestRecording": lambda: stub.RequestRecording(recording_pb2.RequestRecordingRequest(
            session_id=session_id, translated_speech=flag, original_voice=flag), metadata=meta),
        "AnswerRecordingConsent": lambda: stub.AnswerRecordingConsent(
            recording_pb2.AnswerRecordingConsentRequest(recording_id=recording_id, consent=flag),
            metadata=meta),
        "WithdrawRecordingConsent": lambda: stub.WithdrawRecordingConsent(
            recording_pb2.WithdrawRecordingConsentRequest(recording_id=recording_id), metadata=meta),
        "GetRecording": lambda: stub.GetRecording(
            recording_pb2.GetRecordingRequest(recording_id=recording_id), metadata=meta),
        "ListRecordings": lambda: stub.ListRecordings(recording_pb2.ListRecordingsRequest(
            session_id=session_id, page_size=5 if flag else 0), metadata=meta),
    }[rpc]
    await outcome(rpc, request(), ("session_id", "recording_id", "page_size"))


# -- ConversationService --------------------------------------------------------------

class Sessions:
    """Session ids of an example: "own" and "ended" stand for a live and an ended session
    of the member (created on first use), anything else is sent as drawn."""

    def __init__(self, member: RawClient) -> None:
        self.member, self.made = member, dict[str, str]()

    async def __call__(self, choice: str) -> str:
        if choice not in ("own", "ended"):
            return choice
        if choice not in self.made:
            self.made[choice] = await _session_id(self.member, choice)
        return self.made[choice]

    async def requests(self, items: list[pb.ConverseRequest]) -> list[pb.ConverseRequest]:
        for item in items:
            if item.HasField("join"):
                item.join.session_id = await self(item.join.session_id)
        return items


CONVERSE_FIELDS = ("join", "audio", "session_id", "encoding", "sample_rate_hertz", "sequence", "data",
                   "resume_after_sequence")


@FUZZ
@example(requests=[pb.ConverseRequest(join=pb.JoinConversation(
    session_id="\x00", encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000))])  # was INTERNAL
@given(requests=st.lists(converse_requests(session_ids), min_size=1, max_size=12))
async def test_converse(member: RawClient, requests: list[pb.ConverseRequest]) -> None:
    """Any order of join, audio, heartbeat and leave (audio before join, join twice,
    sequences going backwards, random bytes as audio)."""
    sent = await Sessions(member).requests(requests)
    await client_stream_outcome("Converse", member.address, sent, member.metadata, CONVERSE_FIELDS)


@FUZZ
@given(join=joins(st.sampled_from(("own", "own", "ended"))), rest=st.lists(converse_requests(session_ids),
                                                                          max_size=12))
async def test_converse_after_a_good_join(
    member: RawClient, join: pb.JoinConversation, rest: list[pb.ConverseRequest]
) -> None:
    sent = await Sessions(member).requests([pb.ConverseRequest(join=join), *rest])
    await client_stream_outcome("Converse", member.address, sent, member.metadata, CONVERSE_FIELDS)


@FUZZ
@example(join=None, sends=[("\x00", pb.AudioChunk(sequence=1))])  # was INTERNAL
@given(join=st.one_of(joins(session_ids), st.none()),
       sends=st.lists(st.tuples(session_ids, st.one_of(chunks, st.none())), max_size=6))
async def test_listen_and_send_audio(
    member: RawClient, join: pb.JoinConversation | None, sends: list[tuple[str, pb.AudioChunk | None]]
) -> None:
    sessions = Sessions(member)
    if join is not None:
        join.session_id = await sessions(join.session_id)
    listen = member.conversation.Listen(
        pb.ListenRequest(join=join) if join is not None else pb.ListenRequest(), metadata=member.metadata)
    # while the stream is open, SendAudio of whatever chunks
    for session_id, chunk in sends:
        target = await sessions(session_id)
        request = (pb.SendAudioRequest(session_id=target, audio=chunk) if chunk is not None
                   else pb.SendAudioRequest(session_id=target))
        await outcome("SendAudio", member.conversation.SendAudio(request, metadata=member.metadata),
                      ("session_id", "audio", "sequence", "data"))
    await stream_outcome("Listen", listen, ("join", "session_id", "encoding", "sample_rate_hertz",
                                            "output_sample_rate_hertz", "resume_after_sequence"), events=3)


@FUZZ
@given(sequences=st.lists(uint64s, min_size=1, max_size=8))
async def test_send_audio_sequences(member: RawClient, sequences: list[int]) -> None:
    """Sequence numbers in any order on SendAudio to a listened session."""
    session_id = await _session_id(member, "own")
    listen = member.conversation.Listen(pb.ListenRequest(join=pb.JoinConversation(
        session_id=session_id, encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)),
        metadata=member.metadata)
    await anext(aiter(listen))  # listening now
    for sequence in sequences:
        await outcome("SendAudio", member.conversation.SendAudio(pb.SendAudioRequest(
            session_id=session_id, audio=pb.AudioChunk(data=b"\0\0" * 160, sequence=sequence)),
            metadata=member.metadata), ("sequence",))
    listen.cancel()


# -- afterwards -----------------------------------------------------------------------

async def test_the_mesh_still_serves_a_conversation(gateway: str) -> None:
    await still_converses(gateway)
