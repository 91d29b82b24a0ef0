"""mt_svc: `dragoman.mt.v1.TranslationService` over the configured engines.

`python -m mt_svc.server` loads the engines named in settings.mt.engines that
are installed here (the others are logged, and their pairs report
installed=false), warms each installed pair up with one translation, and
serves on settings.addresses.mt until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc

from dragoman import config, logs, rpc
from dragoman.errors import InvalidArgument
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from mt_svc import engines as registry
from mt_svc import languages
from mt_svc.admission import Admission
from mt_svc.engines.base import MtEngine, TranslationBatch
from mt_svc.router import Result, Router

log = logging.getLogger("mt_svc.server")

SERVICE_NAME = mt_pb2.DESCRIPTOR.services_by_name["TranslationService"].full_name
MAX_ACTIVE_BATCHES = 4
"""Batches translated at once; more wait in the queue."""
MAX_QUEUED_BATCHES = 32
"""Batches that may wait; more get RESOURCE_EXHAUSTED."""
_WARM_UP_TEXT = "Hello."


def check_segments(segments: Sequence[str], settings: config.MtSettings) -> None:
    """INVALID_ARGUMENT naming the first problem with the batch, if any."""
    limit = settings.max_segments
    if not segments:
        raise InvalidArgument(f"segments is empty: send 1 to {limit} segments")
    if len(segments) > limit:
        raise InvalidArgument(f"too many segments: {len(segments)} (at most {limit} per call)")
    for i, segment in enumerate(segments):
        if not segment:
            raise InvalidArgument(f"segments[{i}] is empty")
        if len(segment) > settings.max_segment_chars:
            raise InvalidArgument(
                f"segments[{i}] is too long: {len(segment)} characters "
                f"(at most {settings.max_segment_chars})"
            )


class TranslationServicer(mt_pb2_grpc.TranslationServiceServicer):
    """Validates requests, routes them and converts between protos and engine records."""

    def __init__(self, router: Router, settings: config.MtSettings, admission: Admission) -> None:
        self._router = router
        self._settings = settings
        self._admission = admission

    async def Translate(
        self, request: mt_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> mt_pb2.TranslateResponse:
        started = time.perf_counter_ns()
        source = languages.normalise(request.source_language_code, "source_language_code")
        target = languages.normalise(request.target_language_code, "target_language_code")
        segments = list(request.segments)
        check_segments(segments, self._settings)
        result: Result
        if source == target:
            result = await self._router.translate(source, target, segments)
        else:
            self._router.route(source, target)  # FAILED_PRECONDITION before queueing
            async with self._admission.slot():
                result = await self._router.translate(source, target, segments)
        response = mt_pb2.TranslateResponse(
            translations=[
                mt_pb2.Translation(text=t, engine=result.engine, pivoted=result.pivoted)
                for t in result.texts
            ]
        )
        elapsed_ns = time.perf_counter_ns() - started
        response.processing_time.FromNanoseconds(elapsed_ns)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "translated %s->%s", source, target,
                extra={
                    "segments": len(segments), "engine": result.engine, "ms": elapsed_ns / 1e6,
                    "text": [logs.redact(s) for s in segments],
                },
            )
        return response

    async def ListLanguagePairs(
        self, request: mt_pb2.ListLanguagePairsRequest, context: grpc.aio.ServicerContext
    ) -> mt_pb2.ListLanguagePairsResponse:
        routes = [self._router.plan(s, t) for s, t in languages.all_pairs()]
        return mt_pb2.ListLanguagePairsResponse(
            pairs=[
                mt_pb2.LanguagePair(
                    source_language_code=r.source,
                    target_language_code=r.target,
                    engines=[h.engine for h in r.hops],
                    pivot=r.pivoted,
                    installed=r.installed,
                    license=r.license,
                )
                for r in routes
            ]
        )


async def warm_up(engines: Sequence[MtEngine]) -> None:
    """One translation per installed pair of every engine (loads models, starts pipelines)."""
    for engine in engines:
        caps = engine.capabilities
        for source, target in sorted(caps.pairs):
            started = time.perf_counter()
            try:
                await engine.translate(TranslationBatch(source, target, (_WARM_UP_TEXT,)))
            except Exception:  # noqa: BLE001 - a broken pair must not stop the others
                log.exception("warm-up of %s %s->%s failed", caps.name, source, target)
                continue
            log.info(
                "warmed up %s %s->%s", caps.name, source, target,
                extra={"ms": round(1000 * (time.perf_counter() - started), 1)},
            )


async def create(
    settings: config.Settings,
    *,
    engines: Sequence[MtEngine] | None = None,
    admission: Admission | None = None,
) -> rpc.Service:
    """The service, not yet started. `engines` replaces the configured ones and
    `admission` the default limits (MAX_ACTIVE_BATCHES, MAX_QUEUED_BATCHES)."""
    names = registry.configured(settings.mt.engines)
    if engines is None:
        engines = await asyncio.to_thread(registry.load, names)
    router = Router(engines, registry.OFFERS, preference=names)
    await warm_up(router.engines)
    server = rpc.new_server()
    admission = admission or Admission(MAX_ACTIVE_BATCHES, MAX_QUEUED_BATCHES)
    servicer = TranslationServicer(router, settings.mt, admission)
    mt_pb2_grpc.add_TranslationServiceServicer_to_server(servicer, server)
    service = rpc.Service("mt_svc", server, [SERVICE_NAME])
    service.on_stop.append(router.close)
    return service


async def serve(settings: config.Settings) -> None:
    service = await create(settings)
    await rpc.serve_forever(service, settings.addresses.mt, settings.grace_period_s)


def main() -> None:
    logs.configure("mt_svc")
    asyncio.run(serve(config.load()))


if __name__ == "__main__":
    main()
