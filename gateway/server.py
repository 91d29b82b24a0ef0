"""gateway: the only public service.

Serves AuthService itself and proxies SessionService and ConversationService
to session_svc for callers with a valid access token (see `gateway.proxy`),
within the rate limits (`gateway.limits`). Accounts live in PostgreSQL
(`gateway.pgstore`).
"""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import config, db, logs, rpc
from dragoman.db.records import timestamp
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from gateway import auth
from gateway.auth import AccessTokens, Accounts, Passwords, TokenPair
from gateway.limits import Limiter, Limits
from gateway.pgstore import PgUserStore
from gateway.proxy import ConversationProxy, Proxy, SessionProxy, end_live_sessions
from gateway.routing import PgSessionDirectory, Router, SessionDirectory
from gateway.store import UserData, UserStore

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
)


def _token_pair(tokens: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=Timestamp(seconds=tokens.access_expire_time_s),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=Timestamp(seconds=tokens.refresh_expire_time_s),
    )


def _export(data: UserData) -> auth_pb2.ExportMyDataResponse:
    user = data.user
    return auth_pb2.ExportMyDataResponse(
        account=auth_pb2.Account(
            user_id=user.user_id, username=user.username, email=user.email,
            preferred_language_code=user.preferred_language_code,
            create_time=timestamp(user.create_time_s)),
        logins=[auth_pb2.LoginRecord(
            create_time=timestamp(login.create_time_s), expire_time=timestamp(login.expire_time_s),
            revoked=login.revoked) for login in data.logins],
        sessions=[s.to_proto() for s in data.sessions],
        utterances=[u.to_proto() for u in data.utterances],
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Accounts and tokens. Register, Login, RefreshToken and Logout need no
    access token; DeleteAccount and ExportMyData do."""

    def __init__(
        self, accounts: Accounts, tokens: AccessTokens, limits: Limits,
        sessions: Router,
    ) -> None:
        self._accounts = accounts
        self._tokens = tokens
        self._limits = limits
        self._sessions = sessions

    async def _caller(self, context: grpc.aio.ServicerContext) -> auth.Identity:
        identity = self._tokens.authenticate(context.invocation_metadata() or ())
        await self._limits.request(identity.user_id)
        return identity

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        signed_in = await self._accounts.register(
            request.username, request.email, request.password, request.preferred_language_code
        )
        return auth_pb2.RegisterResponse(
            user_id=signed_in.user.user_id, tokens=_token_pair(signed_in.tokens)
        )

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        await self._limits.login(request.username)
        signed_in = await self._accounts.login(request.username, request.password)
        return auth_pb2.LoginResponse(
            user_id=signed_in.user.user_id, tokens=_token_pair(signed_in.tokens)
        )

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshTokenResponse:
        tokens = await self._accounts.refresh(request.refresh_token)
        return auth_pb2.RefreshTokenResponse(tokens=_token_pair(tokens))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        await self._accounts.logout(request.refresh_token)
        return auth_pb2.LogoutResponse()

    async def DeleteAccount(
        self, request: auth_pb2.DeleteAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteAccountResponse:
        caller = await self._caller(context)
        deleted = await self._accounts.delete_account(
            caller, request.password, before=lambda: end_live_sessions(self._sessions, caller))
        return auth_pb2.DeleteAccountResponse(
            deleted_session_count=deleted.sessions, deleted_utterance_count=deleted.utterances)

    async def ExportMyData(
        self, request: auth_pb2.ExportMyDataRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ExportMyDataResponse:
        return _export(await self._accounts.export(await self._caller(context)))


async def create(
    settings: config.Settings,
    *,
    store: UserStore | None = None,
    session_channel: grpc.aio.Channel | None = None,
    limiter: Limiter | None = None,
    directory: SessionDirectory | None = None,
) -> rpc.Service:
    """The gateway, not yet started. `store` defaults to PostgreSQL per
    settings.database (the embedded server when no URL is set);
    `session_channel` (owned by the caller when given) to one to
    settings.addresses.session; `limiter` to the one settings.limits names;
    `directory` (which session_svc replica holds a session) to the sessions
    table of that database, or with a given `store`, to none (one replica)."""
    database = None
    if store is None:
        database = await db.open_database(settings.database)
        store = PgUserStore(database)
    tokens = AccessTokens.from_settings(settings.auth)
    passwords = Passwords()
    await passwords.warm_up()
    accounts = Accounts(store, tokens, passwords, refresh_ttl_s=settings.auth.refresh_token_ttl_s)
    limits = (Limits(settings.limits, limiter) if limiter is not None
              else Limits.from_settings(settings.limits))
    channel = session_channel or rpc.channel(settings.addresses.session)
    router = Router(channel, PgSessionDirectory(database) if database is not None else directory,
                    trunk=settings.trunk, linger_s=settings.trunk_linger_ms / 1000)
    proxy = Proxy(tokens, limits, settings.session.join_timeout_s)

    server = rpc.new_server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(accounts, tokens, limits, router), server)
    sessions_pb2_grpc.add_SessionServiceServicer_to_server(SessionProxy(router, proxy), server)
    conversation_pb2_grpc.add_ConversationServiceServicer_to_server(
        ConversationProxy(router, proxy), server
    )
    service = rpc.Service("gateway", server, SERVICE_NAMES)
    service.on_stop.append(router.close)
    if session_channel is None:
        service.on_stop.append(channel.close)
    service.on_stop.append(passwords.close)
    if limiter is None:
        service.on_stop.append(limits.close)
    if database is not None:
        service.on_stop.append(database.close)
    return service


async def serve(settings: config.Settings) -> None:
    await rpc.run(settings, "gateway", create)


def main() -> None:
    logs.configure("gateway")
    rpc.main(serve)


if __name__ == "__main__":
    main()
