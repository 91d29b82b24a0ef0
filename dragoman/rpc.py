"""gRPC plumbing shared by every service: the server frame and client channels.

A service builds a `grpc.aio.Server` with `new_server()`, which installs the
one interceptor that (1) puts rpc and correlation ids into the logging
context and (2) maps `DragomanError` to its status. `Service.start()` binds,
adds health (and reflection, when settings.reflection) and marks the service SERVING; `Service.stop()`
enters graceful shutdown (health NOT_SERVING, in-flight calls get the grace
period). `serve_forever()` runs a service until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dragoman import config, logs, metrics, tracing
from dragoman.errors import (
    RETRY_AFTER,
    DeadlineExceeded,
    DragomanError,
    InvalidArgument,
    ResourceExhausted,
)

log = logging.getLogger("dragoman.rpc")

CORRELATION_HEADER = "x-correlation-id"
# Identity the gateway asserts to session_svc after checking the access token.
# The gateway drops these headers from anything a client sends.
USER_ID_HEADER = "x-dragoman-user-id"
USER_NAME_HEADER = "x-dragoman-user-name"
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


async def _abort(context: grpc.aio.ServicerContext, err: Exception) -> None:
    if isinstance(err, DragomanError):
        trailers: tuple[tuple[str, str], ...] = ()
        if isinstance(err, ResourceExhausted):
            trailers = ((RETRY_AFTER, f"{err.retry_after_s:.3f}"),)
        log.info("rpc failed", extra={"code": err.code.name, "reason": err.message})
        await context.abort(err.code, err.message, trailing_metadata=trailers)
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


def text_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The text entries of a call's metadata."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> Any:
    """`handler` with rpc and correlation ids in the log context, DragomanError
    mapped to its status, and the call's metrics (every call a service serves,
    on a trunk too, goes through this)."""
    def enter(context: grpc.aio.ServicerContext) -> _Measured:
        meta = text_metadata(context)
        logs.rpc_id.set(uuid.uuid4().hex[:12])
        logs.correlation_id.set(meta.get(CORRELATION_HEADER) or uuid.uuid4().hex)
        return _Measured(method)

    def unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            measured, failure = enter(context), None
            try:
                return await fn(request, context)
            except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                failure = e
                raise
            except Exception as e:  # noqa: BLE001 - the one place errors map to statuses
                failure = e
                await _abort(context, e)
            finally:
                measured.done(context, failure)

        return call

    def streaming(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            measured, failure = enter(context), None
            try:
                async for item in fn(request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit) as e:
                failure = asyncio.CancelledError() if isinstance(e, GeneratorExit) else e
                raise
            except Exception as e:  # noqa: BLE001
                failure = e
                await _abort(context, e)
            finally:
                measured.done(context, failure)

        return call

    kwargs = {
        "request_deserializer": handler.request_deserializer,
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


def channel_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, int]]:
    """Options for a channel to a dragoman server: message limits and keepalive pings."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
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


def channel(address: str, retry: Sequence[str] = ()) -> grpc.aio.Channel:
    """An insecure channel to an internal service, forwarding correlation ids.

    `retry` names the services (full proto names) whose calls are idempotent
    and retried on UNAVAILABLE.
    """
    options: list[tuple[str, int | str]] = [*CHANNEL_OPTIONS]
    if retry:
        options.append(("grpc.service_config", retry_policy(retry)))
    return grpc.aio.insecure_channel(
        address, options=options,
        interceptors=[*tracing.client_interceptors(), CorrelationClientInterceptor()],
    )


async def wait_serving(address: str, timeout_s: float = 60.0, service: str = "") -> None:
    """Waits until the server at `address` reports SERVING on gRPC health."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(address) as ch:
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

    async def start(self, address: str) -> int:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if self.reflection:
            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot bind {address}")
        await self.server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving", self.name, extra={"address": address, "port": self.port})
        return self.port

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
"""The cyclic collector's thresholds in a service (Python's default: 700, 10, 10).

A young-generation pass runs after 20,000 net container allocations instead of
700, so the short-lived objects of a frame (messages, futures, tasks) are mostly
gone before any pass looks at them, and far fewer are promoted into the older
generations whose passes are long. session_svc at N=200 (bench.load
--session-svc), three alternating A/B pairs: p99 added latency 46, 48 and 51 ms
against 63, 72 and 57; 41-62 ms of collector pauses per run (5-6 young passes,
nothing older) against 250-420 ms (about 170 young passes, 15 middle ones of
4-8 ms, a full one of 31-53 ms). The passes find next to no garbage (a whole
N=200 run left 735 unreachable objects, all from imports): the frame path makes
no reference cycles, so rarer passes hold no more memory. A full pass still
follows every 10 middle ones once the survivors grow by a quarter. Those A/B
runs were 20 s long: over longer ones a middle pass came about once a minute
and took 130-160 ms at 200-300 sessions, walking the events session_svc keeps
for resumption, until the event logs held them serialized (session_svc.events)."""


def tune_gc() -> None:
    """Readies the cyclic garbage collector of a built service, whose every pass
    holds the event loop and so delays every utterance in flight.

    - What exists once a service is built (modules, engines, servers: over half
      the objects a loaded service tracks) is frozen out of the collector's
      reach; these objects live as long as the process anyway. Under load in
      session_svc a full pass over them was a 60-80 ms stall every half minute.
    - The thresholds become GC_THRESHOLDS.
    - Each pass is timed into dragoman_gc_pause_seconds, so the tail it adds can
      be seen in production."""
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
