"""Many gRPC calls over one gRPC stream between two processes.

A 100 ms audio chunk sent as a gRPC message of its own costs a Python
process 150-700 us to receive and forward (bench.grpc_floor), which caps a
session_svc core at fewer than 300 sessions whatever session_svc does. On a
trunk (`dragoman.trunk.v1.TrunkService/Carry`) the same chunk is a frame: a
call id and the serialized message, written in a batch with the other
frames waiting: the writer lingers up to `LINGER_S` (10 ms; the
`trunk_linger_ms` setting) after the first audio frame for others to join
it (frames someone waits on go at once), so
under load tens to hundreds of frames share one gRPC message, and a call
costs no HTTP/2 stream, metadata or interceptors.

The caller's side is a channel: `TrunkedChannel(channel)` is what a
generated stub takes; its calls travel on the trunk (opened on first use,
opened again after it fails; client-streaming calls, which dragoman does
not make, on `channel`). A call with one request is sent again when the
trunk failed before it was answered (`RETRIES`). Against a server without
a trunk the first call fails UNAVAILABLE and later ones go as ordinary gRPC
calls. `Feed` and `each()` hand messages to and from a trunk call without a
task switch per message. The server's side is `add_to_server(server,
registrations)`, which registers servicers the ordinary way and serves
every method on the trunk as well, through the same wrapper as every other
call (`rpc.wrap_handler`: logging context, error statuses, metrics) and
with a trace span each (`tracing.server_span`).

What a call on a trunk keeps of gRPC: metadata (text), deadlines,
half-close, cancellation from either side, status code, message and
trailing metadata, per-call ordering, trace context. What it changes: flow
control is per trunk, so a reader that falls `MAX_PENDING` messages behind
gets its call ended with RESOURCE_EXHAUSTED instead of slowing the sender
(a conversation client resumes from its last sequence number); when the
trunk itself fails, every call on it ends with the trunk's status
(UNAVAILABLE, typically), as calls on a failed connection do. Only text
metadata crosses, and no initial metadata comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from dragoman import config, logs, metrics, rpc, tracing
from dragoman.trunk.v1 import trunk_pb2 as pb
from dragoman.trunk.v1 import trunk_pb2_grpc as pb_grpc

log = logging.getLogger("dragoman.trunk")

MAX_PENDING = 1024
"""Messages a call may have waiting for its reader before it is ended."""
MAX_BATCH = 512
"""Most frames in one trunk message."""
MAX_BATCH_BYTES = rpc.MAX_MESSAGE_BYTES // 4
"""Most message bytes in one trunk message (a frame bigger than this goes alone):
far under the gRPC message limit, which a trunk message over it would break for
every call on the trunk."""
LINGER_S = config.DEFAULT_TRUNK_LINGER_MS / 1000
"""How long a lazy frame (a streaming call's request: audio) waits for others
to share its message; an urgent frame ends the wait (see `_Outbox`). With
100 ms chunks from clients whose clocks are spread over the chunk period,
10 ms gathers N/5 frames per message at N sessions (5 ms, N/10). Measured with
`bench.load --session-svc` at N=100: 2 ms on every frame gave added latency
p50 42 ms at 5.6 mcore/session; urgent frames without linger and 5 ms on
lazy ones, p50 27-33 ms at 4.8-5.3 mcore. At N=200, three alternating
pairs: 10 ms took session_svc's CPU from 2.54-2.75 to 2.23-2.35 mcore per
session, added 8 ms to p50 (32-34 against 23-28 ms) and left p99 where it
was (60-65 against 56-61 ms); kept at 5 ms then.
On a faster day, N=300, three runs each (`bench.load --session-svc
--trunk-linger-ms L`): 0 ms 2.21-2.26 mcore, p50 14-16, p99 61-106 ms;
5 ms 1.47-1.52 mcore, p50 17-19, p99 46-58; 10 ms 1.23-1.38 mcore, p50
24-26, p99 45-47; 20 ms 1.11-1.22 mcore, p50 38-42, p99 63-72. Ending the
wait early after 2 ms with no new frame kept N=50's p50 at 5 ms's (14-16 ms)
but at N=300 saved only half of 10 ms's CPU: not kept. At N=50, 10 ms
against 5: p50 24 against 15-16 ms, p99 31-32 against 20-21. So 10 ms: the
capacity per core is the scale goal, and 7-10 ms on a p50 of 550-800 ms end
to end (goal 1.5 s) is not heard. The default of `TrunkedChannel(linger_s=...)`
and of the `trunk_linger_ms` setting, which trades the two per deployment;
`config.MAX_TRUNK_LINGER_MS` is the most either takes."""
HIGH_WATER = 4096
"""Frames waiting for the trunk's writer beyond which senders wait."""
MAX_BACKLOG = 4 * HIGH_WATER
"""Frames waiting beyond which a sender that cannot wait (`TrunkCall.send`) is refused."""
SERVICE = pb.DESCRIPTOR.services_by_name["TrunkService"].full_name
_SENT_FRAMES, _SENT_BATCHES = (m.labels("sent") for m in (metrics.TRUNK_FRAMES, metrics.TRUNK_BATCHES))
_RECEIVED_FRAMES, _RECEIVED_BATCHES = (
    m.labels("received") for m in (metrics.TRUNK_FRAMES, metrics.TRUNK_BATCHES))


def _received(frames: Sequence[pb.Frame]) -> Sequence[pb.Frame]:
    _RECEIVED_BATCHES.inc()
    _RECEIVED_FRAMES.inc(len(frames))
    return frames


_Serializer = Callable[[Any], bytes]
_Deserializer = Callable[[bytes], Any]


def _entries(metadata: Iterable[tuple[str, Any]] | None) -> list[pb.MetadataEntry]:
    return [pb.MetadataEntry(key=k, value=v) for k, v in metadata or () if isinstance(v, str)]


def _metadata(entries: Iterable[pb.MetadataEntry]) -> grpc.aio.Metadata:
    return grpc.aio.Metadata(*((e.key, e.value) for e in entries))


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _code(value: int) -> grpc.StatusCode:
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)


