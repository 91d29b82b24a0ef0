"""dragoman.admin.v1.AdminService, served by the gateway when `admin.enabled`
(docs/admin.md). Every call authenticates the access token, then reads the
caller's account from the store: only an enabled account with the admin role
*now* passes (a token's `roles` claim may be 15 minutes old), anyone else
gets PERMISSION_DENIED. Every action that changes something writes one
audit-log row (gateway.audit) before it replies. What session_svc keeps
(live sessions, analytics) is asked of it over SessionDataService.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dragoman import config, errors, rpc
from dragoman.admin.v1 import admin_pb2, admin_pb2_grpc
from dragoman.assertion import Assertions
from dragoman.db.times import timestamp
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.session.v1 import session_pb2
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tls import MeshTls
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from dragoman.v1 import sessions_pb2
from gateway import peers
from gateway.audit import AuditLog
from gateway.auth import Accounts, Authenticator, Identity
from gateway.routing import Router
from gateway.sessiondata import SessionData
from gateway.store import ADMIN, LAST_ADMIN, User, UserStore

log = logging.getLogger(__name__)

NOT_ADMIN = "this call needs an account with the admin role"
DEFAULT_USERS, MAX_USERS = 50, 500
DEFAULT_AUDIT, MAX_AUDIT = 100, 500
MAX_QUERY = 64
HEALTH_TIMEOUT_S = 2.0
"""How long GetHealth waits for each service."""


def _page_size(size: int, default: int, most: int) -> int:
    if not 0 <= size <= most:
        raise errors.InvalidArgument(f"page_size must be 0 to {most}, got {size}")
    return size or default


def _user(user: User) -> admin_pb2.User:
    return admin_pb2.User(user_id=user.user_id, username=user.username, email=user.email,
                          roles=list(user.roles), disabled=user.disabled,
                          create_time=timestamp(user.create_time_s))


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def _health(name: str, address: str, tls: MeshTls | None) -> admin_pb2.ServiceHealth:
    health = admin_pb2.ServiceHealth(service=name, address=address)
    async with rpc.channel(address, tls=tls, server_role=name) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            health.status, health.detail = "UNREACHABLE", f"{err.code().name}: {err.details()}"
            return health
    health.status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return health


async def _stt_models(channel: grpc.aio.Channel) -> list[admin_pb2.ModelHealth]:
    reply = await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
        stt_pb2.ListModelsRequest(), timeout=HEALTH_TIMEOUT_S)
    # ListModels lists only loaded models, so each one is ready
    return [admin_pb2.ModelHealth(service="stt", name=m.name, engine=m.engine,
                                  language_codes=m.language_codes, status="READY")
            for m in reply.models]


async def _mt_models(channel: grpc.aio.Channel) -> list[admin_pb2.ModelHealth]:
    reply = await mt_pb2_grpc.TranslationServiceStub(channel).ListLanguagePairs(
        mt_pb2.ListLanguagePairsRequest(), timeout=HEALTH_TIMEOUT_S)
    return [admin_pb2.ModelHealth(
        service="mt", name=f"{p.source_language_code}->{p.target_language_code}",
        engine="+".join(p.engines),
        language_codes=[p.source_language_code, p.target_language_code],
        status="READY" if p.installed else "NOT_INSTALLED", detail=p.install)
        for p in reply.pairs]


async def _tts_models(channel: grpc.aio.Channel) -> list[admin_pb2.ModelHealth]:
    reply = await tts_pb2_grpc.TextToSpeechServiceStub(channel).ListVoices(
        tts_pb2.ListVoicesRequest(), timeout=HEALTH_TIMEOUT_S)
    return [admin_pb2.ModelHealth(service="tts", name=v.name, engine=v.engine,
                                  language_codes=[v.language_code], status="READY")
            for v in reply.voices]


_LISTINGS = {"stt": _stt_models, "mt": _mt_models, "tts": _tts_models}


async def _models(name: str, address: str, tls: MeshTls | None) -> list[admin_pb2.ModelHealth]:
    """The models `name` lists; one UNREACHABLE entry when it cannot be asked."""
    async with rpc.channel(address, tls=tls, server_role=name) as channel:
        try:
            return await _LISTINGS[name](channel)
        except grpc.aio.AioRpcError as err:
            return [admin_pb2.ModelHealth(service=name, status="UNREACHABLE",
                                          detail=f"{err.code().name}: {err.details()}")]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """The operators' API; see the module docstring."""

    def __init__(self, store: UserStore, accounts: Accounts, authenticator: Authenticator,
                 audit: AuditLog, sessions: Router, session_data: SessionData,
                 assertions: Assertions, addresses: config.Addresses, tls: MeshTls | None,
                 trusted_proxies: tuple[peers.Network, ...] = ()) -> None:
        self._store = store
        self._accounts = accounts
        self._authenticator = authenticator
        self._audit = audit
        self._sessions = sessions
        self._session_data = session_data
        self._assertions = assertions
        self._addresses = addresses
        self._tls = tls
        self._trusted_proxies = trusted_proxies

    async def _admin(self, context: grpc.aio.ServicerContext) -> Identity:
        identity = await self._authenticator.authenticate(context.invocation_metadata() or ())
        user = await self._store.get_user(identity.user_id)
        if user is None or ADMIN not in user.roles or user.disabled:
            log.warning("admin call refused", extra={"user_id": identity.user_id})
            raise errors.PermissionDenied(NOT_ADMIN)
        return identity

    async def _audited(self, admin: Identity, context: grpc.aio.ServicerContext, action: str,
                       target: str) -> None:
        """Writes the action to the audit log before it is done."""
        await self._audit.record(admin.user_id, admin.username, action, target,
                                 peers.coarse_network(context, self._trusted_proxies))
        log.info("admin action", extra={"user_id": admin.user_id, "action": action, "target": target})

    async def _target(self, user_id: str) -> User:
        if not user_id:
            raise errors.InvalidArgument("user_id is required")
        user = await self._store.get_user(user_id)
        if user is None:
            raise errors.NotFound(f"no account has user id {user_id[:64]!r}")
        return user

    async def ListLiveSessions(
        self, request: admin_pb2.ListLiveSessionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListLiveSessionsResponse:
        await self._admin(context)
        reply = await self._session_data.live_sessions(context.time_remaining())
        return admin_pb2.ListLiveSessionsResponse(sessions=reply.sessions)

    async def SearchUsers(
        self, request: admin_pb2.SearchUsersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SearchUsersResponse:
        await self._admin(context)
        if len(request.query) > MAX_QUERY:
            raise errors.InvalidArgument(f"query must be at most {MAX_QUERY} characters")
        size = _page_size(request.page_size, DEFAULT_USERS, MAX_USERS)
        return admin_pb2.SearchUsersResponse(
            users=[_user(u) for u in await self._store.search_users(request.query, size)])

    async def DisableUser(
        self, request: admin_pb2.DisableUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DisableUserResponse:
        admin = await self._admin(context)
        await self._target(request.user_id)
        await self._audited(admin, context, "DisableUser", request.user_id)
        if await self._store.set_disabled(request.user_id, True) is None:
            raise errors.NotFound(f"no account has user id {request.user_id[:64]!r}")
        self._accounts.revocations.user_deleted(request.user_id)  # its access tokens, here at once
        return admin_pb2.DisableUserResponse()

    async def EnableUser(
        self, request: admin_pb2.EnableUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.EnableUserResponse:
        admin = await self._admin(context)
        await self._target(request.user_id)
        await self._audited(admin, context, "EnableUser", request.user_id)
        if await self._store.set_disabled(request.user_id, False) is None:
            raise errors.NotFound(f"no account has user id {request.user_id[:64]!r}")
        return admin_pb2.EnableUserResponse()

    async def DeleteUser(
        self, request: admin_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeleteUserResponse:
        admin = await self._admin(context)
        user = await self._target(request.user_id)
        # a disabled admin cannot sign in, so only enabled ones count as another; this early
        # look spares the user's session data, the store's check is the atomic one
        if ADMIN in user.roles and not any(
                a.user_id != user.user_id and not a.disabled for a in await self._store.list_admins()):
            raise errors.FailedPrecondition(LAST_ADMIN)
        await self._audited(admin, context, "DeleteUser", user.user_id)
        target = Identity(user.user_id, user.username)
        deleted = await self._accounts.erase(target, lambda: self._session_data.erase(
            self._sessions, target, context.time_remaining()), keep_an_admin=True)
        return admin_pb2.DeleteUserResponse(
            deleted_session_count=deleted.deleted_session_count,
            deleted_utterance_count=deleted.deleted_utterance_count)

    async def EndSession(
        self, request: admin_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.EndSessionResponse:
        admin = await self._admin(context)
        if not request.session_id:
            raise errors.InvalidArgument("session_id is required")
        live = await self._session_data.live_sessions(context.time_remaining())
        session = next((s for s in live.sessions if s.session_id == request.session_id), None)
        # session_svc ends a session for its host: the first participant still in it
        host = session and next((p for p in session.participants if p.state == "joined"), None)
        if session is None or host is None:
            raise errors.NotFound(f"no live session has id {request.session_id[:64]!r}")
        await self._audited(admin, context, "EndSession", request.session_id)
        owner = await self._sessions.sessions(session_id=request.session_id)
        try:
            await owner.EndSession(sessions_pb2.EndSessionRequest(session_id=request.session_id),
                                   metadata=self._assertions.metadata(host.user_id, host.display_name),
                                   timeout=context.time_remaining())
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err, "session service") from None
        return admin_pb2.EndSessionResponse()

    async def GetHealth(
        self, request: admin_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetHealthResponse:
        await self._admin(context)
        a = self._addresses
        checks = [_health(name, address, self._tls) for name, address in
                  (("session", a.session), ("stt", a.stt), ("mt", a.mt), ("tts", a.tts))]
        listings = [_models(name, address, self._tls) for name, address in
                    (("stt", a.stt), ("mt", a.mt), ("tts", a.tts))]
        gateway = admin_pb2.ServiceHealth(service="gateway", address=a.gateway, status="SERVING")
        services, models = await asyncio.gather(asyncio.gather(*checks), asyncio.gather(*listings))
        return admin_pb2.GetHealthResponse(services=[gateway, *services],
                                           models=[m for ms in models for m in ms])

    async def ListAuditLog(
        self, request: admin_pb2.ListAuditLogRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListAuditLogResponse:
        await self._admin(context)
        size = _page_size(request.page_size, DEFAULT_AUDIT, MAX_AUDIT)
        if request.before_entry_id < 0:
            raise errors.InvalidArgument("before_entry_id must not be negative")
        return admin_pb2.ListAuditLogResponse(entries=[admin_pb2.AuditEntry(
            entry_id=e.entry_id, time=timestamp(e.time_s), admin_user_id=e.admin_user_id,
            admin_username=e.admin_username, action=e.action, target=e.target,
            coarse_ip=e.coarse_ip) for e in await self._audit.entries(size, request.before_entry_id)])

    async def _analytics(self, request: admin_pb2.GetAnalyticsRequest,
                         context: grpc.aio.ServicerContext) -> admin_pb2.GetAnalyticsResponse:
        await self._admin(context)
        reply = await self._session_data.analytics(
            session_pb2.GetAnalyticsRequest(range=request), context.time_remaining())
        return reply.analytics

    async def GetAnalytics(
        self, request: admin_pb2.GetAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetAnalyticsResponse:
        return await self._analytics(request, context)

    async def ExportAnalyticsCsv(
        self, request: admin_pb2.ExportAnalyticsCsvRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ExportAnalyticsCsvResponse:
        a = await self._analytics(request.range, context)
        return admin_pb2.ExportAnalyticsCsvResponse(
            daily_sessions_csv=_csv(("date", "session_count", "minutes"),
                                    ((d.date, d.session_count, d.minutes) for d in a.daily_sessions)),
            language_pairs_csv=_csv(
                ("source_language_code", "target_language_code", "utterance_count"),
                ((p.source_language_code, p.target_language_code, p.utterance_count)
                 for p in a.language_pairs)),
            latency_csv=_csv(
                ("date", "source_language_code", "target_language_code", "stage", "p50_ms",
                 "p95_ms", "utterance_count"),
                ((r.date, r.source_language_code, r.target_language_code, r.stage, r.p50_ms,
                  r.p95_ms, r.utterance_count) for r in a.latency)),
            shares_csv=_csv(("error_share", "low_confidence_share"),
                            [(a.error_share, a.low_confidence_share)]))
