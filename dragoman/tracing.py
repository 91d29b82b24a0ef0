"""OpenTelemetry traces: a span per gRPC call served and made, exported over OTLP.

Off by default. With `[tracing] otlp_endpoint` set (an OTLP/gRPC collector,
e.g. Jaeger's http://jaeger:4317), every server from `rpc.new_server()` and
every channel from `rpc.channel()` in the process traces its calls, and the
W3C trace context travels in the gRPC metadata, so one conversation's calls
through gateway -> session_svc -> stt/mt/tts form one trace. Health checks
and reflection are not traced. Calls on a trunk (dragoman.mux) get their
spans here (`client_span`, `server_span`), not from the interceptors, which
leave the trunk's own long-lived Carry call alone. `configure()` runs before the services are
built (each service's `serve()`); its return value flushes and stops the export.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from dragoman.config import TracingSettings

if TYPE_CHECKING:  # OpenTelemetry loads only when tracing is on: about a second of every
    # service's start-up otherwise (bench/results/chaos.md)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def _untraced() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(
        filters.service_prefix("grpc.health."), filters.service_prefix("grpc.reflection."),
        filters.service_prefix("dragoman.trunk.")))


def configure(settings: TracingSettings, service: str) -> Callable[[], None]:
    """Turns tracing on for this process when `settings` name an endpoint.
    Returns what flushes and stops it."""
    global _provider
    if not settings.otlp_endpoint:
        return lambda: None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=settings.insecure)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"dragoman-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    log.info("tracing to %s", settings.otlp_endpoint, extra={"sample_ratio": settings.sample_ratio})

    def stop() -> None:
        global _provider
        provider.shutdown()  # flushes what is queued
        if _provider is provider:
            _provider = None

    return stop


def server_interceptors() -> list[Any]:
    """What `rpc.new_server()` puts first: a span per call served, when tracing is on."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_untraced())]


def client_interceptors() -> list[Any]:
    """What `rpc.channel()` adds: a span per call made, the context in its metadata."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_untraced()))


def _attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def client_span(method: str, metadata: MutableSequence[tuple[str, str]]) -> trace.Span | None:
    """A client span for a call on a trunk, its context added to `metadata`
    (None when tracing is off). End it with `end_span`."""
    if _provider is None:
        return None
    from opentelemetry import propagate, trace

    span = _provider.get_tracer(__name__).start_span(
        method, kind=trace.SpanKind.CLIENT, attributes=_attributes(method))
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata.extend(carrier.items())
    return span


def end_span(span: trace.Span | None, code: grpc.StatusCode) -> None:
    if span is None:
        return
    from opentelemetry import trace

    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()


@contextlib.contextmanager
def server_span(method: str, metadata: Sequence[tuple[str, str]]) -> Iterator[trace.Span | None]:
    """The current span while a call on a trunk is served, a child of the
    caller's (from `metadata`); None when tracing is off."""
    if _provider is None:
        yield None
        return
    from opentelemetry import propagate, trace

    with _provider.get_tracer(__name__).start_as_current_span(
            method, context=propagate.extract(dict(metadata)), kind=trace.SpanKind.SERVER,
            attributes=_attributes(method), record_exception=False,
            set_status_on_exception=False) as span:
        yield span
