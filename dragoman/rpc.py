"""gRPC plumbing shared by every service: the server frame and client channels.

A service is built with `Service.serving()` on a `new_server()`, which installs the
one interceptor that (1) puts rpc and correlation ids into the logging
context and (2) maps `DragomanError` to its status. `Service.start()` binds
(mutual TLS only, when the service has `tls`: dragoman.tls),
adds health (and reflection, when settings.reflection) and marks the service SERVING; `Service.stop()`
enters graceful shutdown (health NOT_SERVING, in-flight calls get the grace
period). `serve_forever()` runs a service until SIGTERM or SIGINT.
`Feed` (requests put without awaiting) and `each()` (requests handed to a
callback) work on any call; on a trunk (dragoman.mux) neither costs a task
switch per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dragoman import config, logs, metrics, tracing
from dragoman.errors import (
    RETRY_AFTER,
    DeadlineExceeded,
    DragomanError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

if TYPE_CHECKING:  # tls (cryptography) and triton_client (numpy) load when used: every
    # service imports this module, and its start-up is a restart's downtime
    # (bench/results/chaos.md)
    from dragoman.tls import MeshTls

log = logging.getLogger(__name__)

CORRELATION_HEADER = "x-correlation-id"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_T = TypeVar("_T")


async def first_request(requests: AsyncIterator[_T], timeout_s: float) -> _T | None:
    """The first message of a Converse stream (None if it closed first); DEADLINE_EXCEEDED
    when none came within `timeout_s`, so a stream opened and never written does not stay open."""
    try:
        return await asyncio.wait_for(anext(aiter(requests), None), timeout_s)
    except TimeoutError:
        raise DeadlineExceeded(
            f"no `join` within {timeout_s:g} s of opening the stream (session.join_timeout_s)"
        ) from None


def _database_down(err: Exception) -> bool:
    """The database connection was lost or could not be made (a restart, a failover):
    psycopg's OperationalError, the pool's PoolTimeout among them. Asked of sys.modules,
    so that services without a database do not import psycopg for it."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(err, psycopg.OperationalError)


async def _abort(context: grpc.aio.ServicerContext, err: Exception, method: str) -> None:
    if _database_down(err):
        log.warning("database unavailable (%s): %s", type(err).__name__, err)
        err = Unavailable("the database is unavailable; retry shortly")
    if isinstance(err, DragomanError):
        trailers: tuple[tuple[str, str], ...] = ()
        if isinstance(err, ResourceExhausted):
            trailers = ((RETRY_AFTER, f"{err.retry_after_s:.3f}"),)
        log.info("rpc failed", extra={"code": err.code.name, "reason": err.message})
        await context.abort(err.code, err.message, trailing_metadata=trailers)
    if isinstance(err, NotImplementedError):  # a method of the API this server does not serve yet
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server")
    ref = uuid.uuid4().hex[:12]
    log.exception("unexpected error (ref %s)", ref)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")


