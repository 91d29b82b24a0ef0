"""OpenTelemetry traces: a span per gRPC call served and made, exported over OTLP.

Off by default. With `[tracing] otlp_endpoint` set (an OTLP/gRPC collector,
e.g. Jaeger's http://jaeger:4317), every server from `rpc.new_server()` and
every channel from `rpc.channel()` in the process traces its calls, and the
W3C trace context travels in the gRPC metadata, so one conversation's calls
through gateway -> session_svc -> stt/mt/tts form one trace. Health checks
and reflection are not traced. `configure()` runs before the services are
built (each service's `serve()`); its return value flushes and stops the export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from dragoman.config import TracingSettings

log = logging.getLogger("dragoman.tracing")

_provider: TracerProvider | None = None
_UNTRACED = filters.negate(filters.any_of(
    filters.service_prefix("grpc.health."), filters.service_prefix("grpc.reflection.")))


def configure(settings: TracingSettings, service: str) -> Callable[[], None]:
    """Turns tracing on for this process when `settings` name an endpoint.
    Returns what flushes and stops it."""
    global _provider
    if not settings.otlp_endpoint:
        return lambda: None
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
    return [aio_server_interceptor(tracer_provider=_provider, filter_=_UNTRACED)] if _provider else []


def client_interceptors() -> list[Any]:
    """What `rpc.channel()` adds: a span per call made, the context in its metadata."""
    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_UNTRACED)) if _provider else []
