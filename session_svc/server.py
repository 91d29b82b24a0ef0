"""session_svc: sessions, pairing and the live conversation pipeline.

Serves the public `dragoman.v1.SessionService` and `ConversationService` on an
internal address. Only the gateway calls it: it trusts the identity headers
the gateway sets after checking the access token (rpc.USER_ID_HEADER).
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from dragoman import config, logs, rpc
from dragoman.v1 import conversation_pb2, conversation_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from session_svc.conversation import ConversationServicer
from session_svc.downstream import Downstream
from session_svc.identity import identity
from session_svc.sessions import SessionRegistry

log = logging.getLogger("dragoman.session")


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        session = self.registry.create(identity(context), request.language_code, request.voice)
        logs.session_id.set(session.session_id)
        log.info("session created")
        return sessions_pb2.CreateSessionResponse(session=session.to_proto())

    async def JoinSession(
        self, request: sessions_pb2.JoinSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.JoinSessionResponse:
        session = self.registry.join(
            identity(context), request.code, request.language_code, request.voice)
        logs.session_id.set(session.session_id)
        log.info("session joined")
        return sessions_pb2.JoinSessionResponse(session=session.to_proto())

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        session, _ = self.registry.get(identity(context), request.session_id)
        return sessions_pb2.GetSessionResponse(session=session.to_proto())

    async def EndSession(
        self, request: sessions_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.EndSessionResponse:
        session = self.registry.end(identity(context), request.session_id, "ended by participant")
        logs.session_id.set(session.session_id)
        log.info("session ended", extra={"utterances": session.utterances})
        return sessions_pb2.EndSessionResponse(
            session=session.to_proto(), metrics=session.metrics())


async def create(settings: config.Settings, *, downstream: Downstream | None = None) -> rpc.Service:
    registry = SessionRegistry(settings.session)
    down = downstream or Downstream(settings.addresses, settings.session.downstream_timeout_s)
    server = rpc.new_server()
    sessions_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(registry), server)
    conversation_pb2_grpc.add_ConversationServiceServicer_to_server(
        ConversationServicer(registry, down, settings.session), server)
    names = [
        sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
        conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
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
    service.on_stop.append(down.close)
    return service


async def serve(settings: config.Settings) -> None:
    service = await create(settings)
    await rpc.serve_forever(service, settings.addresses.session, settings.grace_period_s)


def main() -> None:
    logs.configure("session")
    asyncio.run(serve(config.load()))


if __name__ == "__main__":
    main()
