"""Traces over OTLP: a call that crosses two services is one trace, exported to a
real OTLP/gRPC receiver on loopback (the collector's own protocol)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from dragoman import config, mux, rpc, tracing
from tests.helpers import free_ports

SERVICE = "test.Relay"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """What a collector (Jaeger, the OpenTelemetry collector) receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, Any]]:
        """(service.name, span) of everything received."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out.extend((attrs.get("service.name", ""), span) for span in scope.spans)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    collector = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield collector, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _add(handler: Any, server: Any) -> None:
    handlers = {"Say": grpc.unary_unary_rpc_method_handler(handler)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_registered_method_handlers(SERVICE, handlers)


async def _serve(handler: Any) -> tuple[grpc.aio.Server, str]:
    server = rpc.new_server()
    mux.add_to_server(server, [(_add, handler)])  # served plain and on a trunk
    (port,) = free_ports(1)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("trunk", [False, True], ids=["stream", "trunk"])
async def test_a_call_across_two_services_is_one_trace(
        receiver: tuple[Receiver, str], trunk: bool) -> None:
    """The hop between the services on its own gRPC call, or on a trunk
    (whose long-lived Carry call is not a span: each call on it is)."""
    collector, endpoint = receiver
    stop = tracing.configure(config.TracingSettings(otlp_endpoint=endpoint), "test")
    servers = []
    try:
        async def inner(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request.upper()

        inner_server, inner_address = await _serve(inner)
        servers.append(inner_server)
        downstream = mux.channel(inner_address, trunk=trunk)

        async def outer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            reply: bytes = await downstream.unary_unary(
                f"/{SERVICE}/Say", request_serializer=bytes, response_deserializer=bytes)(request)
            return reply

        outer_server, outer_address = await _serve(outer)
        servers.append(outer_server)
        async with grpc.aio.insecure_channel(outer_address) as client:
            assert await client.unary_unary(f"/{SERVICE}/Say")(b"hola") == b"HOLA"
        await downstream.close()
    finally:
        for server in servers:
            await server.stop(0)
        await asyncio.to_thread(stop)  # flushes the batch to the receiver
    spans = collector.spans()
    assert {name for name, _ in spans} == {"dragoman-test"}
    by_kind: dict[int, list[Any]] = {}
    for _, span in spans:
        by_kind.setdefault(span.kind, []).append(span)
    servers_, clients = by_kind[2], by_kind[3]  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    assert len(servers_) == 2 and len(clients) == 1
    assert len({s.trace_id for _, s in spans}) == 1, "the context did not travel"
    (call,) = clients
    inner_span = next(s for s in servers_ if s.parent_span_id == call.span_id)
    outer_span = next(s for s in servers_ if s is not inner_span)
    assert call.parent_span_id == outer_span.span_id
    assert inner_span.name == outer_span.name == f"/{SERVICE}/Say"


async def test_off_by_default_nothing_is_traced(receiver: tuple[Receiver, str]) -> None:
    collector, _ = receiver
    stop = tracing.configure(config.TracingSettings(), "test")
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server, address = await _serve(echo)
    try:
        async with grpc.aio.insecure_channel(address) as client:
            assert await client.unary_unary(f"/{SERVICE}/Say")(b"x") == b"x"
    finally:
        await server.stop(0)
        stop()
    assert collector.spans() == []
