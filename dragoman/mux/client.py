"""The caller's side of trunks: `TrunkedChannel`, a channel for generated
stubs whose calls travel as frames on one trunk (`link.Link`) to the server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import grpc

from dragoman import rpc
from dragoman.mux.framing import LINGER_S, Deserializer, Serializer, checked_linger
from dragoman.mux.link import Link, TrunkCall
from dragoman.tls import MeshTls
from dragoman.trunk.v1 import trunk_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class _TrunkMethod:
    """A bidirectional method on a trunk, shaped like `grpc.aio.StreamStreamMultiCallable`."""

    def __init__(self, owner: TrunkedChannel, method: str, serializer: Serializer,
                 deserializer: Deserializer) -> None:
        self._owner, self._method = owner, method
        self._serialize, self._deserialize = serializer, deserializer
        self._plain = owner.channel.stream_stream(
            method, request_serializer=serializer, response_deserializer=deserializer)

    def __call__(self, request_iterator: AsyncIterable[Any] | None = None, *,
                 timeout: float | None = None,
                 metadata: Sequence[tuple[str, Any]] | None = None,
                 **_: Any) -> TrunkCall | grpc.aio.StreamStreamCall:
        if self._owner.plain:  # the server has no trunk: a gRPC stream of its own
            return self._plain(request_iterator, timeout=timeout, metadata=metadata)
        call = self._owner.link().open(self._method, self._serialize, self._deserialize,
                                       metadata or (), timeout)
        call.lazy = True
        if isinstance(request_iterator, rpc.Bindable):  # an rpc.Feed: sent as it is put
            request_iterator.bind(call._put, call.half_close)
        elif request_iterator is not None:
            call._feeder = asyncio.create_task(call._feed(request_iterator), name="trunk-feed")
        return call


RETRIES = 2
"""Times a call with a unary request is sent again when its trunk failed
before any response (as gRPC's retry policy does for the idempotent calls
dragoman makes: translations, syntheses, session queries)."""


class TrunkUnaryCall:
    """A call with one request on a trunk, shaped like grpc.aio's UnaryUnaryCall
    (`await call`) and UnaryStreamCall (`async for response in call`)."""

    def __init__(self, method: _TrunkUnaryMethod, request: Any, timeout: float | None,
                 metadata: Sequence[tuple[str, Any]]) -> None:
        self._method, self._request = method, request
        self._timeout, self._metadata = timeout, metadata
        self._call: TrunkCall | Any = None
        self._cancelled = False

    def __await__(self) -> Any:
        return self._one().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._responses()

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._call is not None and self._call.cancel())

    def done(self) -> bool:
        return self._call is not None and self._call.done()

    async def _one(self) -> Any:
        responses = [r async for r in self._responses()]  # to the call's end (its status)
        if len(responses) != 1:
            raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(),
                                       f"the server sent {len(responses)} responses, not one")
        return responses[0]

    async def _responses(self) -> AsyncIterator[Any]:
        method, owner = self._method, self._method._owner
        for attempt in range(RETRIES + 1):
            if owner.plain:  # the server has no trunk: as gRPC would
                self._call = method._plain(self._request, timeout=self._timeout,
                                           metadata=self._metadata)
                if not method._streaming:
                    yield await self._call
                    return
                async for response in self._call:
                    yield response
                return
            call = self._call = owner.link().open(
                method._method, method._serialize, method._deserialize, self._metadata,
                self._timeout)
            call.send(self._request)
            call.half_close()
            answered = False
            try:
                async for response in call:
                    answered = True
                    yield response
                return
            except grpc.aio.AioRpcError as e:
                if (answered or self._cancelled or e.code() is not grpc.StatusCode.UNAVAILABLE
                        or attempt == RETRIES):
                    raise
            finally:
                call.cancel()  # a no-op once it ended; else the reader went away
            await asyncio.sleep(0.05 * 2**attempt)


class _TrunkUnaryMethod:
    """A method with one request on a trunk, shaped like grpc.aio's
    UnaryUnaryMultiCallable or UnaryStreamMultiCallable."""

    def __init__(self, owner: TrunkedChannel, method: str, serializer: Serializer,
                 deserializer: Deserializer, plain: Any, streaming: bool) -> None:
        self._owner, self._method, self._streaming = owner, method, streaming
        self._serialize, self._deserialize = serializer, deserializer
        self._plain = plain

    def __call__(self, request: Any, *, timeout: float | None = None,
                 metadata: Sequence[tuple[str, Any]] | None = None,
                 **_: Any) -> TrunkUnaryCall:
        return TrunkUnaryCall(self, request, timeout, metadata or ())


class TrunkedChannel:
    """A channel for generated stubs whose calls go on one trunk to the server
    (client-streaming calls, which dragoman does not make, on `channel` itself).
    `linger_s`: how long audio frames wait for others to share their message
    (`LINGER_S`; 0 to `config.MAX_TRUNK_LINGER_MS`)."""

    def __init__(self, channel: grpc.aio.Channel, linger_s: float = LINGER_S) -> None:
        self.channel = channel
        self.linger_s = checked_linger(linger_s)
        self._stub = pb_grpc.TrunkServiceStub(channel)
        self._link: Link | None = None
        self.plain = False
        """True once the server answered that it serves no trunk."""

    def _no_trunk(self) -> None:
        if not self.plain:
            log.warning("the server serves no trunk; streaming calls go as gRPC streams")
        self.plain = True

    def link(self) -> Link:
        if self._link is None or self._link.dead:
            self._link = Link(self._stub, self._no_trunk, self.linger_s)
        return self._link

    def stream_stream(self, method: str, request_serializer: Serializer | None = None,
                      response_deserializer: Deserializer | None = None,
                      **_: Any) -> _TrunkMethod:
        assert request_serializer is not None and response_deserializer is not None
        return _TrunkMethod(self, method, request_serializer, response_deserializer)

    def unary_unary(self, method: str, request_serializer: Serializer | None = None,
                    response_deserializer: Deserializer | None = None,
                    **kwargs: Any) -> _TrunkUnaryMethod:
        assert request_serializer is not None and response_deserializer is not None
        return _TrunkUnaryMethod(self, method, request_serializer, response_deserializer,
                                 self.channel.unary_unary(method, request_serializer,
                                                          response_deserializer, **kwargs),
                                 streaming=False)

    def unary_stream(self, method: str, request_serializer: Serializer | None = None,
                     response_deserializer: Deserializer | None = None,
                     **kwargs: Any) -> _TrunkUnaryMethod:
        assert request_serializer is not None and response_deserializer is not None
        return _TrunkUnaryMethod(self, method, request_serializer, response_deserializer,
                                 self.channel.unary_stream(method, request_serializer,
                                                           response_deserializer, **kwargs),
                                 streaming=True)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self.channel.stream_unary(*args, **kwargs)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.channel.get_state(try_to_connect)

    async def close_trunk(self) -> None:
        """Ends the trunk (its calls end CANCELLED); the channel stays open."""
        if self._link is not None:
            await self._link.aclose()

    async def close(self) -> None:
        """Ends the trunk, then closes the channel."""
        await self.close_trunk()
        await self.channel.close()


def channel(address: str, *, trunk: bool = True, retry: Sequence[str] = (),
            linger_s: float = LINGER_S, tls: MeshTls | None = None,
            server_role: str = "") -> Any:
    """`rpc.channel(address)` (mutual TLS to a `server_role` server with `tls`),
    its streaming calls on a trunk (lingering `linger_s` for company) unless
    `trunk` is false."""
    if not trunk:
        return rpc.channel(address, retry=retry, tls=tls, server_role=server_role)
    linger_s = checked_linger(linger_s)  # before a channel is opened
    return TrunkedChannel(rpc.channel(address, retry=retry, tls=tls, server_role=server_role),
                          linger_s)
