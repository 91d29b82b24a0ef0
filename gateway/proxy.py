"""The authenticated proxy of SessionService, ConversationService, VocabularyService and
RecordingService to session_svc.

session_svc serves the same public services on an internal address and acts
for the user named by an identity assertion that only gateways can sign
(dragoman.assertion). Every proxied call goes through `Proxy`, which checks
the access token, then calls downstream with fresh metadata: an assertion of
the identity from the token and (through `rpc.channel`) the correlation id,
nothing the client sent, and the caller's remaining deadline. Downstream
statuses reach the client with their code and message. Rate limits
(`gateway.limits`) apply after authentication, before anything goes
downstream.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from dragoman import errors, logs, rpc
from dragoman.assertion import Assertions
from dragoman.v1 import (
    conversation_pb2,
    conversation_pb2_grpc,
    recording_pb2,
    recording_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    vocabulary_pb2,
    vocabulary_pb2_grpc,
)
from gateway import peers
from gateway.auth import Authenticator, Identity
from gateway.limits import Limits, Pacer
from gateway.routing import Router

log = logging.getLogger(__name__)

DOWNSTREAM = "session service"
_SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


def _field(message: Any, path: str) -> Any:
    for name in path.split("."):
        message = getattr(message, name)
    return message


def _downstream_error(err: grpc.aio.AioRpcError) -> errors.DragomanError:
    log.info("session service call failed",
             extra={"code": err.code().name, "reason": err.details() or ""})
    mapped = errors.from_rpc_error(err, DOWNSTREAM)
    if type(mapped) is errors.DragomanError and err.code() not in _SERVER_FAULTS:
        # a status the error hierarchy has no class for (ABORTED when a newer
        # stream replaces this one, CANCELLED, OUT_OF_RANGE): keep it, not INTERNAL
        mapped.code = err.code()
    return mapped


async def end_live_sessions(router: Router, assertions: Assertions, identity: Identity) -> None:
    """Ends every session of the user that is still live in session_svc (on its replica)."""
    metadata = assertions.metadata(identity.user_id, identity.username)
    token = ""
    try:
        while True:
            page = await (await router.sessions()).ListSessions(
                sessions_pb2.ListSessionsRequest(page_size=100, page_token=token), metadata=metadata)
            for session in page.sessions:
                if session.status != sessions_pb2.SESSION_STATUS_ENDED:
                    owner = await router.sessions(session_id=session.session_id)
                    await owner.EndSession(
                        sessions_pb2.EndSessionRequest(session_id=session.session_id),
                        metadata=metadata)
            token = page.next_page_token
            if not token:
                return
    except grpc.aio.AioRpcError as err:
        raise _downstream_error(err) from None


class Limit(enum.Enum):
    """Which rate limit a proxied call counts against."""

    REQUEST = "request"
    """The per-user request limit."""
    NEW_SESSION = "new_session"
    """The request limit and the per-user session creation limit (given back when the
    call fails: only sessions created count)."""
    JOIN = "join"
    """The request limit and the failed-join limits per user and per address (a
    join counts as failed until it succeeds)."""
    AUDIO = "audio"
    """The audio chunk limit of the (user, session) stream only."""


class Proxy:
    """Authenticated calls to session_svc on behalf of the gateway's caller."""

    def __init__(self, authenticator: Authenticator, limits: Limits, assertions: Assertions,
                 join_timeout_s: float = 10.0, trusted_proxies: tuple[peers.Network, ...] = ()) -> None:
        self._authenticator = authenticator
        self._limits = limits
        self._assertions = assertions
        self._join_timeout_s = join_timeout_s
        self._trusted_proxies = trusted_proxies

    def _address(self, context: grpc.aio.ServicerContext) -> str:
        return peers.client_address(context, self._trusted_proxies)

    async def _admit(
        self, context: grpc.aio.ServicerContext, request: Any = None,
        required: Sequence[str] = (), limit: Limit = Limit.REQUEST,
    ) -> tuple[Identity, dict[str, Any]]:
        """Authenticates the caller, applies the rate limit, checks `required`
        fields, and gives the caller and the options of the downstream call:
        identity metadata and deadline."""
        identity = await self._authenticator.authenticate(context.invocation_metadata() or ())
        if limit is Limit.AUDIO:
            await self._limits.audio_chunk(identity.user_id, str(request.session_id))
        else:
            await self._limits.request(identity.user_id)
        for path in required:
            value = _field(request, path)
            if not value:
                raise errors.InvalidArgument(f"{path} is required")
            if path.endswith("session_id"):
                logs.session_id.set(value)
        if limit is Limit.NEW_SESSION:
            await self._limits.new_session(identity.user_id)
        elif limit is Limit.JOIN:
            await self._limits.join_attempt(identity.user_id, self._address(context))
        metadata = self._assertions.metadata(identity.user_id, identity.username)
        return identity, {"metadata": metadata, "timeout": context.time_remaining()}

    async def _settle(
        self, context: grpc.aio.ServicerContext, identity: Identity, limit: Limit,
        outcome: grpc.StatusCode | None,
    ) -> None:
        """Gives back what a call took from the limits that count only some outcomes:
        a session not created; a join that did not find a wrong code. A call with no
        outcome (cancelled while downstream) keeps it: it may have done its work, and
        a guesser who cancels each try would otherwise guess for free."""
        if outcome is None:
            return
        if limit is Limit.NEW_SESSION and outcome != grpc.StatusCode.OK:
            await self._limits.session_not_created(identity.user_id)
        elif limit is Limit.JOIN and outcome != grpc.StatusCode.NOT_FOUND:
            await self._limits.join_succeeded(identity.user_id, self._address(context))

    async def unary(
        self,
        route: Callable[[], Awaitable[grpc.aio.UnaryUnaryMultiCallable[_Request, _Response]]],
        request: _Request,
        context: grpc.aio.ServicerContext,
        required: Sequence[str] = (),
        limit: Limit = Limit.REQUEST,
        moved: Callable[[], None] | None = None,
    ) -> _Response:
        """`route` gives the method of the replica the call belongs to; it runs
        after the caller is admitted, so nothing unauthenticated reaches the
        session directory. `moved` is called when that replica answers UNAVAILABLE
        (stopped, or handing the session over): the next call asks for the owner again."""
        identity, options = await self._admit(context, request, required, limit)
        outcome: grpc.StatusCode | None = None  # None: no answer (cancelled)
        try:
            try:
                call = (await route())(request, **options)
            except errors.DragomanError as e:
                outcome = e.code
                raise
            try:
                response: _Response = await call
                outcome = grpc.StatusCode.OK
                return response
            except grpc.aio.AioRpcError as err:
                outcome = err.code()
                _moved(err, moved)
                raise _downstream_error(err) from None
            finally:
                call.cancel()
        finally:
            await self._settle(context, identity, limit, outcome)

    async def open_unary(
        self,
        route: Callable[[], Awaitable[grpc.aio.UnaryUnaryMultiCallable[_Request, _Response]]],
        request: _Request,
        context: grpc.aio.ServicerContext,
    ) -> _Response:
        """A call anyone may make, signed in or not: limited per client address, sent
        downstream with no identity (so it reaches only what needs none)."""
        await self._limits.anonymous_request(self._address(context))
        call = (await route())(request, timeout=context.time_remaining())
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise _downstream_error(err) from None
        finally:
            call.cancel()

    async def server_stream(
        self,
        route: Callable[[], Awaitable[grpc.aio.UnaryStreamMultiCallable[_Request, _Response]]],
        request: _Request,
        context: grpc.aio.ServicerContext,
        required: Sequence[str] = (),
        moved: Callable[[], None] | None = None,
    ) -> AsyncIterator[_Response]:
        _, options = await self._admit(context, request, required)
        call = (await route())(request, **options)
        context.add_done_callback(lambda _: call.cancel())
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            _moved(err, moved)
            raise _downstream_error(err) from None
        finally:
            call.cancel()

    async def bidi(
        self,
        route: Callable[[_Request], Awaitable[grpc.aio.StreamStreamMultiCallable[_Request, _Response]]],
        requests: AsyncIterator[_Request],
        context: grpc.aio.ServicerContext,
        moved: Callable[[_Request], None] | None = None,
    ) -> AsyncIterator[_Response]:
        """The client's first message picks the replica (`route`); then
        requests flow in a pump task (audio paced by the audio limit),
        responses in the caller; when either side ends or fails, the other is
        closed."""
        _, options = await self._admit(context)
        requests = aiter(requests)
        first = await rpc.first_request(requests, self._join_timeout_s)
        if first is None:
            return
        call = (await route(first))(**options)
        pump = asyncio.create_task(
            _pump(_chain(first, requests), call, self._limits.pacer()), name="gateway-bidi-pump")

        def close(_: object = None) -> None:
            call.cancel()
            pump.cancel()

        context.add_done_callback(close)
        try:
            async for response in call:
                yield response
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
            # the pump cancels the downstream call at a request it refuses: say why
            if (refused := _refusal(pump)) is not None:
                raise refused from None
            if isinstance(err, asyncio.CancelledError):
                raise
            if moved is not None:
                _moved(err, lambda: moved(first))
            raise _downstream_error(err) from None
        finally:
            close()
            await asyncio.wait({pump})
            _refusal(pump)  # retrieved: a refusal the response side did not see is no task error