def _status(context: grpc.aio.ServicerContext, err: BaseException | None) -> str:
    """The status code a call ended with, for the metrics: the error's, else the one the
    handler set on `context` (abort included), else OK or, for any other exception, INTERNAL."""
    if isinstance(err, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(err, DragomanError):
        return err.code.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if err is None else "INTERNAL"


class _Measured:
    """In-flight gauge, duration and status count of one call."""

    def __init__(self, method: str) -> None:
        self.service, self.method = metrics.split_method(method)
        self.started = time.perf_counter()
        metrics.RPC_IN_FLIGHT.labels(self.service, self.method).inc()

    def done(self, context: grpc.aio.ServicerContext, err: BaseException | None) -> None:
        metrics.RPC_IN_FLIGHT.labels(self.service, self.method).dec()
        metrics.RPC_DURATION.labels(self.service, self.method).observe(
            time.perf_counter() - self.started)
        metrics.RPC_REQUESTS.labels(self.service, self.method, _status(context, err)).inc()


def duration(seconds: float) -> Duration:
    """`seconds` as a Duration, to the nearest nanosecond; a negative span (stamps
    taken on clocks that disagree) reads as zero."""
    out = Duration()
    out.FromNanoseconds(round(max(seconds, 0.0) * 1e9))
    return out


def text_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The text entries of a call's metadata."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


class _Undecodable:
    """A request whose bytes did not parse: the handler answers INVALID_ARGUMENT
    (grpc itself would answer UNKNOWN or INTERNAL)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = getattr(message_type, "full_name", "message")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - DecodeError, or what a custom deserializer raises
            return _Undecodable(f"the request is not a serialized {name} ({len(data)} bytes)")

    return parse


def _parsed(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(request.message)
    return request


class _Parsed:
    """A request stream that raises InvalidArgument at a request that did not parse."""

    def __init__(self, requests: AsyncIterable[Any]) -> None:
        self._requests = requests
        self._iterator: AsyncIterator[Any] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        # one iterator, as a call's own request stream is: readers take turns on it
        if self._iterator is None:
            self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncIterator[Any]:
        async for request in self._requests:
            yield _parsed(request)


class _ParsedConsumable(_Parsed):
    """`_Parsed` of a `Consumable` stream (a call on a trunk), still consumable."""

    async def consume(self, on_request: Callable[[Any], None]) -> None:
        await self._requests.consume(lambda request: on_request(_parsed(request)))  # type: ignore[attr-defined]


def _parsed_stream(requests: AsyncIterable[Any]) -> _Parsed:
    return _ParsedConsumable(requests) if isinstance(requests, Consumable) else _Parsed(requests)


def wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> Any:
    """`handler` with rpc and correlation ids in the log context, DragomanError
    mapped to its status, a request that does not parse refused with
    INVALID_ARGUMENT, and the call's metrics (every call a service serves, on a
    trunk too, goes through this)."""
    def enter(context: grpc.aio.ServicerContext) -> _Measured:
        meta = text_metadata(context)
        logs.rpc_id.set(uuid.uuid4().hex[:12])
        logs.correlation_id.set(meta.get(CORRELATION_HEADER) or uuid.uuid4().hex)
        return _Measured(method)

    def arrived(request: Any) -> Any:
        return _parsed(request) if streaming_requests is None else _parsed_stream(request)

    def unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            measured, failure = enter(context), None
            try:
                return await fn(arrived(request), context)
            except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                failure = e
                raise
            except Exception as e:  # noqa: BLE001 - the one place errors map to statuses
                failure = e
                await _abort(context, e, method)
            finally:
                measured.done(context, failure)

        return call

    def streaming(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            measured, failure = enter(context), None
            try:
                async for item in fn(arrived(request), context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit) as e:
                failure = asyncio.CancelledError() if isinstance(e, GeneratorExit) else e
                raise
            except Exception as e:  # noqa: BLE001
                failure = e
                await _abort(context, e, method)
            finally:
                measured.done(context, failure)

        return call

    streaming_requests = handler.stream_unary or handler.stream_stream
    kwargs = {
        "request_deserializer": _lenient(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kwargs)


class ContextInterceptor(grpc.aio.ServerInterceptor):
    """Request ids into the log context; DragomanError into gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith("/grpc."):
            return handler
        return wrap_handler(handler, handler_call_details.method)


class CorrelationClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Forwards the current correlation id to downstream services."""

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        cid = logs.correlation_id.get()
        if not cid:
            return details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(CORRELATION_HEADER, cid)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)


KEEPALIVE_MS = 30_000
"""How often a client pings an idle connection (and how often a server lets it)."""


RECONNECT_BACKOFF_MS = (100, 1000)
"""A channel's wait before reconnecting to a lost server: first, and at most. gRPC's
own (1 s growing to 120 s) would leave a restarted service unused for seconds."""


def channel_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, int]]:
    """Options for a channel to a dragoman server: message limits, keepalive pings
    and reconnection backoff."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
    ]


