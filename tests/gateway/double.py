"""A test double of session_svc: the same public services, simple behaviour.

It answers with the identity the gateway asserted, and records each call's
metadata and deadline (`calls`) and the streams its caller cancelled
(`cancelled`), so tests can see what the gateway forwarded. Plumbing only:
no sessions, no pipeline.

Special session ids and codes: "missing" / "000000" -> NOT_FOUND; Converse
joining "replaced" -> ABORTED; Listen on
"endless" streams heartbeats until cancelled; Listen on "fails-midway" sends
one event, then NOT_FOUND.

SessionDataService: every session is held by the one replica (owner ""),
but "missing" and "000000", which have none; lookups are recorded in
`owners_asked`. ExportUserData gives one session of the caller with one
utterance; DeleteUserData counts 2 sessions and 5 utterances the first time
per user, nothing after, and fails UNAVAILABLE while `deletes_fail`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from dragoman import rpc
from dragoman.assertion import IDENTITY_HEADER
from dragoman.session.v1 import session_pb2, session_pb2_grpc
from dragoman.v1 import auth_pb2, conversation_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from dragoman.v1 import conversation_pb2 as cv
from tests.conftest import ASSERTIONS

MISSING_SESSION = "session missing does not exist"
MISSING_CODE = "no waiting session has code 000000"
ENDED_ELSEWHERE = "session fails-midway ended"
REPLACED = "a newer stream of this participant replaced this one"
DELETES_FAIL = "the session tables are unreachable"

FINISH_UP_S = 0.05
"""How long Converse takes to finish after its input ends."""

_T = TypeVar("_T")


def _active(session_id: str, *participants: sessions_pb2.Participant) -> sessions_pb2.Session:
    return sessions_pb2.Session(
        session_id=session_id, status=sessions_pb2.SESSION_STATUS_ACTIVE, participants=participants)


@dataclass
class Seen:
    """One call as the double received it."""

    method: str
    metadata: list[tuple[str, str | bytes]]
    time_remaining_s: float | None

    def values(self, key: str) -> list[str | bytes]:
        return [v for k, v in self.metadata if k == key]

    @property
    def asserted(self) -> tuple[str, str]:
        """(user id, username) of the verified identity assertion; ("", "") without one."""
        if not self.values(IDENTITY_HEADER):
            return "", ""
        who = ASSERTIONS.from_metadata(self.metadata)
        return who.user_id, who.username


class SessionDouble(
    sessions_pb2_grpc.SessionServiceServicer, conversation_pb2_grpc.ConversationServiceServicer,
    session_pb2_grpc.SessionDataServiceServicer,
):
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: list[Seen] = []
        self.cancelled: asyncio.Queue[str] = asyncio.Queue()
        self.owners_asked: list[str] = []
        self.deletes_fail = False
        self._deleted: set[str] = set()

    def _enter(self, method: str, context: grpc.aio.ServicerContext) -> sessions_pb2.Participant:
        metadata = list(context.invocation_metadata() or ())
        seen = Seen(method, metadata, context.time_remaining())
        self.calls.append(seen)
        user_id, username = seen.asserted
        return sessions_pb2.Participant(user_id=user_id, display_name=username)

    # SessionService

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        me = self._enter("CreateSession", context)
        me.language_code, me.voice = request.language_code, request.voice
        return sessions_pb2.CreateSessionResponse(session=sessions_pb2.Session(
            session_id="s-1", code="123456", status=sessions_pb2.SESSION_STATUS_WAITING,
            participants=[me],
        ))

    async def JoinSession(
        self, request: sessions_pb2.JoinSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.JoinSessionResponse:
        me = self._enter("JoinSession", context)
        if request.code == "000000":
            await context.abort(grpc.StatusCode.NOT_FOUND, MISSING_CODE)
        me.language_code = request.language_code
        return sessions_pb2.JoinSessionResponse(session=sessions_pb2.Session(
            session_id="s-1", status=sessions_pb2.SESSION_STATUS_ACTIVE, participants=[me],
        ))

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        me = self._enter("GetSession", context)
        if request.session_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, MISSING_SESSION)
        return sessions_pb2.GetSessionResponse(session=sessions_pb2.Session(
            session_id=request.session_id, status=sessions_pb2.SESSION_STATUS_ACTIVE,
            participants=[me],
        ))

    async def EndSession(
        self, request: sessions_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.EndSessionResponse:
        me = self._enter("EndSession", context)
        return sessions_pb2.EndSessionResponse(
            session=sessions_pb2.Session(
                session_id=request.session_id, status=sessions_pb2.SESSION_STATUS_ENDED,
                participants=[me],
            ),
            metrics=sessions_pb2.SessionMetrics(utterance_count=3),
        )

    async def RemoveParticipant(
        self, request: sessions_pb2.RemoveParticipantRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RemoveParticipantResponse:
        me = self._enter("RemoveParticipant", context)
        removed = sessions_pb2.Participant(
            user_id=request.user_id, state=sessions_pb2.PARTICIPANT_STATE_REMOVED)
        return sessions_pb2.RemoveParticipantResponse(session=_active(request.session_id, me, removed))

    async def LockSession(
        self, request: sessions_pb2.LockSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LockSessionResponse:
        session = _active(request.session_id, self._enter("LockSession", context))
        session.locked = request.locked
        return sessions_pb2.LockSessionResponse(session=session)

    async def LeaveSession(
        self, request: sessions_pb2.LeaveSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LeaveSessionResponse:
        me = self._enter("LeaveSession", context)
        me.state = sessions_pb2.PARTICIPANT_STATE_LEFT
        return sessions_pb2.LeaveSessionResponse(session=_active(request.session_id, me))

    async def ListLanguages(
        self, request: sessions_pb2.ListLanguagesRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListLanguagesResponse:
        """English only; open: recorded without asking for an identity."""
        self.calls.append(Seen("ListLanguages", list(context.invocation_metadata() or ()),
                               context.time_remaining()))
        return sessions_pb2.ListLanguagesResponse(languages=[sessions_pb2.LanguageSupport(
            language_code="en", display_name="English", recognized=True, spoken=True)])

    async def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        """Two pages: a live session "s-1", then an ended "s-0"."""
        me = self._enter("ListSessions", context)
        if request.page_token == "":
            return sessions_pb2.ListSessionsResponse(
                sessions=[sessions_pb2.Session(
                    session_id="s-1", status=sessions_pb2.SESSION_STATUS_ACTIVE, participants=[me])],
                next_page_token="page-2")
        return sessions_pb2.ListSessionsResponse(sessions=[sessions_pb2.Session(
            session_id="s-0", status=sessions_pb2.SESSION_STATUS_ENDED, participants=[me])])

    # SessionDataService

    async def GetSessionOwner(
        self, request: session_pb2.GetSessionOwnerRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.GetSessionOwnerResponse:
        self.owners_asked.append(request.session_id or request.code)
        if request.session_id == "missing" or request.code == "000000":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no live session")
        return session_pb2.GetSessionOwnerResponse(owner="")

    async def ExportUserData(
        self, request: session_pb2.ExportUserDataRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.ExportUserDataResponse:
        me = self._enter("ExportUserData", context)
        return session_pb2.ExportUserDataResponse(
            sessions=[sessions_pb2.Session(
                session_id="s-0", status=sessions_pb2.SESSION_STATUS_ENDED, participants=[me])],
            utterances=[auth_pb2.UtteranceRecord(
                session_id="s-0", utterance_id="1-1", speaker_user_id=me.user_id,
                source_text="hello", translated_text="olá")])

    async def DeleteUserData(
        self, request: session_pb2.DeleteUserDataRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.DeleteUserDataResponse:
        me = self._enter("DeleteUserData", context)
        if self.deletes_fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DELETES_FAIL)
        if me.user_id in self._deleted:
            return session_pb2.DeleteUserDataResponse()
        self._deleted.add(me.user_id)
        return session_pb2.DeleteUserDataResponse(deleted_session_count=2, deleted_utterance_count=5)

    # ConversationService

    async def _observed(self, method: str, responses: AsyncIterator[_T]) -> AsyncIterator[_T]:
        """`responses`, recording in `cancelled` when the caller cancels the call."""
        try:
            async for response in responses:
                yield response
        except asyncio.CancelledError:
            self.cancelled.put_nowait(method)
            raise

    def Converse(
        self,
        request_iterator: AsyncIterator[cv.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[cv.ConverseResponse]:
        return self._observed("Converse", self._converse(request_iterator, context))

    def Listen(
        self, request: cv.ListenRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cv.ListenResponse]:
        return self._observed("Listen", self._listen(request, context))

    async def _converse(
        self,
        request_iterator: AsyncIterator[cv.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[cv.ConverseResponse]:
        """Echoes each request as an event. `leave` ends the stream at once; the
        end of input (which a cancelled call also shows) ends it after a last
        `partner_disconnected` event, like session_svc finishing up."""
        me = self._enter("Converse", context)
        session_id = ""
        sequence = 0
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "leave":
                return
            sequence += 1
            event = cv.ConversationEvent(session_id=session_id, sequence=sequence)
            if kind == "join":
                session_id = event.session_id = request.join.session_id
                if session_id == "missing":
                    await context.abort(grpc.StatusCode.NOT_FOUND, MISSING_SESSION)
                if session_id == "replaced":
                    await context.abort(grpc.StatusCode.ABORTED, REPLACED)
                event.session_paired.partner_user_id = me.user_id
                event.session_paired.partner_display_name = me.display_name
            elif kind == "audio":
                event.speech_audio.data = request.audio.data
                event.speech_audio.chunk_index = request.audio.sequence
            else:
                event.heartbeat.SetInParent()
            yield cv.ConverseResponse(event=event)
        await asyncio.sleep(FINISH_UP_S)  # a cancelled call gets its CancelledError here
        bye = cv.ConversationEvent(session_id=session_id, sequence=sequence + 1)
        bye.partner_disconnected.reason = "left"
        yield cv.ConverseResponse(event=bye)

    async def _listen(
        self, request: cv.ListenRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cv.ListenResponse]:
        me = self._enter("Listen", context)
        session_id = request.join.session_id
        if session_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, MISSING_SESSION)
        paired = cv.ConversationEvent(session_id=session_id, sequence=1)
        paired.session_paired.partner_user_id = me.user_id
        paired.session_paired.partner_display_name = me.display_name
        yield cv.ListenResponse(event=paired)
        if session_id == "fails-midway":
            await context.abort(grpc.StatusCode.NOT_FOUND, ENDED_ELSEWHERE)
        sequence = 1
        while session_id == "endless" or sequence < 3:
            sequence += 1
            beat = cv.ConversationEvent(session_id=session_id, sequence=sequence)
            beat.heartbeat.SetInParent()
            yield cv.ListenResponse(event=beat)
            await asyncio.sleep(0.01)

    async def SendAudio(
        self, request: cv.SendAudioRequest, context: grpc.aio.ServicerContext
    ) -> cv.SendAudioResponse:
        self._enter("SendAudio", context)
        return cv.SendAudioResponse(sequence=request.audio.sequence)


def serve(double: SessionDouble, *more: tuple[Any, Any, str]) -> rpc.Service:
    """The double as a service, like session_svc; `more`: (add function, servicer, service
    name) of other services to serve beside it."""
    return rpc.Service.serving("session-double", [
        (sessions_pb2_grpc.add_SessionServiceServicer_to_server, double),
        (conversation_pb2_grpc.add_ConversationServiceServicer_to_server, double),
        (session_pb2_grpc.add_SessionDataServiceServicer_to_server, double),
        *((add, servicer) for add, servicer, _ in more),
    ], ["dragoman.v1.SessionService", "dragoman.v1.ConversationService",
        "dragoman.session.v1.SessionDataService", *(name for _, _, name in more)])
