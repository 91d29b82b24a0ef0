"""Prometheus metrics: every call counted by status, served over HTTP, lint-clean."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dragoman import metrics, rpc
from dragoman.errors import NotFound

SERVICE = "test.Echo"


async def _say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"missing":
        raise NotFound("no such thing")
    if request == b"abort":
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
    return request


async def _listen(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    while True:
        yield request
        await asyncio.sleep(0.05)


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Say": grpc.unary_unary_rpc_method_handler(_say),
        "Listen": grpc.unary_stream_rpc_method_handler(_listen),
    })


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _requests(samples: dict[Any, float], method: str, code: str) -> float:
    labels = (("code", code), ("method", method), ("service", SERVICE))
    return samples.get(("dragoman_rpc_requests_total", labels), 0.0)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[grpc.aio.Channel, int]]:
    server = rpc.new_server()
    server.add_generic_rpc_handlers([_handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    metrics_port, stop = metrics.serve("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, metrics_port
    finally:
        stop()
        await server.stop(0)


async def test_each_call_is_counted_by_its_status_code(echo: tuple[grpc.aio.Channel, int]) -> None:
    channel, port = echo
    say = channel.unary_unary(f"/{SERVICE}/Say")
    before = _samples(await asyncio.to_thread(_scrape, port))
    assert await say(b"hello") == b"hello"
    for request, code in ((b"missing", grpc.StatusCode.NOT_FOUND),
                          (b"abort", grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await say(request)
        assert failed.value.code() == code
    after = _samples(await asyncio.to_thread(_scrape, port))
    for code in ("OK", "NOT_FOUND", "PERMISSION_DENIED"):
        assert _requests(after, "Say", code) == _requests(before, "Say", code) + 1, code
    duration = ("dragoman_rpc_duration_seconds_count", (("method", "Say"), ("service", SERVICE)))
    assert after[duration] == before.get(duration, 0.0) + 3


async def test_an_open_stream_is_in_flight_until_the_client_cancels(
    echo: tuple[grpc.aio.Channel, int],
) -> None:
    channel, port = echo
    in_flight = ("dragoman_rpc_in_flight", (("method", "Listen"), ("service", SERVICE)))
    before = _samples(await asyncio.to_thread(_scrape, port))
    call = channel.unary_stream(f"/{SERVICE}/Listen")(b"tick")
    assert await call.read() == b"tick"
    during = _samples(await asyncio.to_thread(_scrape, port))
    assert during[in_flight] == before.get(in_flight, 0.0) + 1
    call.cancel()
    for _ in range(50):  # the server sees the cancellation a moment later
        after = _samples(await asyncio.to_thread(_scrape, port))
        if after[in_flight] == before.get(in_flight, 0.0):
            break
        await asyncio.sleep(0.05)
    assert after[in_flight] == before.get(in_flight, 0.0)
    assert _requests(after, "Listen", "CANCELLED") == _requests(before, "Listen", "CANCELLED") + 1


async def test_the_exposition_passes_promtool(echo: tuple[grpc.aio.Channel, int]) -> None:
    channel, port = echo
    await channel.unary_unary(f"/{SERVICE}/Say")(b"hello")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (./dev.sh setup does)"
    text = await asyncio.to_thread(_scrape, port)
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30, check=False)
    # promtool exits 1 on lint problems and prints them
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "dragoman_rpc_requests_total" in text


def test_a_metrics_address_in_use_is_a_clear_error() -> None:
    port, stop = metrics.serve("127.0.0.1:0")
    try:
        with pytest.raises(OSError, match=f"metrics: cannot serve on '127.0.0.1:{port}'"):
            metrics.serve(f"127.0.0.1:{port}")
    finally:
        stop()


def test_method_paths_split_into_service_and_method() -> None:
    assert metrics.split_method("/dragoman.v1.ConversationService/Converse") == (
        "dragoman.v1.ConversationService", "Converse")
