"""One trunk from the caller's side: `Link`, an open Carry call, and the
`TrunkCall`s on it, each a stream of frames with its own id."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from dragoman import logs, rpc, tracing
from dragoman.mux.framing import (
    MAX_BACKLOG,
    MAX_PENDING,
    MAX_PENDING_BYTES,
    Deserializer,
    Outbox,
    Pending,
    Serializer,
    end_frame,
    grpc_metadata,
    metadata_entries,
    received,
    status_code,
)
from dragoman.trunk.v1 import trunk_pb2 as pb
from dragoman.trunk.v1 import trunk_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class TrunkCall:
    """A bidirectional call on a trunk, shaped like `grpc.aio.StreamStreamCall`:
    `write`, `done_writing`, `cancel`, and `async for` over the responses
    (which raises `grpc.aio.AioRpcError` when the call ends with an error)."""

    def __init__(self, link: Link, call_id: int, serializer: Serializer,
                 deserializer: Deserializer) -> None:
        self._link, self._id = link, call_id
        self._serialize, self._deserialize = serializer, deserializer
        self._responses = Pending()
        self._error: grpc.aio.AioRpcError | None = None
        self._status = grpc.StatusCode.OK
        self._done = False
        self.lazy = False
        """Requests may linger for company (a stream's requests; see framing.Outbox)."""
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
            if behind := self._responses.behind(frame.message, MAX_PENDING, MAX_PENDING_BYTES,
                                                "responses"):
                self._link.send(end_frame(self._id, grpc.StatusCode.RESOURCE_EXHAUSTED))
                self._finish(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the caller fell {behind} behind the server; the call was ended")
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


class Link:
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
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                # the trunk broke under its calls (a killed peer resets the stream):
                # the transport failed, not the calls, which may go elsewhere
                code = grpc.StatusCode.UNAVAILABLE
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
