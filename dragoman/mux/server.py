"""The server's side of trunks: `add_to_server` serves every method of a
servicer on the trunk too, each call through the same wrapper as a gRPC call."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc

from dragoman import rpc, tracing
from dragoman.mux.framing import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    SERVICE,
    Deserializer,
    Outbox,
    Pending,
    end_frame,
    received,
)
from dragoman.trunk.v1 import trunk_pb2 as pb
from dragoman.trunk.v1 import trunk_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class _Abort(grpc.aio.AbortError):
    """Raised by `ServerCall.abort`, as grpc.aio raises AbortError."""


class ServerCall:
    """The `grpc.aio.ServicerContext` of a call on a trunk (what handlers use of it)."""

    def __init__(self, trunk: _ServerTrunk, call_id: int, start: pb.CallStart) -> None:
        self._trunk, self._id, self._method = trunk, call_id, start.method
        self._metadata = tuple((e.key, e.value) for e in start.metadata)
        loop = asyncio.get_running_loop()
        self._deadline = (loop.time() + start.timeout.ToNanoseconds() / 1e9
                          if start.HasField("timeout") else None)
        self.requests = Pending()
        self.on_request: Callable[[bytes | None], None] | None = None
        """Set by `_TrunkRequests.consume`: takes each message (None: half-close) at once."""
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: Sequence[tuple[str, Any]] = ()
        self._cancelled = False
        self._callbacks: list[Callable[[Any], None]] = []
        self.task: asyncio.Task[None] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._trunk.peer

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """The trunk's: every call on it comes from the peer that opened it (its TLS
        certificate's names when the trunk runs over mutual TLS)."""
        return self._trunk.auth

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Sequence[tuple[str, Any]] = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing_metadata
        raise _Abort(details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = trailing_metadata

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def cancelled(self) -> bool:
        return self._cancelled

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._callbacks.append(callback)

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        pass  # a trunk call has no initial metadata of its own

    def _on_frame(self, frame: pb.Frame) -> None:
        kind = frame.WhichOneof("kind")
        if self.on_request is not None and kind in ("message", "half_close"):
            self.on_request(frame.message if kind == "message" else None)
        elif kind == "message":
            if behind := self.requests.behind(frame.message, MAX_PENDING, MAX_PENDING_BYTES,
                                              "requests"):
                self._trunk.outbox.put(end_frame(
                    self._id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server fell {behind} behind the caller; the call was ended"))
                self._stop()
                return
            self.requests.put_nowait(frame.message)
        elif kind == "half_close":
            self.requests.put_nowait(None)
        elif kind == "end":  # the caller cancelled (or its deadline passed)
            self._stop()

    def _stop(self) -> None:
        self._cancelled = True
        self._trunk.calls.pop(self._id, None)
        if self.task is not None:
            self.task.cancel()

    async def run(self, handler: grpc.RpcMethodHandler) -> None:
        serialize = handler.response_serializer
        requests = _TrunkRequests(self, handler.request_deserializer or (lambda b: b))
        timer = None
        if (remaining := self.time_remaining()) is not None:
            timer = asyncio.get_running_loop().call_later(remaining, self._expire)
        outbox = self._trunk.outbox
        end: pb.Frame | None = end_frame(self._id, grpc.StatusCode.OK)
        try:
            with tracing.server_span(self._method, self._metadata):
                async for response in _responses(handler, requests, self):
                    outbox.put(pb.Frame(call_id=self._id,
                                        message=serialize(response) if serialize else response))
                    await outbox.room()
        except _Abort:
            pass
        except asyncio.CancelledError:
            end = None if self._code is None else end  # cancelled by the caller: nothing to say
        except Exception:  # noqa: BLE001 - rpc.wrap_handler maps errors; this is the backstop
            log.exception("a trunk call failed")
            self._code, self._details = grpc.StatusCode.INTERNAL, "internal error"
        finally:
            if timer is not None:
                timer.cancel()
            self._trunk.calls.pop(self._id, None)
            for callback in self._callbacks:
                callback(self)
        if end is not None and not self._cancelled:
            code = self._code or grpc.StatusCode.OK
            outbox.put(end_frame(self._id, code, self._details if code is not grpc.StatusCode.OK else "",
                            self._trailing))

    def _expire(self) -> None:
        self._code, self._details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
        if self.task is not None:
            self.task.cancel()


async def _responses(handler: grpc.RpcMethodHandler, requests: _TrunkRequests,
                     context: ServerCall) -> AsyncIterator[Any]:
    """The responses of a call of any of the four kinds, as a stream."""
    if handler.stream_stream is not None:
        async for response in handler.stream_stream(requests, context):
            yield response
    elif handler.stream_unary is not None:
        yield await handler.stream_unary(requests, context)
    else:
        request = await requests.only()
        if handler.unary_stream is not None:
            async for response in handler.unary_stream(request, context):
                yield response
        else:
            yield await handler.unary_unary(request, context)


class _TrunkRequests:
    """The request stream a handler gets for a call on a trunk: an async
    iterator, or (`consume`, an `rpc.Consumable`) requests handed over as frames
    arrive, in the handler's context, without a task switch (see `rpc.each`)."""

    def __init__(self, call: ServerCall, deserialize: Deserializer) -> None:
        self._call, self._deserialize = call, deserialize

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while (data := await self._call.requests.get()) is not None:
            yield self._deserialize(data)

    async def only(self) -> Any:
        """The one request of a call with a unary request."""
        data = await self._call.requests.get()
        if data is None:
            self._call.set_code(grpc.StatusCode.INTERNAL)
            self._call.set_details("the call ended before its request arrived")
            raise _Abort("no request")
        return self._deserialize(data)

    async def consume(self, on_request: Callable[[Any], None]) -> None:
        call, deserialize = self._call, self._deserialize
        while not call.requests.empty():  # what arrived before
            data = call.requests.get_nowait()
            if data is None:
                return
            on_request(deserialize(data))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()  # the handler's (log ids of the call)

        def take(data: bytes | None) -> None:
            if done.done():
                return
            if data is None:
                done.set_result(None)
                return
            try:
                context.run(on_request, deserialize(data))
            except Exception as e:  # noqa: BLE001 - raised in the handler, by `rpc.each`
                done.set_exception(e)

        call.on_request = take
        try:
            await done
        finally:
            call.on_request = None


class _ServerTrunk:
    """The server's end of one Carry call."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler], peer: str,
                 auth: Mapping[str, Iterable[bytes]]) -> None:
        self.handlers, self.peer, self.auth = handlers, peer, auth
        self.outbox = Outbox()
        self.calls: dict[int, ServerCall] = {}

    async def read(self, batches: AsyncIterator[pb.CarryRequest]) -> None:
        try:
            async for batch in batches:
                for frame in received(batch.frames):
                    call = self.calls.get(frame.call_id)
                    if call is not None:
                        call._on_frame(frame)
                    elif frame.HasField("start"):
                        self._start(frame.call_id, frame.start)
        finally:
            for call in list(self.calls.values()):
                call._stop()
            self.outbox.close()

    def _start(self, call_id: int, start: pb.CallStart) -> None:
        handler = self.handlers.get(start.method)
        if handler is None:
            self.outbox.put(end_frame(call_id, grpc.StatusCode.UNIMPLEMENTED,
                                 f"{start.method} is not served on this trunk"))
            return
        call = self.calls[call_id] = ServerCall(self, call_id, start)
        call.task = asyncio.create_task(call.run(handler), name=f"trunk-call-{start.method}")


class TrunkServicer(pb_grpc.TrunkServiceServicer):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    async def Carry(self, request_iterator: AsyncIterator[pb.CarryRequest],
                    context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CarryResponse]:
        await context.send_initial_metadata(())  # the client writes once it has these
        trunk = _ServerTrunk(self._handlers, context.peer(), context.auth_context())
        reader = asyncio.create_task(trunk.read(request_iterator), name="trunk-server-read")
        try:
            while (frames := await trunk.outbox.batch()) is not None:
                yield pb.CarryResponse(frames=frames)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            calls = [c.task for c in trunk.calls.values() if c.task is not None]
            for task in calls:
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)


class _Collector:
    """Stands in for a server to collect what a generated add_*_to_server registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        pass  # the registered handlers below are the same methods

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            method = f"/{service}/{name}"
            self.handlers[method] = rpc.wrap_handler(handler, method)


def add_to_server(server: grpc.aio.Server,
                  registrations: Iterable[tuple[Callable[[Any, Any], None], Any]]) -> str:
    """Registers `registrations` ((add_*_to_server, servicer) pairs) on
    `server` as usual, and serves their bidirectional methods on a trunk too.
    Returns the trunk's service name (for health and reflection)."""
    collector = _Collector()
    for add, servicer in registrations:
        add(servicer, server)
        add(servicer, collector)
    pb_grpc.add_TrunkServiceServicer_to_server(TrunkServicer(collector.handlers), server)
    return SERVICE
