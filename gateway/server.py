"""gateway: the only public service.

Serves AuthService itself and proxies SessionService, ConversationService,
VocabularyService and RecordingService
to session_svc for callers with a valid access token (see `gateway.proxy`;
SessionService.ListLanguages needs none),
within the rate limits (`gateway.limits`). Accounts live in PostgreSQL
(`gateway.pgstore`); what session_svc keeps of a user (export, deletion) and
where a session is held, it asks session_svc (`gateway.sessiondata`).
"""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dragoman import config, db, errors, logs, rpc
from dragoman.admin.v1 import admin_pb2_grpc
from dragoman.assertion import Assertions
from dragoman.db.times import timestamp
from dragoman.session.v1 import session_pb2
from dragoman.tls import MeshTls
from dragoman.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    recording_pb2,
    recording_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    vocabulary_pb2,
    vocabulary_pb2_grpc,
)
from gateway import auth, peers
from gateway.admin import AdminServicer
from gateway.audit import AuditLog
from gateway.auth import AccessTokens, Accounts, Authenticator, Passwords, Revocations, TokenPair
from gateway.limits import Limiter, Limits
from gateway.oidc import SignIns
from gateway.pgstore import PgUserStore
from gateway.proxy import (
    ConversationProxy,
    Proxy,
    RecordingProxy,
    SessionProxy,
    VocabularyProxy,
)
from gateway.routing import Router, SessionDirectory
from gateway.sessiondata import SessionData
from gateway.signin import SignInLimits
from gateway.store import Device, Sighting, UserData, UserStore

ADMIN_SERVICE = "dragoman.admin.v1.AdminService"
SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
    vocabulary_pb2.DESCRIPTOR.services_by_name["VocabularyService"].full_name,
    recording_pb2.DESCRIPTOR.services_by_name["RecordingService"].full_name,
)


def _token_pair(tokens: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=Timestamp(seconds=tokens.access_expire_time_s),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=Timestamp(seconds=tokens.refresh_expire_time_s),
    )


def _device(device: Device, current_id: str = "") -> auth_pb2.Device:
    return auth_pb2.Device(
        device_id=device.device_id, name=device.name, user_agent=device.user_agent,
        first_seen_time=timestamp(device.first_seen_s), last_seen_time=timestamp(device.last_seen_s),
        coarse_ip=device.coarse_ip, current=device.device_id == current_id)


