"""Dynamic batching, Triton dying mid-request, and the services' health following Triton's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dragoman import config, errors, rpc, triton_client
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.triton_client import TritonClient
from mt_svc import server as mt_server
from mt_svc.engines import triton as mt_triton
from mt_svc.engines.base import TranslationBatch
from tests.conftest import started
from tests.triton.conftest import TOKEN, TritonProcess
from tts_svc.engines import triton as tts_triton
from tts_svc.engines.base import SynthesisRequest

pytestmark = [pytest.mark.models, pytest.mark.slow]

CONCURRENT = 16
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _counts(client: TritonClient, model: str) -> tuple[int, int]:
    stats = await client.statistics(model, TOKEN)
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


async def _served(
    client: TritonClient, model: str, before: tuple[int, int], requests: int
) -> tuple[int, int]:
    """Inferences and executions since `before`, once Triton's statistics count all `requests`
    (they are updated just after the responses are sent)."""
    for _ in range(50):
        now = await _counts(client, model)
        if now[0] - before[0] >= requests:
            break
        await asyncio.sleep(0.1)
    return now[0] - before[0], now[1] - before[1]


async def test_concurrent_mt_requests_share_executions(client: TritonClient) -> None:
    (engine,) = await mt_triton.load(client)
    before = await _counts(client, engine.model)
    texts = [f"I have {n} apples in the kitchen." for n in range(CONCURRENT)]
    out = await asyncio.gather(*(engine.translate(TranslationBatch("en", "pt", (t,))) for t in texts))
    inferences, executions = await _served(client, engine.model, before, CONCURRENT)
    assert all(len(o) == 1 and o[0] for o in out)
    assert inferences == CONCURRENT
    assert executions < CONCURRENT


async def test_concurrent_tts_requests_share_executions(client: TritonClient) -> None:
    engines = await tts_triton.load(client)
    kokoro = next(e for e in engines if e.capabilities.name == "kokoro")
    before = await _counts(client, kokoro.model)

    async def speak(i: int) -> int:
        request = SynthesisRequest(f"Gate {i}.", "af_heart")
        return sum([c.samples.size async for c in kokoro.synthesize(request)])

    sizes = await asyncio.gather(*(speak(i) for i in range(8)))
    inferences, executions = await _served(client, kokoro.model, before, 8)
    assert all(s > 1000 for s in sizes)
    assert inferences == 8
    assert executions < 8


async def _health(address: str) -> int:
    async with rpc.channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return int(reply.status)


async def _until(address: str, status: int, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await _health(address) != status:
        assert loop.time() < deadline, f"health not {status} after {timeout_s} s"
        await asyncio.sleep(0.1)


@pytest.fixture
async def mt_on_small_triton(
    settings: config.Settings, small_triton: TritonProcess
) -> AsyncIterator[tuple[str, Any]]:
    await small_triton.ready()
    client = TritonClient(small_triton.options)
    engines = await asyncio.to_thread(mt_triton.load_blocking, client, 60.0)  # as the registry would
    mt_settings = config.Settings(mt=config.MtSettings(engines="bergamot"), models_dir=settings.models_dir)
    service = await mt_server.create(mt_settings, engines=engines)
    watch = triton_client.watch_health(service, engines, interval_s=0.2)
    assert watch is not None
    async for address in started(service):
        yield address, watch


async def test_killed_mid_request_unavailable_then_recovers(
    small_triton: TritonProcess, mt_on_small_triton: tuple[str, Any]
) -> None:
    address, watch = mt_on_small_triton
    await _until(address, SERVING)
    long_segments = [
        f"Segment {i}: the committee met on Tuesday to discuss the budget, the new railway station, "
        "the school holidays and the plans for the summer festival in the old town square." * 3
        for i in range(64)
    ]
    async with rpc.channel(address) as channel:
        stub = mt_pb2_grpc.TranslationServiceStub(channel)

        def translate(segments: list[str]) -> Any:
            return stub.Translate(mt_pb2.TranslateRequest(
                source_language_code="en", target_language_code="pt", segments=segments), timeout=60)

        assert (await translate(["Good morning."])).translations[0].text
        call = asyncio.ensure_future(translate(long_segments))
        await asyncio.sleep(0.3)
        assert not call.done(), "the request finished before Triton was killed"
        small_triton.kill()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Triton at" in (failure.value.details() or "")

        await _until(address, NOT_SERVING)
        assert watch.reason and "Triton" in watch.reason
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await translate(["Good evening."])
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE

        small_triton.start()
        await _until(address, SERVING, timeout_s=120)
        reply = await translate(["Good evening."])
        assert reply.translations[0].text and reply.translations[0].engine == "bergamot"


async def test_unreachable_triton_is_unavailable_naming_it() -> None:
    options = config.TritonSettings(url="127.0.0.1:9", timeout_s=2, retries=1, backoff_s=0.05)
    client = TritonClient(options)
    with pytest.raises(errors.Unavailable, match=r"Triton at 127\.0\.0\.1:9"):
        await client.hosted("mt")
    assert "Triton at 127.0.0.1:9" in (await client.not_ready(["mt-bergamot"]) or "")
    await client.close()