def _moved(err: grpc.aio.AioRpcError, moved: Callable[[], None] | None) -> None:
    if moved is not None and err.code() == grpc.StatusCode.UNAVAILABLE:
        moved()


def _refusal(pump: asyncio.Task[None]) -> errors.DragomanError | None:
    """What the pump refused the client's stream with, once it has."""
    if not pump.done() or pump.cancelled():
        return None
    failure = pump.exception()
    return failure if isinstance(failure, errors.DragomanError) else None


async def _chain(first: _Request, rest: AsyncIterator[_Request]) -> AsyncIterator[_Request]:
    yield first
    async for request in rest:
        yield request


async def _pump(requests: AsyncIterator[Any], call: grpc.aio.StreamStreamCall, pacer: Pacer) -> None:
    """Copies the client's requests into the downstream call, then half-closes it."""
    try:
        async for request in requests:
            if request.HasField("audio"):
                await pacer.wait()
            await call.write(request)
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass  # the downstream call is over; the response side reports how it ended
    except errors.DragomanError:  # a request that does not parse: the response side reports it
        call.cancel()
        raise
    except Exception:
        log.exception("reading the client's Converse stream failed")
        call.cancel()


class SessionProxy(sessions_pb2_grpc.SessionServiceServicer):
    """SessionService, checked at the edge and served by the session's session_svc replica."""

    def __init__(self, router: Router, proxy: Proxy) -> None:
        self._router = router
        self._proxy = proxy

    def _via(self, method: str, *, session_id: str = "", code: str = "") -> Callable[[], Awaitable[Any]]:
        async def route() -> Any:
            return getattr(await self._router.sessions(session_id=session_id, code=code), method)
        return route

    def _moved(self, session_id: str) -> Callable[[], None]:
        return lambda: self._router.forget(session_id)

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        return await self._proxy.unary(
            self._via("CreateSession"), request, context, required=("language_code",),
            limit=Limit.NEW_SESSION,
        )

    async def JoinSession(
        self, request: sessions_pb2.JoinSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.JoinSessionResponse:
        return await self._proxy.unary(
            self._via("JoinSession", code=request.code), request, context,
            required=("code", "language_code"), limit=Limit.JOIN,
        )

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        return await self._proxy.unary(
            self._via("GetSession", session_id=request.session_id), request, context,
            required=("session_id",), moved=self._moved(request.session_id),
        )

    async def EndSession(
        self, request: sessions_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.EndSessionResponse:
        return await self._proxy.unary(
            self._via("EndSession", session_id=request.session_id), request, context,
            required=("session_id",), moved=self._moved(request.session_id),
        )

    async def RemoveParticipant(
        self, request: sessions_pb2.RemoveParticipantRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RemoveParticipantResponse:
        return await self._proxy.unary(
            self._via("RemoveParticipant", session_id=request.session_id), request, context,
            required=("session_id", "user_id"), moved=self._moved(request.session_id),
        )

    async def LockSession(
        self, request: sessions_pb2.LockSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LockSessionResponse:
        return await self._proxy.unary(
            self._via("LockSession", session_id=request.session_id), request, context,
            required=("session_id",), moved=self._moved(request.session_id),
        )

    async def LeaveSession(
        self, request: sessions_pb2.LeaveSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LeaveSessionResponse:
        return await self._proxy.unary(
            self._via("LeaveSession", session_id=request.session_id), request, context,
            required=("session_id",), moved=self._moved(request.session_id),
        )

    async def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        return await self._proxy.unary(self._via("ListSessions"), request, context)

    async def ExportTranscript(
        self, request: sessions_pb2.ExportTranscriptRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ExportTranscriptResponse:
        return await self._proxy.unary(
            self._via("ExportTranscript", session_id=request.session_id), request, context,
            required=("session_id",), moved=self._moved(request.session_id),
        )

    async def ListLanguages(
        self, request: sessions_pb2.ListLanguagesRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListLanguagesResponse:
        """Open to anyone: the sign-up form offers the languages before there is a token."""
        return await self._proxy.open_unary(self._via("ListLanguages"), request, context)


class ConversationProxy(conversation_pb2_grpc.ConversationServiceServicer):
    """ConversationService, streamed through to the session's session_svc replica."""

    def __init__(self, router: Router, proxy: Proxy) -> None:
        self._router = router
        self._proxy = proxy

    def _via(self, method: str, session_id: str) -> Callable[[], Awaitable[Any]]:
        async def route() -> Any:
            return getattr(await self._router.conversations(session_id), method)
        return route

    def Converse(
        self,
        request_iterator: AsyncIterator[conversation_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[conversation_pb2.ConverseResponse]:
        async def route(first: conversation_pb2.ConverseRequest) -> Any:
            return (await self._router.conversations(first.join.session_id)).Converse
        return self._proxy.bidi(route, request_iterator, context, moved=lambda first: (
            self._router.forget(first.join.session_id)))

    def Listen(
        self, request: conversation_pb2.ListenRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[conversation_pb2.ListenResponse]:
        return self._proxy.server_stream(
            self._via("Listen", request.join.session_id), request, context,
            required=("join.session_id",),
            moved=lambda: self._router.forget(request.join.session_id),
        )

    async def SendAudio(
        self, request: conversation_pb2.SendAudioRequest, context: grpc.aio.ServicerContext
    ) -> conversation_pb2.SendAudioResponse:
        return await self._proxy.unary(
            self._via("SendAudio", request.session_id), request, context,
            required=("session_id",), limit=Limit.AUDIO,
            moved=lambda: self._router.forget(request.session_id),
        )


class VocabularyProxy(vocabulary_pb2_grpc.VocabularyServiceServicer):
    """VocabularyService, served by any session_svc replica (they share the table): the
    default one."""

    def __init__(self, router: Router, proxy: Proxy) -> None:
        self._stub = vocabulary_pb2_grpc.VocabularyServiceStub(router.default)
        self._proxy = proxy

    def _via(self, method: str) -> Callable[[], Awaitable[Any]]:
        async def route() -> Any:
            return getattr(self._stub, method)
        return route

    async def CreateVocabulary(
        self, request: vocabulary_pb2.CreateVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vocabulary_pb2.CreateVocabularyResponse:
        return await self._proxy.unary(self._via("CreateVocabulary"), request, context,
                                       required=("vocabulary",))

    async def ListVocabularies(
        self, request: vocabulary_pb2.ListVocabulariesRequest, context: grpc.aio.ServicerContext
    ) -> vocabulary_pb2.ListVocabulariesResponse:
        return await self._proxy.unary(self._via("ListVocabularies"), request, context)

    async def GetVocabulary(
        self, request: vocabulary_pb2.GetVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vocabulary_pb2.GetVocabularyResponse:
        return await self._proxy.unary(self._via("GetVocabulary"), request, context,
                                       required=("vocabulary_id",))

    async def UpdateVocabulary(
        self, request: vocabulary_pb2.UpdateVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vocabulary_pb2.UpdateVocabularyResponse:
        return await self._proxy.unary(self._via("UpdateVocabulary"), request, context,
                                       required=("vocabulary.vocabulary_id",))

    async def DeleteVocabulary(
        self, request: vocabulary_pb2.DeleteVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vocabulary_pb2.DeleteVocabularyResponse:
        return await self._proxy.unary(self._via("DeleteVocabulary"), request, context,
                                       required=("vocabulary_id",))


class RecordingProxy(recording_pb2_grpc.RecordingServiceServicer):
    """RecordingService, served by the replica of the recording's session (its id begins
    with the session's: session_svc.recordings.session_of), where the consent flow lives;
    ListRecordings by any replica (they share the tables)."""

    def __init__(self, router: Router, proxy: Proxy) -> None:
        self._router = router
        self._proxy = proxy

    def _via(self, method: str, *, recording_id: str = "", session_id: str = ""
             ) -> Callable[[], Awaitable[Any]]:
        # a recording id begins with its session's (session_svc.recordings.session_of)
        session_id = session_id or recording_id.partition("-")[0]

        async def route() -> Any:
            return getattr(await self._router.recordings(session_id), method)
        return route

    async def RequestRecording(
        self, request: recording_pb2.RequestRecordingRequest, context: grpc.aio.ServicerContext
    ) -> recording_pb2.RequestRecordingResponse:
        return await self._proxy.unary(
            self._via("RequestRecording", session_id=request.session_id), request, context,
            required=("session_id",))

    async def AnswerRecordingConsent(
        self, request: recording_pb2.AnswerRecordingConsentRequest,
        context: grpc.aio.ServicerContext,
    ) -> recording_pb2.AnswerRecordingConsentResponse:
        return await self._proxy.unary(
            self._via("AnswerRecordingConsent", recording_id=request.recording_id), request,
            context, required=("recording_id",))

    async def WithdrawRecordingConsent(
        self, request: recording_pb2.WithdrawRecordingConsentRequest,
        context: grpc.aio.ServicerContext,
    ) -> recording_pb2.WithdrawRecordingConsentResponse:
        return await self._proxy.unary(
            self._via("WithdrawRecordingConsent", recording_id=request.recording_id), request,
            context, required=("recording_id",))

    async def ListRecordings(
        self, request: recording_pb2.ListRecordingsRequest, context: grpc.aio.ServicerContext
    ) -> recording_pb2.ListRecordingsResponse:
        return await self._proxy.unary(self._via("ListRecordings"), request, context)

    async def GetRecording(
        self, request: recording_pb2.GetRecordingRequest, context: grpc.aio.ServicerContext
    ) -> recording_pb2.GetRecordingResponse:
        return await self._proxy.unary(
            self._via("GetRecording", recording_id=request.recording_id), request, context,
            required=("recording_id",))

    def DownloadRecording(
        self, request: recording_pb2.DownloadRecordingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[recording_pb2.DownloadRecordingResponse]:
        return self._proxy.server_stream(
            self._via("DownloadRecording", recording_id=request.recording_id), request, context,
            required=("recording_id",))
