"""Which session_svc replica a call about a session goes to.

session_svc holds live sessions in memory. With several replicas, each one
records itself as the owner of the sessions it creates (its
`session.advertise_address`), and the gateway sends every call that names a
session (by id, or JoinSession by pairing code) to that owner, straight from
the gateway: no hop between replicas. The gateway learns the owner from
session_svc (`SessionDataService.GetSessionOwner`, asked at
`addresses.session`: `gateway.sessiondata`); it reads no session table.
Calls that name no session (CreateSession, ListSessions), sessions with no
recorded owner (one replica) and ended sessions (any replica answers from
the record) go to `addresses.session`. The owner of a session id is cached,
and asked again while its replica does not answer or once it answered
UNAVAILABLE (`forget`): a replica that stops, killed or drained, has its live
sessions taken over by another (session_svc.handover, docs/handover.md),
which the directory names from then on. A code is looked up once per
JoinSession."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import grpc

from dragoman import mux
from dragoman.tls import MeshTls
from dragoman.v1 import conversation_pb2_grpc, recording_pb2_grpc, sessions_pb2_grpc

OWNER_CACHE = 20_000
"""Session ids whose owner is remembered (about two per live session a gateway serves)."""


class SessionDirectory(Protocol):
    async def owner(self, *, session_id: str = "", code: str = "") -> str | None:
        """host:port of the replica holding the live session ("" if none was
        recorded); None when no live session has this id, or waits with this code."""
        ...


class Router:
    """Channels and stubs to the session_svc replica each call belongs to."""

    def __init__(self, default: grpc.aio.Channel, directory: SessionDirectory | None = None,
                 cache_size: int = OWNER_CACHE, trunk: bool = True,
                 linger_s: float = mux.LINGER_S, tls: MeshTls | None = None) -> None:
        """`default` (the caller's to close) serves calls with no owner; with
        `trunk`, the calls to each replica go on one trunk (dragoman.mux),
        where audio lingers `linger_s` for company; channels to replicas are
        mutual TLS with `tls`. Without a `directory`
        (set now or later, typically one asking over `default`) every call
        goes to `default`."""
        self._trunk, self._linger_s, self._tls = trunk, linger_s, tls
        self.default: Any = mux.TrunkedChannel(default, linger_s) if trunk else default
        self.directory = directory
        self._cache_size = cache_size
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._channels: dict[str, Any] = {}
        """Channels to owners ("" is `default`, not in here)."""
        self._stubs: dict[str, tuple[sessions_pb2_grpc.SessionServiceStub,
                                     conversation_pb2_grpc.ConversationServiceStub,
                                     recording_pb2_grpc.RecordingServiceStub]] = {}
        """Stubs per owner, "" for `default`."""

    def _stubs_of(self, owner: str) -> tuple[
            sessions_pb2_grpc.SessionServiceStub, conversation_pb2_grpc.ConversationServiceStub,
            recording_pb2_grpc.RecordingServiceStub]:
        stubs = self._stubs.get(owner)
        if stubs is None:
            channel = self.default
            if owner:
                channel = self._channels[owner] = mux.channel(
                    owner, trunk=self._trunk, linger_s=self._linger_s, tls=self._tls,
                    server_role="session")
            stubs = self._stubs[owner] = (sessions_pb2_grpc.SessionServiceStub(channel),
                                          conversation_pb2_grpc.ConversationServiceStub(channel),
                                          recording_pb2_grpc.RecordingServiceStub(channel))
        return stubs

    def _failing(self, owner: str) -> bool:
        channel = self._channels.get(owner)
        return channel is not None and (
            channel.get_state() == grpc.ChannelConnectivity.TRANSIENT_FAILURE)

    async def _owner(self, session_id: str, code: str) -> str:
        if self.directory is None or not (session_id or code):
            return ""
        if session_id and (cached := self._owners.get(session_id)) is not None:
            if not self._failing(cached):
                self._owners.move_to_end(session_id)
                return cached
            # its replica stopped answering: ask again (once it is gone, another
            # replica takes its sessions over)
            del self._owners[session_id]
        owner = await self.directory.owner(session_id=session_id, code=code)
        if owner is None:
            return ""  # ended or unknown: any replica answers from the record (or NOT_FOUND)
        if session_id:
            self._owners[session_id] = owner
            if len(self._owners) > self._cache_size:
                self._owners.popitem(last=False)
        return owner

    def forget(self, session_id: str) -> None:
        """Its owner answered UNAVAILABLE (stopped, or handed the session over): the
        next call about it asks the directory again."""
        self._owners.pop(session_id, None)

    async def sessions(self, *, session_id: str = "", code: str = "") -> sessions_pb2_grpc.SessionServiceStub:
        return self._stubs_of(await self._owner(session_id, code))[0]

    async def conversations(self, session_id: str) -> conversation_pb2_grpc.ConversationServiceStub:
        return self._stubs_of(await self._owner(session_id, ""))[1]

    async def recordings(self, session_id: str = "") -> recording_pb2_grpc.RecordingServiceStub:
        """Where a session's recordings are asked for and answered: its replica while it is
        live; any replica for none (`session_id` empty) or an ended one."""
        return self._stubs_of(await self._owner(session_id, ""))[2]

    async def close(self) -> None:
        """Closes the channels to owners (not `default`, which the caller owns)."""
        for channel in self._channels.values():
            await channel.close()
        if isinstance(self.default, mux.TrunkedChannel):
            await self.default.close_trunk()
        self._channels.clear()
        self._stubs.clear()
