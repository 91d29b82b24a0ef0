"""Keepalive between dragoman channels and servers.

CI once lost a synthesis call to GOAWAY "too_many_pings": the channels pinged
every 30 s and the servers kept gRPC's default of one ping per 5 minutes.
These tests scale the period down to a second and hold a connection idle for
several pings, on a dragoman server and (to show the test can fail) on a
server with gRPC's defaults.
"""

import asyncio
import gc

import grpc
import psycopg
import pytest
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dragoman import config, metrics, rpc
from dragoman.errors import InvalidArgument

KEEPALIVE_MS = 1000
IDLE_S = 5.0


async def _serve(server: grpc.aio.Server) -> tuple[rpc.Service, str]:
    service = rpc.Service("keepalive", server, ())
    port = await service.start("127.0.0.1:0")
    return service, f"127.0.0.1:{port}"


async def _idle_watch_then_check(address: str) -> health_pb2.HealthCheckResponse.ServingStatus:
    """Holds a health Watch open without data for IDLE_S, then reads it again."""
    async with grpc.aio.insecure_channel(address, options=rpc.channel_options(KEEPALIVE_MS)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await asyncio.sleep(IDLE_S)
        # the watch must still be open: a GOAWAY would have ended it
        assert not watch.done(), await watch.code()
        watch.cancel()
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return reply.status


@pytest.mark.slow
async def test_dragoman_server_accepts_the_channels_keepalive_pings() -> None:
    service, address = await _serve(rpc.new_server(KEEPALIVE_MS))
    try:
        assert await _idle_watch_then_check(address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await service.stop(0)


@pytest.mark.slow
async def test_a_server_with_grpc_defaults_drops_the_same_connection() -> None:
    service, address = await _serve(grpc.aio.server())
    try:
        dropped = "(?i)too many pings|GOAWAY|UNAVAILABLE"
        with pytest.raises((AssertionError, grpc.aio.AioRpcError), match=dropped):
            await _idle_watch_then_check(address)
    finally:
        await service.stop(0)


class _FlakyHealth(health_pb2_grpc.HealthServicer):
    """Answers UNAVAILABLE to the first `failures` Checks, then SERVING."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def Check(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _check_through(retry: list[str], failures: int) -> tuple[_FlakyHealth, grpc.aio.AioRpcError | None]:
    flaky = _FlakyHealth(failures)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with rpc.channel(f"127.0.0.1:{port}", retry=retry) as ch:
            try:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as e:
                return flaky, e
            return flaky, None
    finally:
        await server.stop(0)


async def test_a_retried_service_survives_a_brief_unavailability() -> None:
    flaky, error = await _check_through(["grpc.health.v1.Health"], failures=2)
    assert error is None and flaky.calls == 3


async def test_retries_are_bounded() -> None:
    flaky, error = await _check_through(["grpc.health.v1.Health"], failures=5)
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE and flaky.calls == 3


async def test_a_service_not_named_is_not_retried() -> None:
    flaky, error = await _check_through([], failures=1)
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE and flaky.calls == 1


def test_startup_objects_are_frozen_out_of_full_collections() -> None:
    """rpc.run freezes what a built service holds, so that the collector's
    full passes (which hold the event loop) walk only what came since."""
    class Model:  # something a service built at startup
        pass

    built = [Model() for _ in range(100)]
    thresholds = gc.get_threshold()
    try:
        rpc.tune_gc()
        assert gc.get_freeze_count() >= len(built)
        collected = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert not collected & {id(o) for o in built}
        assert gc.get_threshold() == rpc.GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        metrics.GC_PAUSES.uninstall()


def _gc_pauses() -> dict[tuple[str, str, str], float]:
    """dragoman_gc_pause_seconds as /metrics shows it: (series, generation, le) -> value."""
    registry = CollectorRegistry()
    registry.register(metrics.GC_PAUSES)
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {(s.name.removeprefix("dragoman_gc_pause_seconds"), s.labels["generation"],
             s.labels.get("le", "")): s.value for family in families for s in family.samples}


def test_collector_pauses_are_timed_by_generation() -> None:
    metrics.GC_PAUSES.install()
    metrics.GC_PAUSES.install()  # idempotent: a pass is counted once
    try:
        assert gc.callbacks.count(metrics.GC_PAUSES._on_gc) == 1
        before = _gc_pauses()
        gc.collect(2)
        gc.collect(1)
        after = _gc_pauses()
    finally:
        metrics.GC_PAUSES.uninstall()
    # at least: the parsing in between may set off passes of its own
    assert after["_count", "2", ""] - before["_count", "2", ""] >= 1
    assert after["_count", "1", ""] - before["_count", "1", ""] >= 1
    assert after["_sum", "2", ""] > before["_sum", "2", ""]
    assert after["_bucket", "2", "+Inf"] == after["_count", "2", ""]
    assert after["_bucket", "2", "0.25"] >= after["_bucket", "2", "0.0005"]  # cumulative
    gc.collect(2)  # uninstalled: no longer counted
    assert _gc_pauses()["_count", "2", ""] == after["_count", "2", ""]


def test_the_event_loop_is_a_setting_and_a_wrong_one_is_named() -> None:
    make = rpc.loop_factory("uvloop")
    assert make is not None
    loop = make()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert rpc.loop_factory("asyncio") is None
    with pytest.raises(InvalidArgument, match="expected one of uvloop, asyncio, got 'trio'"):
        rpc.loop_factory("trio")
    assert config.load(env={"DRAGOMAN_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    assert config.load(env={}).event_loop == "uvloop"


def test_durations_round_to_the_nanosecond_and_negative_spans_read_as_zero() -> None:
    assert rpc.duration(0.3).ToNanoseconds() == 300_000_000
    assert rpc.duration(1.0000000016).ToNanoseconds() == 1_000_000_002
    assert rpc.duration(-0.004).ToNanoseconds() == 0



async def _database_down(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise psycopg.OperationalError("terminating connection due to unexpected postmaster exit")


async def test_a_lost_database_connection_is_unavailable_not_internal() -> None:
    server = rpc.new_server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Store", {"Read": grpc.unary_unary_rpc_method_handler(_database_down)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ch.unary_unary("/test.Store/Read")(b"", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "the database is unavailable; retry shortly"
    finally:
        await server.stop(0)