def server_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, int]]:
    """Options for a dragoman server.

    gRPC servers by default accept a ping without data only every 5 minutes
    and answer the third early one with GOAWAY "too_many_pings", which drops
    every call on the connection. Our channels ping every `keepalive_ms`, so
    the server must accept that (with margin for timer jitter). The server
    pings idle clients itself at twice that period, so a vanished peer's
    streams are torn down rather than held forever.
    """
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", keepalive_ms // 2),
        ("grpc.keepalive_time_ms", 2 * keepalive_ms),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


CHANNEL_OPTIONS = channel_options()


def retry_policy(services: Sequence[str], attempts: int = 3) -> str:
    """A gRPC service config retrying the `services`' calls on UNAVAILABLE.

    Only for idempotent calls: gRPC replays a call that failed before the
    server answered (a replica restarting, a connection closed by GOAWAY),
    with jittered backoff, and never once a response has begun.
    """
    return json.dumps({"methodConfig": [{
        "name": [{"service": s} for s in services],
        "retryPolicy": {
            "maxAttempts": attempts,
            "initialBackoff": "0.05s",
            "maxBackoff": "0.5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]})


def channel(address: str, retry: Sequence[str] = (), *, tls: MeshTls | None = None,
            server_role: str = "") -> grpc.aio.Channel:
    """A channel to an internal service, forwarding correlation ids.

    `retry` names the services (full proto names) whose calls are idempotent
    and retried on UNAVAILABLE. With `tls` the channel is mutual TLS and
    connects only to a server holding a certificate of `server_role`;
    without, plain text.
    """
    options: list[tuple[str, int | str]] = [*CHANNEL_OPTIONS]
    if retry:
        options.append(("grpc.service_config", retry_policy(retry)))
    interceptors = [*tracing.client_interceptors(), CorrelationClientInterceptor()]
    if tls is not None:
        options += tls.channel_options(server_role)
        return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


async def wait_serving(address: str, timeout_s: float = 60.0, service: str = "", *,
                       tls: MeshTls | None = None, server_role: str = "") -> None:
    """Waits until the server at `address` reports SERVING on gRPC health (over
    mutual TLS with `tls`, to a server of `server_role`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    ch = (grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) if tls is None
          else grpc.aio.secure_channel(address, tls.channel_credentials(),
                                       options=[*CHANNEL_OPTIONS, *tls.channel_options(server_role)]))
    async with ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"{address} not SERVING after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)


LIVENESS = "dragoman.liveness"
"""A health service name SERVING while the process serves, whatever holds the service
NOT_SERVING (`Service.hold`): for liveness and startup probes, which must not restart
a replica, and end its sessions, because a service it calls is down."""

Registration = tuple[Callable[[Any, Any], None], Any]
"""A generated add_*Servicer_to_server function and the servicer it adds."""


@dataclass
class Service:
    """A gRPC server with health, optional reflection and graceful shutdown."""

    name: str
    server: grpc.aio.Server
    service_names: Sequence[str]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run after the server stopped (close channels, engines)."""
    on_drain: list[Callable[[float], Awaitable[None]]] = field(default_factory=list)
    """Run on shutdown while calls are still served; get the grace period."""
    health: health.aio.HealthServicer = field(default_factory=health.aio.HealthServicer)
    port: int = 0
    reflection: bool = False
    """Serve gRPC reflection (settings.reflection): off, it lists no API to strangers."""
    tls: MeshTls | None = None
    """Take only mutual TLS with these credentials (dragoman.tls); None: plain text."""
    health_address: str = ""
    """With `tls`: where a plain-text server of health alone listens, for probes
    without a certificate (settings tls.health_address); empty: none."""
    health_port: int = 0
    """The port of health alone, once started."""
    _health_server: grpc.aio.Server | None = None
    holds: dict[str, str] = field(default_factory=dict)
    """Why the service is NOT_SERVING now, by who holds it there (see `hold`)."""

    @classmethod
    def serving(cls, name: str, servicers: Sequence[Registration], service_names: Sequence[str],
                *, trunk: bool = True, engines: Iterable[object] = (),
                tls: MeshTls | None = None) -> Service:
        """A service on a `new_server()` serving `servicers`, whose services are
        `service_names`, and on a trunk too (dragoman.mux) unless `trunk` is false;
        NOT_SERVING while a Triton-backed one of `engines` is not ready; mutual
        TLS only with `tls`."""
        server, names = new_server(), [*service_names]
        if trunk:
            from dragoman import mux  # mux builds on this module
            names.append(mux.add_to_server(server, servicers))
        else:
            for add, servicer in servicers:
                add(servicer, server)
        service = cls(name, server, names, tls=tls)
        if engines:
            from dragoman import triton_client

            triton_client.watch_health(service, engines)
        return service

    async def start(self, address: str) -> int:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if self.reflection:
            from grpc_reflection.v1alpha import reflection  # off by default: not loaded then

            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        if self.tls is not None:
            self.port = self.server.add_secure_port(address, self.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot bind {address}")
        await self.server.start()
        if self.tls is not None and self.health_address:
            self._health_server = grpc.aio.server(options=server_options())
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            self.health_port = self._health_server.add_insecure_port(self.health_address)
            if self.health_port == 0:
                raise OSError(f"{self.name}: cannot bind {self.health_address} (tls.health_address)")
            await self._health_server.start()
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self._set_health()
        log.info("%s serving", self.name, extra={"address": address, "port": self.port})
        return self.port

    async def hold(self, key: str, reason: str | None) -> None:
        """Keeps the service's health NOT_SERVING for `reason` (e.g. a dependency is
        down) until the same `key` holds it with None; SERVING once nothing holds it."""
        if reason:
            self.holds[key] = reason
        else:
            self.holds.pop(key, None)
        if self.port:  # else start() sets it
            await self._set_health()

    async def _set_health(self) -> None:
        serving = health_pb2.HealthCheckResponse
        status = None
        while status != (status := serving.NOT_SERVING if self.holds else serving.SERVING):
            for name in ("", *self.service_names):  # holds may change meanwhile: until settled
                await self.health.set(name, status)

    def background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Runs `work` as a task while the service runs; cancelled on stop."""
        task = asyncio.create_task(work, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.on_stop.append(cancel)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        for drain in self.on_drain:
            await drain(grace_s)
        await self.server.stop(grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)
        for cleanup in self.on_stop:
            await cleanup()


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.to_thread(fn)
    return run


def new_server(keepalive_ms: int = KEEPALIVE_MS) -> grpc.aio.Server:
    return grpc.aio.server(interceptors=[*tracing.server_interceptors(), ContextInterceptor()],
                           options=server_options(keepalive_ms))


EVENT_LOOPS = ("uvloop", "asyncio")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What `asyncio.Runner` makes its loop with for settings.event_loop `name`
    (None: the standard library's)."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise InvalidArgument(
                'event_loop is "uvloop" but uvloop is not installed: install it, or set '
                "DRAGOMAN_EVENT_LOOP=asyncio") from None
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    raise InvalidArgument(
        f"setting event_loop: expected one of {', '.join(EVENT_LOOPS)}, got {name!r}")


def main(serve: Callable[[config.Settings], Coroutine[Any, Any, None]]) -> None:
    """A service process: reads the settings, then runs `serve(settings)` on
    the event loop they name."""
    settings = config.load()
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings))


GC_THRESHOLDS = (20_000, 10, 10)
"""The cyclic collector's thresholds in a service (Python's: 700, 10, 10): frames'
short-lived objects die before a pass sees them (bench/results/gc_thresholds.md)."""


def tune_gc() -> None:
    """Readies the cyclic garbage collector of a built service, whose every pass
    holds the event loop and so delays every utterance in flight.

    - What exists once a service is built (modules, engines, servers) is frozen
      out of the collector's reach: it lives as long as the process anyway.
    - The thresholds become GC_THRESHOLDS.
    - Each pass is timed into dragoman_gc_pause_seconds, so the tail it adds can
      be seen in production.

    Measurements: bench/results/gc_thresholds.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    metrics.GC_PAUSES.install()


async def run(settings: config.Settings, name: str,
              create: Callable[[config.Settings], Awaitable[Service]]) -> None:
    """A service's whole life: tracing per `settings.tracing` (before its servers and
    channels are built), `create(settings)`, then `serve_forever` on the address
    and metrics address `settings` give `name`; the traces are flushed at the end."""
    stop_tracing = tracing.configure(settings.tracing, name)
    try:
        service = await create(settings)
        service.reflection = settings.reflection
        service.health_address = settings.tls.health_address
        tune_gc()
        await serve_forever(service, getattr(settings.addresses, name), settings.grace_period_s,
                            getattr(settings.metrics, name))
    finally:
        stop_tracing()


async def serve_forever(service: Service, address: str, grace_s: float,
                        metrics_address: str = "") -> None:
    """Runs `service` until SIGTERM/SIGINT, then shuts down gracefully.

    With `metrics_address`, Prometheus metrics are served there meanwhile.
    """
    if metrics_address:
        _, stop_metrics = metrics.serve(metrics_address)
        service.on_stop.append(_async(stop_metrics))
    await service.start(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s draining (grace %.1f s)", service.name, grace_s)
    await service.stop(grace_s)


# -- request streams, whichever transport carries them ---------------------------

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Bindable(Protocol[T_co]):
    """A request stream a call may take over instead of reading it: after
    `bind(send, half_close)` each item goes to `send` as it is put (those
    waiting first), and its end to `half_close`. A call on a trunk
    (dragoman.mux) does, so requests go out without a task switch each."""

    def bind(self, send: Callable[[T_co], None], half_close: Callable[[], None]) -> None: ...


@runtime_checkable
class Consumable(Protocol[T_co]):
    """A request stream that hands each request to a callback as it arrives,
    until the caller half-closes (a call's on a trunk); see `each`."""

    async def consume(self, on_request: Callable[[T_co], None]) -> None: ...


class Feed(Generic[T]):
    """A bounded request stream the caller puts into without awaiting.

    Passed as the request iterator of a call that binds it (`Bindable`: a
    call on a trunk), every `put` goes straight out: no queue, no task
    switch per message. On a gRPC stream it is an async iterator over a
    queue of at most `maxsize` items (`put` raises asyncio.QueueFull
    beyond), where `merge(a, b)`, if given, joins items that waited
    together (None: they stay apart).
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

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def room(self) -> int:
        """How many more items `put` takes before raising asyncio.QueueFull (on a
        call that binds it, as many as it sends: `maxsize`)."""
        return self._maxsize if self._send is not None else self._maxsize - self._queue.qsize()

    def close(self) -> None:
        """No more items (the call is half-closed after those already put)."""
        if self._closed:
            return
        self._closed = True
        if self._half_close is not None:
            self._half_close()
        else:
            self._queue.put_nowait(None)  # past maxsize: the end always fits

    def bind(self, send: Callable[[T], None], half_close: Callable[[], None]) -> None:
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
    caller half-closes: synchronously as each arrives where the stream is
    `Consumable` (on a trunk: in the handler's context, no task switch), else
    as the iterator yields. An exception from `on_request` ends the reading
    and is raised here."""
    if isinstance(requests, Consumable):
        await requests.consume(on_request)
        return
    async for request in requests:
        on_request(request)
