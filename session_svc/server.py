"""session_svc: sessions, pairing and the live conversation pipeline.

Serves the public `dragoman.v1.SessionService` and `ConversationService` on an
internal address, and the internal `dragoman.session.v1.SessionDataService`
(where a live session is held; a user's data for export and deletion). Only
the gateway calls it: every call carries the identity assertion the gateway
signs after checking the access token, and a call without a valid one gets
UNAUTHENTICATED (dragoman.assertion). It serves `dragoman.v1.VocabularyService`
too: sessions read the vocabularies (session_svc.vocabularies). Sessions, translation logs and metrics
are persisted in PostgreSQL (`session_svc.store`), tables no other service
reads; history pages come from there. Stored records become protos here.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from dragoman import config, db, logs, overload, rpc
from dragoman.assertion import Assertions
from dragoman.db.times import timestamp
from dragoman.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from dragoman.session.v1 import session_pb2, session_pb2_grpc
from dragoman.tls import MeshTls
from dragoman.v1 import (
    auth_pb2,
    conversation_pb2,
    conversation_pb2_grpc,
    recording_pb2,
    recording_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    vocabulary_pb2,
    vocabulary_pb2_grpc,
)
from session_svc import paging, routes, transcripts
from session_svc.analytics import Analytics
from session_svc.conversation import ConversationServicer
from session_svc.downstream import Downstream
from session_svc.handover import Handover
from session_svc.identity import Callers
from session_svc.recordings import (
    Recordings,
    RecordingServicer,
    RecordingStore,
    recording_proto,
    utterances_proto,
)
from session_svc.records import (
    PARTICIPANT_KEYED,
    PRIVATE,
    STAGES,
    Metrics,
    SessionRecord,
    UtteranceLog,
)
from session_svc.routes import Coverage
from session_svc.sessions import (
    PRIVACY_PROTO,
    STATES,
    Identity,
    SessionRegistry,
    metrics_proto,
    privacy_mode,
)
from session_svc.store import PgSessionStore, SessionStore
from session_svc.vocabularies import PgVocabularyStore, VocabularyServicer, vocabulary_proto

# the module name under `python -m` too, where __name__ is "__main__"
log = logging.getLogger(__spec__.name if __spec__ else __name__)

END_REASON = "ended by participant"
STATUS = {
    "waiting": sessions_pb2.SESSION_STATUS_WAITING,
    "active": sessions_pb2.SESSION_STATUS_ACTIVE,
    "ended": sessions_pb2.SESSION_STATUS_ENDED,
}
"""sessions.status as the proto enum."""


def session_proto(record: SessionRecord) -> sessions_pb2.Session:
    out = sessions_pb2.Session(
        session_id=record.session_id,
        code=record.code if record.status == "waiting" else "",
        status=STATUS[record.status],
        participants=[sessions_pb2.Participant(
            user_id=p.user_id, display_name=p.display_name, language_code=p.language_code,
            voice=p.voice, host=i == 0, state=STATES[p.state])  # type: ignore[arg-type]
            for i, p in enumerate(record.participants)],
        create_time=timestamp(record.created_at),
        locked=record.locked, max_participants=record.max_participants,
        privacy_mode=PRIVACY_PROTO[record.privacy_mode],  # type: ignore[arg-type]
    )
    if record.ended_at is not None:
        out.end_time.CopyFrom(timestamp(record.ended_at))
    if record.metrics is not None:
        out.metrics.CopyFrom(metrics_proto(record.metrics))
    return out


def utterance_proto(log: UtteranceLog) -> auth_pb2.UtteranceRecord:
    out = auth_pb2.UtteranceRecord(
        session_id=log.session_id, utterance_id=log.utterance_id,
        speaker_user_id=log.speaker_user_id, source_language_code=log.source_language_code,
        target_language_code=log.target_language_code, source_text=log.source_text,
        translated_text=log.translated_text)
    for stage in STAGES:
        getattr(out.latency, stage).FromMilliseconds(log.latency_ms[stage])
    if log.created_at is not None:
        out.create_time.CopyFrom(timestamp(log.created_at))
    return out


BAD_PAGE_TOKEN = paging.bad_token("ListSessions")


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, registry: SessionRegistry, callers: Callers, coverage: Coverage) -> None:
        self.registry = registry
        self.identity = callers
        self.coverage = coverage

    async def ListLanguages(
        self, request: sessions_pb2.ListLanguagesRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListLanguagesResponse:
        """Open to any caller, with or without an identity: it names nothing but what is
        installed, and the gateway offers it before sign-in (the language to register with)."""
        return routes.languages_proto(await self.coverage.inventory())

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        session = await self.registry.create(
            self.identity(context), request.language_code, request.voice, request.max_participants,
            privacy_mode(request.privacy_mode))
        logs.session_id.set(session.session_id)
        log.info("session created")
        return sessions_pb2.CreateSessionResponse(session=session.to_proto())

    async def JoinSession(
        self, request: sessions_pb2.JoinSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.JoinSessionResponse:
        session = await self.registry.join(
            self.identity(context), request.code, request.language_code, request.voice,
            request.allow_one_way)
        logs.session_id.set(session.session_id)
        log.info("session joined")
        return sessions_pb2.JoinSessionResponse(session=session.to_proto())

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        who = self.identity(context)
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        if self.registry.find_live(request.session_id) is not None:
            session, _ = self.registry.get(who, request.session_id)
            return sessions_pb2.GetSessionResponse(session=session.to_proto())
        # ended: its record (without whoever deleted their account since)
        record = await self._record(who, request.session_id)
        return sessions_pb2.GetSessionResponse(session=session_proto(record))

    async def _record(self, who: Identity, session_id: str) -> SessionRecord:
        """The stored session, if the caller took part in it."""
        missing = NotFound(f"session {shown(session_id, quote=False)} not found")
        with db.unstorable_as(missing):
            stored = await self.registry.store.sessions_of(
                who.user_id, limit=1, session_id=session_id)
        if not stored:
            raise missing
        return stored[0]

    async def EndSession(
        self, request: sessions_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.EndSessionResponse:
        who = self.identity(context)
        try:
            session = await self.registry.end(who, request.session_id, END_REASON)
        except NotFound:  # no longer in memory: ended long ago, or left live by an earlier run
            record = await self._record(who, request.session_id)
            if record.status != "ended":
                duration_ms = round((time.time() - record.created_at.timestamp()) * 1000)
                await self.registry.store.end_session(
                    record.session_id, time.time(), END_REASON, Metrics(0, 0, 0, 0, 0, duration_ms))
                record = await self._record(who, request.session_id)
            ended = session_proto(record)
            return sessions_pb2.EndSessionResponse(session=ended, metrics=ended.metrics)
        logs.session_id.set(session.session_id)
        log.info("session ended", extra={"utterances": session.utterances})
        return sessions_pb2.EndSessionResponse(
            session=session.to_proto(), metrics=metrics_proto(session.metrics()))

    async def RemoveParticipant(
        self, request: sessions_pb2.RemoveParticipantRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RemoveParticipantResponse:
        session = await self.registry.remove(self.identity(context), request.session_id, request.user_id)
        logs.session_id.set(session.session_id)
        return sessions_pb2.RemoveParticipantResponse(session=session.to_proto())

    async def LockSession(
        self, request: sessions_pb2.LockSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LockSessionResponse:
        session = await self.registry.lock(self.identity(context), request.session_id, request.locked)
        logs.session_id.set(session.session_id)
        log.info("session locked" if request.locked else "session unlocked")
        return sessions_pb2.LockSessionResponse(session=session.to_proto())

    async def LeaveSession(
        self, request: sessions_pb2.LeaveSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.LeaveSessionResponse:
        session = await self.registry.leave(self.identity(context), request.session_id)
        logs.session_id.set(session.session_id)
        return sessions_pb2.LeaveSessionResponse(session=session.to_proto())

    async def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        who = self.identity(context)
        size = paging.size(request.page_size)
        with db.unstorable_as(InvalidArgument(BAD_PAGE_TOKEN)):
            rows = await self.registry.store.sessions_of(
                who.user_id, limit=size + 1, before=paging.parse(request.page_token, "ListSessions"))
        reply = sessions_pb2.ListSessionsResponse()
        for row in rows[:size]:
            live = self.registry.find_live(row.session_id)  # fresher: who is connected
            reply.sessions.append(live.to_proto() if live is not None else session_proto(row))
        if len(rows) > size:
            reply.next_page_token = paging.token(rows[size - 1].created_at, rows[size - 1].session_id)
        return reply

    async def ExportTranscript(
        self, request: sessions_pb2.ExportTranscriptRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ExportTranscriptResponse:
        who = self.identity(context)
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        fmt = transcripts.format_of(request.format)
        record = await self._record(who, request.session_id)
        if record.privacy_mode == PRIVATE:
            raise FailedPrecondition(
                "this session is private: no transcript or translation of it was stored, "
                "so there is nothing to export")
        if self.registry.find_live(record.session_id) is not None:
            await self.registry.journal.flush()  # what was said so far
        if record.privacy_mode == PARTICIPANT_KEYED:
            sealed = await self.registry.store.sealed_of(record.session_id, who.user_id)
            return transcripts.render_sealed(record, sealed)
        logs = await self.registry.store.transcript_of(record.session_id)
        return transcripts.render(transcripts.transcript(record, who.user_id, logs), fmt)


class SessionDataServicer(session_pb2_grpc.SessionDataServiceServicer):
    """What the gateway asks of the session tables, which only session_svc reads.
    Every call carries a gateway's identity assertion: owner lookups one for the
    gateway itself, the rest one for the user whose data they are."""

    def __init__(self, store: SessionStore, callers: Callers,
                 vocabularies: PgVocabularyStore, analytics: Analytics | None = None,
                 registry: SessionRegistry | None = None,
                 recordings: RecordingStore | None = None) -> None:
        self._store = store
        self._recordings = recordings
        self._registry = registry
        self._callers = callers
        self._vocabularies = vocabularies
        self._analytics = analytics

    def _admin_queries(self, context: grpc.aio.ServicerContext) -> Analytics:
        self._callers(context)  # the gateway asks, having checked the admin role
        if self._analytics is None:
            raise FailedPrecondition("admin queries need the session tables in PostgreSQL")
        return self._analytics

    async def ListLiveSessions(
        self, request: session_pb2.ListLiveSessionsRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.ListLiveSessionsResponse:
        return session_pb2.ListLiveSessionsResponse(
            sessions=await self._admin_queries(context).live_sessions(self._errors_held))

    def _errors_held(self, session_id: str) -> int | None:
        # errors reach PostgreSQL only when a session ends: until then the holder's count
        session = self._registry.find_live(session_id) if self._registry else None
        return None if session is None else session.errors

    async def GetAnalytics(
        self, request: session_pb2.GetAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.GetAnalyticsResponse:
        return session_pb2.GetAnalyticsResponse(
            analytics=await self._admin_queries(context).analytics(request.range))

    async def GetSessionOwner(
        self, request: session_pb2.GetSessionOwnerRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.GetSessionOwnerResponse:
        self._callers(context)  # only a gateway may ask which codes exist
        find = self._registry.owner_of if self._registry is not None else self._store.owner
        if request.session_id:
            owner = await find(session_id=request.session_id)
            if owner is None:
                raise NotFound(f"no live session has id {request.session_id}")
        elif request.code:
            owner = await find(code=request.code)
            if owner is None:
                raise NotFound(f"no live session has code {request.code}")
        else:
            raise InvalidArgument("session_id or code is required")
        return session_pb2.GetSessionOwnerResponse(owner=owner)

    async def ExportUserData(
        self, request: session_pb2.ExportUserDataRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.ExportUserDataResponse:
        user_id = self._callers(context).user_id
        sessions = await self._store.sessions_of(user_id, limit=2**31 - 1)
        utterances = await self._store.utterances_of(user_id)
        reply = session_pb2.ExportUserDataResponse(
            sessions=[session_proto(s) for s in sessions],
            utterances=[utterance_proto(u) for u in utterances],
            vocabularies=[vocabulary_proto(v) for v in await self._vocabularies.all_of(user_id)])
        if self._recordings is not None:  # texts only: the audio would not fit one message
            for rec in await self._recordings.list(user_id, limit=2**31 - 1):
                reply.recordings.append(recording_proto(rec))
                reply.recorded_utterances.extend(utterances_proto(
                    rec, await self._recordings.items(rec.recording_id, text_only=True)))
        return reply

    async def DeleteUserData(
        self, request: session_pb2.DeleteUserDataRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.DeleteUserDataResponse:
        user_id = self._callers(context).user_id
        deleted = await self._store.delete_user_data(user_id)
        log.info("user data deleted", extra={
            "user_id": user_id, "sessions": deleted.sessions, "utterances": deleted.utterances,
            "recordings": deleted.recordings})
        return session_pb2.DeleteUserDataResponse(
            deleted_session_count=deleted.sessions, deleted_utterance_count=deleted.utterances,
            deleted_recording_count=deleted.recordings)


async def create(
    settings: config.Settings, *, downstream: Downstream | None = None,
    store: SessionStore | None = None, vocabularies: PgVocabularyStore | None = None,
) -> rpc.Service:
    """session_svc, not yet started. `store` and `vocabularies` default to PostgreSQL
    per settings.database (the embedded server when no URL is set)."""
    mesh = MeshTls.from_settings(settings.tls)
    callers = Callers(Assertions.from_settings(settings.auth), gateways_only=mesh is not None)
    database = None
    if store is None or vocabularies is None:
        database = await db.open_database(settings.database)
        store = store or PgSessionStore(database)
        vocabularies = vocabularies or PgVocabularyStore(database)
    lag = overload.LoopLag()
    down = downstream or Downstream(
        settings.addresses, settings.session.downstream_timeout_s, trunk=settings.trunk,
        linger_s=settings.trunk_linger_ms / 1000, tls=mesh)
    coverage = Coverage(down)
    recordings = Recordings(settings.recording, RecordingStore(store.database))
    owner = settings.session.advertise_address
    handover = (Handover(store.database, owner)
                if owner and isinstance(store, PgSessionStore) else None)
    registry = SessionRegistry(
        settings.session, store, owner=owner, lag=lag,
        inventory=coverage.inventory, lexicon_of=vocabularies.lexicon_of, recordings=recordings,
        handover=handover)
    conversations = ConversationServicer(registry, down, settings.session, callers)
    service = rpc.Service.serving("session", [
        (sessions_pb2_grpc.add_SessionServiceServicer_to_server,
         SessionServicer(registry, callers, coverage)),
        (conversation_pb2_grpc.add_ConversationServiceServicer_to_server, conversations),
        (session_pb2_grpc.add_SessionDataServiceServicer_to_server,
         SessionDataServicer(store, callers, vocabularies,
                             Analytics(store.database) if isinstance(store, PgSessionStore) else None,
                             registry, recordings.store)),
        (recording_pb2_grpc.add_RecordingServiceServicer_to_server,
         RecordingServicer(registry, recordings, callers)),
        (vocabulary_pb2_grpc.add_VocabularyServiceServicer_to_server,
         VocabularyServicer(vocabularies, callers, settings.session)),
    ], [
        sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
        conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
        session_pb2.DESCRIPTOR.services_by_name["SessionDataService"].full_name,
        vocabulary_pb2.DESCRIPTOR.services_by_name["VocabularyService"].full_name,
        recording_pb2.DESCRIPTOR.services_by_name["RecordingService"].full_name,
    ], tls=mesh)

    async def drain(grace_s: float) -> None:
        """Finish every utterance in progress before the server stops."""
        pipelines = [
            m.connection.pipeline for s in registry.live() for m in s.members
            if m.connection is not None and m.connection.pipeline is not None
        ]
        if pipelines:
            log.info("draining %d pipelines", len(pipelines))
            await asyncio.gather(*(p.finish(grace_s) for p in pipelines))
        await registry.hand_over()  # scaling down moves sessions, it does not end them

    if downstream is None:  # NOT_SERVING while a model service is down
        down.watch(service)
    service.on_drain.append(drain)
    service.background(lag.run(), "loop-lag")
    service.background(recordings.sweep(), "recording-sweeper")
    if registry.owner:  # several replicas: keep this one's lease, end those of lost ones
        service.background(registry.keep_owner_lease(), "owner-lease")
    service.on_stop.append(down.close)
    service.on_stop.append(registry.journal.close)
    service.on_stop.append(recordings.close)
    if handover is not None:
        service.on_stop.append(handover.close)
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
