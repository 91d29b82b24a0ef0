"""session_svc: sessions, pairing and the live conversation pipeline.

Serves the public `dragoman.v1.SessionService` and `ConversationService` on an
internal address. Only the gateway calls it: it trusts the identity headers
the gateway sets after checking the access token (rpc.USER_ID_HEADER).
Sessions, translation logs and metrics are persisted in PostgreSQL
(`session_svc.store`); history pages come from there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from datetime import UTC, datetime, timedelta

import grpc

from dragoman import config, db, logs, mux, overload, rpc
from dragoman.db.records import Metrics, SessionRecord
from dragoman.errors import InvalidArgument, NotFound, shown
from dragoman.v1 import conversation_pb2, conversation_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from session_svc.conversation import ConversationServicer
from session_svc.downstream import Downstream
from session_svc.identity import identity
from session_svc.sessions import Identity, SessionRegistry
from session_svc.store import PgSessionStore, SessionStore

log = logging.getLogger("dragoman.session")

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
END_REASON = "ended by participant"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def page_token(created_at: datetime, session_id: str) -> str:
    """Opaque position after a session in the newest-first history."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{session_id}".encode()).decode()


def parse_page_token(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        micros, sep, session_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if sep and session_id:
            return _EPOCH + timedelta(microseconds=int(micros)), session_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        pass
    raise InvalidArgument("page_token is not a token from ListSessions")


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        session = await self.registry.create(identity(context), request.language_code, request.voice)
        logs.session_id.set(session.session_id)
        log.info("session created")
        return sessions_pb2.CreateSessionResponse(session=session.to_proto())

    async def JoinSession(
        self, request: sessions_pb2.JoinSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.JoinSessionResponse:
        session = await self.registry.join(
            identity(context), request.code, request.language_code, request.voice)
        logs.session_id.set(session.session_id)
        log.info("session joined")
        return sessions_pb2.JoinSessionResponse(session=session.to_proto())

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        who = identity(context)
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        if self.registry.find_live(request.session_id) is not None:
            session, _ = self.registry.get(who, request.session_id)
            return sessions_pb2.GetSessionResponse(session=session.to_proto())
        # ended: its record (without whoever deleted their account since)
        record = await self._record(who, request.session_id)
        return sessions_pb2.GetSessionResponse(session=record.to_proto())

    async def _record(self, who: Identity, session_id: str) -> SessionRecord:
        """The stored session, if the caller took part in it."""
        stored = await self.registry.store.sessions_of(who.user_id, limit=1, session_id=session_id)
        if not stored:
            raise NotFound(f"session {shown(session_id, quote=False)} not found")
        return stored[0]

    async def EndSession(
        self, request: sessions_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.EndSessionResponse:
        who = identity(context)
        try:
            session = await self.registry.end(who, request.session_id, END_REASON)
        except NotFound:  # no longer in memory: ended long ago, or left live by an earlier run
            record = await self._record(who, request.session_id)
            if record.status != "ended":
                duration_ms = round((time.time() - record.created_at.timestamp()) * 1000)
                await self.registry.store.end_session(
                    record.session_id, time.time(), END_REASON, Metrics(0, 0, 0, 0, 0, duration_ms))
                record = await self._record(who, request.session_id)
            ended = record.to_proto()
            return sessions_pb2.EndSessionResponse(session=ended, metrics=ended.metrics)
        logs.session_id.set(session.session_id)
        log.info("session ended", extra={"utterances": session.utterances})
        return sessions_pb2.EndSessionResponse(
            session=session.to_proto(), metrics=session.metrics().to_proto())

    async def RemoveParticipant(
        self, request: sessions_pb2.RemoveParticipantRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RemoveParticipantResponse:
        session = await self.registry.remove(identity(context), request.session_id, request.user_id)
        logs.session_id.set(session.session_id)
        return sessions_pb2.RemoveParticipantResponse(session=session.to_proto())

    async def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        who = identity(context)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 0 to {MAX_PAGE_SIZE}, got {request.page_size}")
        size = request.page_size or DEFAULT_PAGE_SIZE
        rows = await self.registry.store.sessions_of(
            who.user_id, limit=size + 1, before=parse_page_token(request.page_token))
        reply = sessions_pb2.ListSessionsResponse()
        for row in rows[:size]:
            live = self.registry.find_live(row.session_id)  # fresher: who is connected
            reply.sessions.append(live.to_proto() if live is not None else row.to_proto())
        if len(rows) > size:
            reply.next_page_token = page_token(rows[size - 1].created_at, rows[size - 1].session_id)
        return reply


async def create(
    settings: config.Settings, *, downstream: Downstream | None = None,
    store: SessionStore | None = None,
) -> rpc.Service:
    """session_svc, not yet started. `store` defaults to PostgreSQL per
    settings.database (the embedded server when no URL is set)."""
    database = None
    if store is None:
        database = await db.open_database(settings.database)
        store = PgSessionStore(database)
    lag = overload.LoopLag()
    registry = SessionRegistry(
        settings.session, store, owner=settings.session.advertise_address, lag=lag)
    down = downstream or Downstream(
        settings.addresses, settings.session.downstream_timeout_s, trunk=settings.trunk,
        linger_s=settings.trunk_linger_ms / 1000)
    server = rpc.new_server()
    conversations = ConversationServicer(registry, down, settings.session)
    names = [
        sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
        conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
        mux.add_to_server(server, [
            (sessions_pb2_grpc.add_SessionServiceServicer_to_server, SessionServicer(registry)),
            (conversation_pb2_grpc.add_ConversationServiceServicer_to_server, conversations),
        ]),
    ]
    service = rpc.Service("session", server, names)

    async def drain(grace_s: float) -> None:
        """Finish every utterance in progress before the server stops."""
        pipelines = [
            m.connection.pipeline for s in registry.live() for m in s.members
            if m.connection is not None and m.connection.pipeline is not None
        ]
        if pipelines:
            log.info("draining %d pipelines", len(pipelines))
            await asyncio.gather(*(p.finish(grace_s) for p in pipelines))

    service.on_drain.append(drain)
    service.background(lag.run(), "loop-lag")
    if registry.owner:  # several replicas: keep this one's lease, end those of lost ones
        service.background(registry.keep_owner_lease(), "owner-lease")
    service.on_stop.append(down.close)
    service.on_stop.append(registry.journal.close)
    if database is not None:
        service.on_stop.append(database.close)
    return service


async def serve(settings: config.Settings) -> None:
    await rpc.run(settings, "session", create)


def main() -> None:
    logs.configure("session")
    rpc.main(serve)


if __name__ == "__main__":
    main()