def _export(
    data: UserData, sessions: session_pb2.ExportUserDataResponse
) -> auth_pb2.ExportMyDataResponse:
    user = data.user
    return auth_pb2.ExportMyDataResponse(
        account=auth_pb2.Account(
            user_id=user.user_id, username=user.username, email=user.email,
            preferred_language_code=user.preferred_language_code,
            create_time=timestamp(user.create_time_s)),
        logins=[auth_pb2.LoginRecord(
            create_time=timestamp(login.create_time_s), expire_time=timestamp(login.expire_time_s),
            revoked=login.revoked, device=_device(login.device) if login.device else None)
            for login in data.logins],
        sessions=sessions.sessions,
        utterances=sessions.utterances,
        vocabularies=sessions.vocabularies,
        recordings=sessions.recordings,
        recorded_utterances=sessions.recorded_utterances,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Accounts and tokens. Register, Login, RefreshToken, Logout and the OpenID
    Connect sign-in (ListSignInProviders, StartSignIn, FinishSignIn: gateway.oidc)
    need no access token; DeleteAccount, ExportMyData, ListDevices and RevokeDevice do.
    Register and Login are limited per client address (gateway.signin)."""

    def __init__(
        self, accounts: Accounts, authenticator: Authenticator, limits: Limits,
        sessions: Router, session_data: SessionData, assertions: Assertions, signin: SignInLimits,
        trusted_proxies: tuple[peers.Network, ...] = (),
        signins: SignIns | None = None,
    ) -> None:
        self._accounts = accounts
        self._signins = signins
        self._authenticator = authenticator
        self._limits = limits
        self._sessions = sessions
        self._session_data = session_data
        self._assertions = assertions
        self._signin = signin
        self._trusted_proxies = trusted_proxies

    async def _caller(self, context: grpc.aio.ServicerContext) -> auth.Identity:
        identity = await self._authenticator.authenticate(context.invocation_metadata() or ())
        await self._limits.request(identity.user_id)
        return identity

    def _sighting(self, context: grpc.aio.ServicerContext, device_name: str = "") -> Sighting:
        return Sighting(self._accounts.now(), auth.user_agent(context.invocation_metadata() or ()),
                        peers.coarse_network(context, self._trusted_proxies), device_name)

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        auth.check_registration(request.username, request.email, request.password,
                                request.preferred_language_code)
        auth.check_device_name(request.device_name)
        await self._signin.registration(peers.client_address(context, self._trusted_proxies))
        signed_in = await self._accounts.register(
            request.username, request.email, request.password, request.preferred_language_code,
            self._sighting(context, request.device_name),
        )
        return auth_pb2.RegisterResponse(
            user_id=signed_in.user.user_id, tokens=_token_pair(signed_in.tokens)
        )

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        auth.check_device_name(request.device_name)
        address = peers.client_address(context, self._trusted_proxies)
        # before the per-username limit: a held-back address must not spend the account's budget
        await self._signin.before_login(request.username, address)
        await self._limits.login(request.username)
        try:
            signed_in = await self._accounts.login(request.username, request.password,
                                                   self._sighting(context, request.device_name))
        except errors.Unauthenticated:
            await self._signin.login_failed(request.username, address)
            raise
        await self._signin.login_succeeded(request.username, address)
        return auth_pb2.LoginResponse(
            user_id=signed_in.user.user_id, tokens=_token_pair(signed_in.tokens)
        )

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshTokenResponse:
        tokens = await self._accounts.refresh(request.refresh_token, self._sighting(context))
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
        # session_svc's part first: if it fails the account stays, and a retry completes
        deleted = await self._accounts.delete_account(
            caller, request.password,
            lambda: self._session_data.erase(self._sessions, caller, context.time_remaining()))
        return auth_pb2.DeleteAccountResponse(
            deleted_session_count=deleted.deleted_session_count,
            deleted_utterance_count=deleted.deleted_utterance_count,
            deleted_recording_count=deleted.deleted_recording_count)

    async def ExportMyData(
        self, request: auth_pb2.ExportMyDataRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ExportMyDataResponse:
        caller = await self._caller(context)
        account = await self._accounts.export(caller)
        return _export(account, await self._session_data.export(caller, context.time_remaining()))

    async def ListDevices(
        self, request: auth_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListDevicesResponse:
        caller = await self._caller(context)
        return auth_pb2.ListDevicesResponse(devices=[
            _device(d, caller.login_id) for d in await self._accounts.devices(caller)])

    async def RevokeDevice(
        self, request: auth_pb2.RevokeDeviceRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeDeviceResponse:
        caller = await self._caller(context)
        await self._accounts.revoke_device(caller, request.device_id)
        return auth_pb2.RevokeDeviceResponse()

    async def ListSignInProviders(
        self, request: auth_pb2.ListSignInProvidersRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListSignInProvidersResponse:
        providers = self._signins.providers() if self._signins else []
        return auth_pb2.ListSignInProvidersResponse(providers=[
            auth_pb2.SignInProvider(name=p.name, issuer=p.issuer) for p in providers])

    def _oidc(self) -> SignIns:
        if self._signins is None or not self._signins.providers():
            raise errors.FailedPrecondition(
                "no sign-in providers are configured (auth.oidc_providers)")
        return self._signins

    async def StartSignIn(
        self, request: auth_pb2.StartSignInRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.StartSignInResponse:
        # open to anyone and writing a row: the request limit, per client address
        await self._limits.anonymous_request(peers.client_address(context, self._trusted_proxies))
        started = await self._oidc().start(request.provider, request.redirect_uri)
        return auth_pb2.StartSignInResponse(authorization_url=started.authorization_url,
                                            state=started.state)

    async def FinishSignIn(
        self, request: auth_pb2.FinishSignInRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.FinishSignInResponse:
        auth.check_device_name(request.device_name)
        await self._limits.anonymous_request(peers.client_address(context, self._trusted_proxies))
        finished = await self._oidc().finish(request.state, request.code, request.password,
                                             self._sighting(context, request.device_name))
        return auth_pb2.FinishSignInResponse(
            user_id=finished.signed_in.user.user_id,
            tokens=_token_pair(finished.signed_in.tokens), created=finished.created)


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
    `directory` (which session_svc replica holds a session) to asking
    session_svc over that channel (`gateway.sessiondata`)."""
    database = None
    if store is None or settings.admin.enabled:  # the audit log is in PostgreSQL
        database = await db.open_database(settings.database)
        store = store or PgUserStore(database)
    tokens = AccessTokens.from_settings(settings.auth)
    assertions = Assertions.from_settings(settings.auth)
    trusted_proxies = peers.parse_networks(settings.limits.trusted_proxies)
    passwords = Passwords()
    await passwords.warm_up()
    revocations = Revocations(store, settings.auth.revocation_recheck_ms / 1000)
    accounts = Accounts(store, tokens, passwords, refresh_ttl_s=settings.auth.refresh_token_ttl_s,
                        revocations=revocations)
    authenticator = Authenticator(tokens, revocations)
    signins = SignIns(settings.auth.oidc_providers, store, accounts, settings.auth.oidc_state_ttl_s)
    limits = (Limits(settings.limits, limiter) if limiter is not None
              else Limits.from_settings(settings.limits))
    signin = SignInLimits.from_settings(settings, limits.limiter)
    mesh = MeshTls.from_settings(settings.tls)  # to session_svc; the public port is not mTLS
    channel = session_channel or rpc.channel(settings.addresses.session, tls=mesh,
                                             server_role="session")
    router = Router(channel, trunk=settings.trunk, linger_s=settings.trunk_linger_ms / 1000,
                    tls=mesh)
    session_data = SessionData(router.default, assertions)
    router.directory = directory or session_data
    proxy = Proxy(authenticator, limits, assertions, settings.session.join_timeout_s, trusted_proxies)

    services: list[rpc.Registration] = [
        (auth_pb2_grpc.add_AuthServiceServicer_to_server,
         AuthServicer(accounts, authenticator, limits, router, session_data, assertions, signin,
                      trusted_proxies, signins)),
        (sessions_pb2_grpc.add_SessionServiceServicer_to_server, SessionProxy(router, proxy)),
        (conversation_pb2_grpc.add_ConversationServiceServicer_to_server, ConversationProxy(router, proxy)),
        (vocabulary_pb2_grpc.add_VocabularyServiceServicer_to_server, VocabularyProxy(router, proxy)),
        (recording_pb2_grpc.add_RecordingServiceServicer_to_server, RecordingProxy(router, proxy)),
    ]
    names: tuple[str, ...] = SERVICE_NAMES
    if settings.admin.enabled:  # off: AdminService does not exist here (UNIMPLEMENTED)
        assert database is not None
        services.append((admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer(
            store, accounts, authenticator, AuditLog(database), router, session_data, assertions,
            settings.addresses, mesh, trusted_proxies)))
        names = (*names, ADMIN_SERVICE)
    service = rpc.Service.serving("gateway", services, names, trunk=False)
    service.on_stop.append(router.close)
    if session_channel is None:
        service.on_stop.append(channel.close)
    service.on_stop.append(passwords.close)
    service.on_stop.append(signin.close)
    if limiter is None:
        service.on_stop.append(limits.close)
    if isinstance(store, PgUserStore):  # revocations by other replicas, at once
        service.background(store.watch_revocations(revocations.revoked, revocations.user_deleted),
                           "revocations")
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