class _Outbox:
    """Frames waiting for one side's writer, taken in batches.

    A batch goes out as soon as the writer gets to it when any frame in it is
    urgent. Lazy frames (the requests of a streaming call: audio) wait up to
    LINGER_S for company first, and an urgent frame put meanwhile ends the
    wait. So the frames that someone is waiting on (call starts, one-request
    calls, every response, ends) never linger, and the steady stream of
    audio, which is most of the frames, goes in batches.
    """

    def __init__(self, linger_s: float = LINGER_S) -> None:
        self._linger_s = linger_s
        self._frames: asyncio.Queue[pb.Frame | None] = asyncio.Queue()
        self._held: list[pb.Frame | None] = []
        """A frame taken but left for the next batch (None: the end)."""
        self._room = asyncio.Event()
        self._room.set()
        self._urgent = False
        """An urgent frame is waiting."""
        self._wake: asyncio.Future[None] | None = None
        """Set while the writer lingers; done when an urgent frame comes."""

    def backlog(self) -> int:
        return self._frames.qsize()

    def put(self, frame: pb.Frame, lazy: bool = False) -> None:
        self._frames.put_nowait(frame)
        if not lazy:
            self._hurry()
        if self._frames.qsize() >= HIGH_WATER:
            self._room.clear()

    def _hurry(self) -> None:
        self._urgent = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def room(self) -> None:
        """Returns when the writer is not far behind (back-pressure for busy senders)."""
        await self._room.wait()

    def close(self) -> None:
        self._frames.put_nowait(None)
        self._hurry()
        self._room.set()  # nobody waits on a writer that is gone

    async def batch(self) -> list[pb.Frame] | None:
        """The frames waiting now (at least one; at most MAX_BATCH frames and
        MAX_BATCH_BYTES of messages), counted as sent; None once closed."""
        held = bool(self._held)
        first = self._held.pop() if held else await self._frames.get()
        if first is None:
            return None
        if self._linger_s and not (held or self._urgent) and self._frames.qsize() < MAX_BATCH:
            loop = asyncio.get_running_loop()
            self._wake = wake = loop.create_future()
            timer = loop.call_later(self._linger_s, _resolve, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None
        self._urgent = False  # every frame waiting now goes in this batch or is held for the next
        frames, size = [first], len(first.message)
        while not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is None or len(frames) >= MAX_BATCH or (
                    size + len(frame.message) > MAX_BATCH_BYTES):
                self._held.append(frame)  # the end, or the first of the next batch
                break
            size += len(frame.message)
            frames.append(frame)
        if self._frames.qsize() < HIGH_WATER // 2:
            self._room.set()
        _SENT_BATCHES.inc()
        _SENT_FRAMES.inc(len(frames))
        return frames


def _checked_linger(linger_s: float) -> float:
    config.check_trunk_linger_ms(linger_s * 1000, "a trunk's linger (setting trunk_linger_ms)")
    return linger_s


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _end(call_id: int, code: grpc.StatusCode, details: str = "",
         trailing: Iterable[tuple[str, Any]] = ()) -> pb.Frame:
    return pb.Frame(call_id=call_id, end=pb.CallEnd(
        code=code.value[0], details=details, trailing_metadata=_entries(trailing)))


# -- requests without a task switch ---------------------------------------------

T = TypeVar("T")


class Feed(Generic[T]):
    """A request stream the caller puts into without awaiting.

    Passed as the request iterator of a call on a trunk, every `put` goes
    straight out as a frame: no queue, no task switch per message. On a
    gRPC stream it is an async iterator over a queue of at most `maxsize`
    items (`put` raises asyncio.QueueFull beyond), where `merge(a, b)`, if
    given, joins items that waited together (None: they stay apart).
    """

    def __init__(self, maxsize: int, merge: Callable[[T, T], T | None] | None = None) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        self._maxsize = maxsize
        self._merge = merge
        self._send: Callable[[T], None] | None = None
        self._half_close: Callable[[], None] | None = None
        self._closed = False

    def put(self, item: T) -> None:
        if self._closed:
            return
        if self._send is not None:
            self._send(item)
        elif self._queue.qsize() >= self._maxsize:
            raise asyncio.QueueFull
        else:
            self._queue.put_nowait(item)

    def close(self) -> None:
        """No more items (the call is half-closed after those already put)."""
        if self._closed:
            return
        self._closed = True
        if self._half_close is not None:
            self._half_close()
        else:
            self._queue.put_nowait(None)  # past maxsize: the end always fits

    def _bind(self, send: Callable[[T], None], half_close: Callable[[], None]) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                half_close()
                return
            send(item)
        self._send, self._half_close = send, half_close

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        held: T | None = None
        while True:
            item = held if held is not None else await self._queue.get()
            held = None
            if item is None:
                return
            while self._merge is not None and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    yield item
                    return
                merged = self._merge(item, more)
                if merged is None:
                    held = more
                    break
                item = merged
            yield item


async def each(requests: AsyncIterable[T], on_request: Callable[[T], None]) -> None:
    """Calls `on_request` with every request of a call, in order, until the
    caller half-closes: on a trunk, synchronously as each frame arrives (in
    the handler's context, no task switch); else as the iterator yields.
    An exception from `on_request` ends the reading and is raised here."""
    if isinstance(requests, _TrunkRequests):
        await requests.consume(on_request)
        return
    async for request in requests:
        on_request(request)


# -- the caller's side ---------------------------------------------------------


class TrunkCall:
    """A bidirectional call on a trunk, shaped like `grpc.aio.StreamStreamCall`:
    `write`, `done_writing`, `cancel`, and `async for` over the responses
    (which raises `grpc.aio.AioRpcError` when the call ends with an error)."""

    def __init__(self, link: _Link, call_id: int, serializer: _Serializer,
                 deserializer: _Deserializer) -> None:
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
        self._link.send(_end(self._id, grpc.StatusCode.CANCELLED))
        self._finish(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        return True

    def done(self) -> bool:
        return self._done

    def _put(self, request: Any) -> None:
        """`send` for a Feed: nothing once the call is over (like items nobody reads)."""
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
                self._link.send(_end(self._id, grpc.StatusCode.RESOURCE_EXHAUSTED))
                self._finish(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the caller fell {MAX_PENDING} responses behind the server; "
                             "the call was ended")
                return
            self._responses.put_nowait(frame.message)
        elif kind == "end":
            self._finish(_code(frame.end.code), frame.end.details,
                         _metadata(frame.end.trailing_metadata))

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
            self._link.send(_end(self._id, grpc.StatusCode.DEADLINE_EXCEEDED))
            self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


class _Link:
    """One open Carry call and the trunk calls on it."""

    def __init__(self, stub: pb_grpc.TrunkServiceStub,
                 on_unimplemented: Callable[[], None], linger_s: float) -> None:
        self._on_unimplemented = on_unimplemented
        self.outbox = _Outbox(linger_s)
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

    def open(self, method: str, serializer: _Serializer, deserializer: _Deserializer,
             metadata: Sequence[tuple[str, Any]], timeout: float | None) -> TrunkCall:
        self._next_id += 1
        call = TrunkCall(self, self._next_id, serializer, deserializer)
        self.calls[self._next_id] = call
        meta = list(metadata)
        if cid := logs.correlation_id.get():
            meta.append((rpc.CORRELATION_HEADER, cid))
        call.span = tracing.client_span(method, meta)
        start = pb.CallStart(method=method, metadata=_entries(meta))
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
                for frame in _received(response.frames):
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

    def __init__(self, owner: TrunkedChannel, method: str, serializer: _Serializer,
                 deserializer: _Deserializer) -> None:
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
        if isinstance(request_iterator, Feed):
            request_iterator._bind(call._put, call.half_close)
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

    def __init__(self, owner: TrunkedChannel, method: str, serializer: _Serializer,
                 deserializer: _Deserializer, plain: Any, streaming: bool) -> None:
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
        self.linger_s = _checked_linger(linger_s)
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

    def stream_stream(self, method: str, request_serializer: _Serializer | None = None,
                      response_deserializer: _Deserializer | None = None,
                      **_: Any) -> _TrunkMethod:
        assert request_serializer is not None and response_deserializer is not None
        return _TrunkMethod(self, method, request_serializer, response_deserializer)

    def unary_unary(self, method: str, request_serializer: _Serializer | None = None,
                    response_deserializer: _Deserializer | None = None,
                    **kwargs: Any) -> _TrunkUnaryMethod:
        assert request_serializer is not None and response_deserializer is not None
        return _TrunkUnaryMethod(self, method, request_serializer, response_deserializer,
                                 self.channel.unary_unary(method, request_serializer,
                                                          response_deserializer, **kwargs),
                                 streaming=False)

    def unary_stream(self, method: str, request_serializer: _Serializer | None = None,
                     response_deserializer: _Deserializer | None = None,
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
    linger_s = _checked_linger(linger_s)  # before a channel is opened
    return TrunkedChannel(rpc.channel(address, retry=retry), linger_s)


# -- the server's side ---------------------------------------------------------


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
        self.requests: asyncio.Queue[bytes | None] = asyncio.Queue()
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
            if self.requests.qsize() >= MAX_PENDING:
                self._trunk.outbox.put(_end(
                    self._id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server fell {MAX_PENDING} requests behind the caller; the call was ended"))
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
        end: pb.Frame | None = _end(self._id, grpc.StatusCode.OK)
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
            outbox.put(_end(self._id, code, self._details if code is not grpc.StatusCode.OK else "",
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
    iterator, or, through `each()`, requests handed over as frames arrive."""

    def __init__(self, call: ServerCall, deserialize: _Deserializer) -> None:
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
            except Exception as e:  # noqa: BLE001 - raised in the handler, by `each`
                done.set_exception(e)

        call.on_request = take
        try:
            await done
        finally:
            call.on_request = None


class _ServerTrunk:
    """The server's end of one Carry call."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler], peer: str) -> None:
        self.handlers, self.peer = handlers, peer
        self.outbox = _Outbox()
        self.calls: dict[int, ServerCall] = {}

    async def read(self, batches: AsyncIterator[pb.CarryRequest]) -> None:
        try:
            async for batch in batches:
                for frame in _received(batch.frames):
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
            self.outbox.put(_end(call_id, grpc.StatusCode.UNIMPLEMENTED,
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
        trunk = _ServerTrunk(self._handlers, context.peer())
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
