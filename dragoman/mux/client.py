"""The caller's side of trunks: `TrunkedChannel`, a channel for generated
stubs whose calls travel as frames on one Carry call to the server."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from dragoman import logs, rpc, tracing
from dragoman.mux.framing import (
    LINGER_S,
    MAX_BACKLOG,
    MAX_PENDING,
    Deserializer,
    Outbox,
    Serializer,
    checked_linger,
    end_frame,
    grpc_metadata,
    metadata_entries,
    received,
    status_code,
)
from dragoman.trunk.v1 import trunk_pb2 as pb
from dragoman.trunk.v1 import trunk_pb2_grpc as pb_grpc

log = logging.getLogger("dragoman.trunk")


class TrunkCall:
    """A bidirectional call on a trunk, shaped like `grpc.aio.StreamStreamCall`:
    `write`, `done_writing`, `cancel`, and `async for` over the responses
    (which raises `grpc.aio.AioRpcError` when the call ends with an error)."""

    def __init__(self, link: _Link, call_id: int, serializer: Serializer,
                 deserializer: Deserializer) -> None:
        self._link, self._id = link, call_id
        self._serialize, self._deserialize = serializer, deserializer
        self._responses: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._error: grpc.aio.AioRpcError | None = None
        self._status = grpc.StatusCode.OK
        self._done = False
        self.lazy = False
        """Requests may linger for company (a stream's requests; see _Outbox)."""
        self._feeder: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.span: Any = None
        """The call's trace span (tracing.client_span), ended with the call."""

    # the caller's half

    async def write(self, request: Any) -> None:
        """Writes once the trunk's writer is not far behind (HIGH_WATER)."""
        await self._link.outbox.room()
        self._write_now(request)

    def send(self, request: Any) -> None:
        """Writes without waiting: raises asyncio.InvalidStateError once the call
        is over, asyncio.QueueFull when the trunk is far behind (MAX_BACKLOG)."""
        if self._link.outbox.backlog() >= MAX_BACKLOG:
            raise asyncio.QueueFull
        self._write_now(request)

    def _write_now(self, request: Any) -> None:
        if self._done:
            raise asyncio.InvalidStateError("the call is over")
        self._link.send(pb.Frame(call_id=self._id, message=self._serialize(request)), self.lazy)

    async def done_writing(self) -> None:
        self.half_close()

    def half_close(self) -> None:
        if not self._done:
            self._link.send(pb.Frame(call_id=self._id, half_close=pb.HalfClose()))

    def cancel(self) -> bool:
        if self._done:
            return False
        self._link.send(end_frame(self._id, grpc.StatusCode.CANCELLED))
        self._finish(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        return True

    def done(self) -> bool:
        return self._done

    def _put(self, request: Any) -> None:
        """`send` for a request stream bound to the call (rpc.Bindable): nothing
        once the call is over (like items nobody reads)."""
        if not self._done:
            self.send(request)

    def code(self) -> grpc.StatusCode | None:
        return self._status if self._done else None

    async def _feed(self, requests: AsyncIterable[Any]) -> None:
        try:
            async for request in requests:
                await self.write(request)
            await self.done_writing()
        except asyncio.InvalidStateError:
            pass  # the call ended while requests were still coming
        except Exception:
            log.exception("the request iterator of a trunk call failed")
            self.cancel()

    # the server's half

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._read()

    async def _read(self) -> AsyncIterator[Any]:
        try:
            while (data := await self._responses.get()) is not None:
                yield self._deserialize(data)
        finally:
            if not self._done:  # the reader went away: as a collected gRPC call, cancelled
                self.cancel()
        if self._error is not None:
            raise self._error

    def _on_frame(self, frame: pb.Frame) -> None:
        kind = frame.WhichOneof("kind")
        if kind == "message":
            if self._responses.qsize() >= MAX_PENDING:
                self._link.send(end_frame(self._id, grpc.StatusCode.RESOURCE_EXHAUSTED))
                self._finish(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the caller fell {MAX_PENDING} responses behind the server; "
                             "the call was ended")
                return
            self._responses.put_nowait(frame.message)
        elif kind == "end":
            self._finish(status_code(frame.end.code), frame.end.details,
                         grpc_metadata(frame.end.trailing_metadata))

    def _finish(self, code: grpc.StatusCode, details: str,
                trailing: grpc.aio.Metadata | None = None) -> None:
        if self._done:
            return
        self._done, self._status = True, code
        self._link.forget(self._id)
        tracing.end_span(self.span, code)
        if self._timer is not None:
            self._timer.cancel()
        if self._feeder is not None and self._feeder is not asyncio.current_task():
            self._feeder.cancel()
        if code is not grpc.StatusCode.OK:
            self._error = grpc.aio.AioRpcError(
                code, grpc.aio.Metadata(), trailing or grpc.aio.Metadata(), details)
        self._responses.put_nowait(None)

    def _expire(self) -> None:
        if not self._done:
            self._link.send(end_frame(self._id, grpc.StatusCode.DEADLINE_EXCEEDED))
            self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


class _Link:
    """One open Carry call and the trunk calls on it."""

    def __init__(self, stub: pb_grpc.TrunkServiceStub,
                 on_unimplemented: Callable[[], None], linger_s: float) -> None:
        self._on_unimplemented = on_unimplemented
        self.outbox = Outbox(linger_s)
        self.calls: dict[int, TrunkCall] = {}
        self._next_id = 0
        self.dead = False
        # The trunk outlives the call that opened it: no request's log context.
        quiet = contextvars.Context()
        self._carry = quiet.run(stub.Carry)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._write(), name="trunk-write", context=quiet),
            asyncio.get_running_loop().create_task(self._read(), name="trunk-read", context=quiet),
        ]

    def open(self, method: str, serializer: Serializer, deserializer: Deserializer,
             metadata: Sequence[tuple[str, Any]], timeout: float | None) -> TrunkCall:
        self._next_id += 1
        call = TrunkCall(self, self._next_id, serializer, deserializer)
        self.calls[self._next_id] = call
        meta = list(metadata)
        if cid := logs.correlation_id.get():
            meta.append((rpc.CORRELATION_HEADER, cid))
        call.span = tracing.client_span(method, meta)
        start = pb.CallStart(method=method, metadata=metadata_entries(meta))
        if timeout is not None:
            start.timeout.FromNanoseconds(int(max(timeout, 0.0) * 1e9))
            call._timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), call._expire)
        self.send(pb.Frame(call_id=self._next_id, start=start))
        return call

    def send(self, frame: pb.Frame, lazy: bool = False) -> None:
        if not self.dead:
            self.outbox.put(frame, lazy)

    def forget(self, call_id: int) -> None:
        self.calls.pop(call_id, None)

    async def _write(self) -> None:
        try:
            # Nothing is written before the server has answered the Carry call:
            # a server without a trunk answers UNIMPLEMENTED at once, and a write
            # racing that answer would turn it into INTERNAL "Internal error from
            # Core" (grpc/grpc#36066), hiding that the next call should go plain.
            # One round trip per trunk, not per call.
            await self._carry.initial_metadata()
            while (frames := await self.outbox.batch()) is not None:
                await self._carry.write(pb.CarryRequest(frames=frames))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the read side learns how the trunk ended

    async def _read(self) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "the trunk ended"
        try:
            async for response in self._carry:
                for frame in received(response.frames):
                    call = self.calls.get(frame.call_id)
                    if call is not None:
                        call._on_frame(frame)
        except grpc.aio.AioRpcError as e:
            code, details = e.code(), e.details() or details
            if code is grpc.StatusCode.UNIMPLEMENTED:
                details = "the server has no trunk (dragoman.trunk.v1.TrunkService)"
                code = grpc.StatusCode.UNAVAILABLE  # the next call goes without one
                self._on_unimplemented()
        finally:
            self.close(code, f"trunk: {details}")

    def close(self, code: grpc.StatusCode, details: str) -> None:
        if self.dead:
            return
        self.dead = True
        for call in list(self.calls.values()):
            call._finish(code, details)
        self.outbox.close()
        self._carry.cancel()

    async def aclose(self) -> None:
        self.close(grpc.StatusCode.CANCELLED, "the trunk was closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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
        self._link: _Link | None = None
        self.plain = False
        """True once the server answered that it serves no trunk."""

    def _no_trunk(self) -> None:
        if not self.plain:
            log.warning("the server serves no trunk; streaming calls go as gRPC streams")
        self.plain = True

    def link(self) -> _Link:
        if self._link is None or self._link.dead:
            self._link = _Link(self._stub, self._no_trunk, self.linger_s)
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
            linger_s: float = LINGER_S) -> Any:
    """`rpc.channel(address)`, its streaming calls on a trunk (lingering
    `linger_s` for company) unless `trunk` is false."""
    if not trunk:
        return rpc.channel(address, retry=retry)
    linger_s = checked_linger(linger_s)  # before a channel is opened
    return TrunkedChannel(rpc.channel(address, retry=retry), linger_s)
