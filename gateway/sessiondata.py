"""What the gateway asks session_svc about the session tables, which only
session_svc reads (`dragoman.session.v1.SessionDataService`): which replica
holds a live session (`gateway.routing`'s directory), and a user's session
data for ExportMyData and DeleteAccount.

The calls go to `addresses.session` (any replica answers: they share the
tables), on the gateway's channel there, so on its trunk when there is one.
"""

from __future__ import annotations

import grpc

from dragoman import errors
from dragoman.assertion import Assertions
from dragoman.session.v1 import session_pb2, session_pb2_grpc
from gateway.auth import Identity
from gateway.proxy import DOWNSTREAM, end_live_sessions
from gateway.routing import Router

OWNER_TIMEOUT_S = 5.0
"""How long a call waits for the owner of a session (one indexed query)."""
GATEWAY_CALLER = "gateway"
"""Whom an owner lookup is asserted for: no user, but only a gateway may ask (a code
that exists is a pairing code worth guessing)."""


class SessionData:
    """A `routing.SessionDirectory`, and a user's data, from session_svc."""

    def __init__(self, channel: grpc.aio.Channel, assertions: Assertions) -> None:
        """`channel` (the caller's to close) reaches any session_svc replica;
        `assertions` sign who each call is for."""
        self._stub = session_pb2_grpc.SessionDataServiceStub(channel)
        self._assertions = assertions

    def _for(self, identity: Identity) -> tuple[tuple[str, str], ...]:
        return self._assertions.metadata(identity.user_id, identity.username)

    async def owner(self, *, session_id: str = "", code: str = "") -> str | None:
        request = (session_pb2.GetSessionOwnerRequest(session_id=session_id) if session_id
                   else session_pb2.GetSessionOwnerRequest(code=code))
        try:
            reply = await self._stub.GetSessionOwner(
                request, metadata=self._assertions.metadata(GATEWAY_CALLER, GATEWAY_CALLER),
                timeout=OWNER_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise errors.from_rpc_error(err, DOWNSTREAM) from None
        return reply.owner

    async def live_sessions(self, timeout_s: float | None) -> session_pb2.ListLiveSessionsResponse:
        """Sessions not yet ended, for AdminService (which checked the role)."""
        try:
            return await self._stub.ListLiveSessions(
                session_pb2.ListLiveSessionsRequest(),
                metadata=self._assertions.metadata(GATEWAY_CALLER, GATEWAY_CALLER), timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err, DOWNSTREAM) from None

    async def analytics(self, request: session_pb2.GetAnalyticsRequest,
                        timeout_s: float | None) -> session_pb2.GetAnalyticsResponse:
        """Usage numbers for AdminService (which checked the role)."""
        try:
            return await self._stub.GetAnalytics(
                request, metadata=self._assertions.metadata(GATEWAY_CALLER, GATEWAY_CALLER),
                timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err, DOWNSTREAM) from None

    async def export(
        self, identity: Identity, timeout_s: float | None
    ) -> session_pb2.ExportUserDataResponse:
        """The user's sessions and the utterances said in them."""
        try:
            return await self._stub.ExportUserData(
                session_pb2.ExportUserDataRequest(), metadata=self._for(identity), timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err, DOWNSTREAM) from None

    async def erase(self, sessions: Router, identity: Identity,
                    timeout_s: float | None) -> session_pb2.DeleteUserDataResponse:
        """Ends the user's live sessions (on their replicas, via `sessions`), then
        deletes what session_svc keeps of them (`delete`)."""
        await end_live_sessions(sessions, self._assertions, identity)
        return await self.delete(identity, timeout_s)

    async def delete(
        self, identity: Identity, timeout_s: float | None
    ) -> session_pb2.DeleteUserDataResponse:
        """Deletes the user's part in sessions and what they said, all or
        nothing; asking again deletes what is left (nothing, after a success)."""
        try:
            return await self._stub.DeleteUserData(
                session_pb2.DeleteUserDataRequest(), metadata=self._for(identity), timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err, DOWNSTREAM) from None
