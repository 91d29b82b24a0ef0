"""gateway: the only public service.

Serves AuthService itself and proxies SessionService and ConversationService
to session_svc for callers with a valid access token (see `gateway.proxy`).
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import config, logs, rpc
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from gateway.auth import AccessTokens, Accounts, Passwords, TokenPair
from gateway.proxy import ConversationProxy, Proxy, SessionProxy
from gateway.store import InMemoryUserStore, UserStore

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


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Accounts and tokens; the only calls that need no access token."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

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


async def create(
    settings: config.Settings,
    *,
    store: UserStore | None = None,
    session_channel: grpc.aio.Channel | None = None,
) -> rpc.Service:
    """The gateway, not yet started. `store` defaults to an in-memory one;
    `session_channel` (owned by the caller when given) to one to
    settings.addresses.session."""
    tokens = AccessTokens.from_settings(settings.auth)
    passwords = Passwords()
    await passwords.warm_up()
    accounts = Accounts(
        store if store is not None else InMemoryUserStore(),
        tokens,
        passwords,
        refresh_ttl_s=settings.auth.refresh_token_ttl_s,
    )
    channel = session_channel or rpc.channel(settings.addresses.session)
    proxy = Proxy(tokens)

    server = rpc.new_server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(accounts), server)
    sessions_pb2_grpc.add_SessionServiceServicer_to_server(SessionProxy(channel, proxy), server)
    conversation_pb2_grpc.add_ConversationServiceServicer_to_server(
        ConversationProxy(channel, proxy), server
    )
    service = rpc.Service("gateway", server, SERVICE_NAMES)
    if session_channel is None:
        service.on_stop.append(channel.close)
    service.on_stop.append(passwords.close)
    return service


async def serve(settings: config.Settings) -> None:
    service = await create(settings)
    await rpc.serve_forever(service, settings.addresses.gateway, settings.grace_period_s)


def main() -> None:
    logs.configure("gateway")
    asyncio.run(serve(config.load()))


if __name__ == "__main__":
    main()
