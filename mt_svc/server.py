"""mt_svc: `dragoman.mt.v1.TranslationService` over the configured engines.

`python -m mt_svc.server` loads the engines named in settings.mt.engines that
are installed here (`ct2`: every model pulled with `dragoman models pull`;
the others are logged, and their pairs report installed=false with what to
install), warms each engine up, and serves on settings.addresses.mt until
SIGTERM/SIGINT. Translations go through the phrase cache (in process, or
Redis when settings.mt.cache = "redis"); see mt_svc.pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc

from dragoman import config, languages, logs, rpc
from dragoman.catalog import packaged
from dragoman.errors import InvalidArgument
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.tls import MeshTls
from mt_svc import engines as registry
from mt_svc.admission import Admission
from mt_svc.cache import PhraseCache, open_cache
from mt_svc.engines.base import MtEngine, TranslationBatch
from mt_svc.engines.ct2 import DecodeOptions
from mt_svc.glossary import Term
from mt_svc.pipeline import Pipeline
from mt_svc.router import Router

# the module name under `python -m` too, where __name__ is "__main__"
log = logging.getLogger(__spec__.name if __spec__ else __name__)

SERVICE_NAME = mt_pb2.DESCRIPTOR.services_by_name["TranslationService"].full_name
MAX_ACTIVE_BATCHES = 4
"""Batches translated at once; more wait in the queue."""
MAX_QUEUED_BATCHES = 32
"""Batches that may wait; more get RESOURCE_EXHAUSTED."""
WARM_UP_PAIRS = 8
"""Pairs warmed up per engine (each Apertium mode is a process; one call loads a model)."""
SPEECH_TRANSLATION = "whisper-translate"
"""Whisper's speech -> English translation (stt_svc), listed for X->en pairs when installed."""
_SPEECH_MODEL = "whisper-base"
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


def terms_of(request: mt_pb2.TranslateRequest, settings: config.MtSettings) -> list[Term]:
    """The glossary and do-not-translate terms of a request; INVALID_ARGUMENT naming a bad one."""
    count = len(request.glossary) + len(request.do_not_translate)
    if count > settings.max_terms:
        raise InvalidArgument(
            f"too many terms: {count} glossary and do_not_translate entries "
            f"(at most {settings.max_terms} per call)"
        )
    named = [
        *((f"glossary[{i}].source", e.source) for i, e in enumerate(request.glossary)),
        *((f"glossary[{i}].target", e.target) for i, e in enumerate(request.glossary)),
        *((f"do_not_translate[{i}]", t) for i, t in enumerate(request.do_not_translate)),
    ]
    for field, term in named:
        if not term.strip():
            raise InvalidArgument(f"{field} is empty")
        if len(term) > settings.max_term_chars:
            raise InvalidArgument(
                f"{field} is too long: {len(term)} characters (at most {settings.max_term_chars})"
            )
    return [
        *(Term(e.source.strip(), e.target.strip()) for e in request.glossary),
        *(Term(t.strip()) for t in request.do_not_translate),
    ]


class TranslationServicer(mt_pb2_grpc.TranslationServiceServicer):
    """Validates requests, routes them and converts between protos and engine records."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: config.MtSettings,
        admission: Admission,
        speech_engines: Sequence[str] = (),
    ) -> None:
        self._pipeline = pipeline
        self._router = pipeline.router
        self._settings = settings
        self._admission = admission
        self._speech_engines = list(speech_engines)

    async def Translate(
        self, request: mt_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> mt_pb2.TranslateResponse:
        started = time.perf_counter_ns()
        source = languages.normalise(request.source_language_code, "source_language_code")
        target = languages.normalise(request.target_language_code, "target_language_code")
        segments = list(request.segments)
        check_segments(segments, self._settings)
        terms = terms_of(request, self._settings)
        if source == target:
            result = await self._pipeline.translate(source, target, segments, terms)
        else:
            self._router.route(source, target)  # FAILED_PRECONDITION before queueing
            async with self._admission.slot():
                result = await self._pipeline.translate(source, target, segments, terms)
        response = mt_pb2.TranslateResponse(
            translations=[
                mt_pb2.Translation(text=t, engine=result.engine, pivoted=result.pivoted, cached=c,
                                   confidence=s or 0.0)
                for t, c, s in zip(result.texts, result.cached, result.confidence, strict=True)
            ]
        )
        elapsed_ns = time.perf_counter_ns() - started
        response.processing_time.FromNanoseconds(elapsed_ns)
        if log.isEnabledFor(logging.DEBUG):
            stats = self._pipeline.cache.stats
            log.debug(
                "translated %s->%s", source, target,
                extra={
                    "segments": len(segments), "engine": result.engine, "ms": elapsed_ns / 1e6,
                    "cached": sum(result.cached), "cache_hits": stats.hits,
                    "cache_misses": stats.misses, "text": [logs.redact(s) for s in segments],
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
                    install=r.install,
                    speech_engines=self._speech_engines if r.target == languages.ENGLISH else [],
                )
                for r in routes
            ]
        )


async def warm_up(engines: Sequence[MtEngine]) -> None:
    """One translation per installed pair of every engine, up to WARM_UP_PAIRS each
    (loads models, starts pipelines)."""
    for engine in engines:
        caps = engine.capabilities
        for source, target in sorted(caps.pairs)[:WARM_UP_PAIRS]:
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


def speech_engines(settings: config.Settings) -> list[str]:
    """The speech -> English engines installed here (served by stt_svc)."""
    model = packaged.CATALOGUE.get(_SPEECH_MODEL)
    if model is None or not packaged.status(settings.models_dir, model).usable:
        return []
    return [SPEECH_TRANSLATION]


async def create(
    settings: config.Settings,
    *,
    engines: Sequence[MtEngine] | None = None,
    admission: Admission | None = None,
    cache: PhraseCache | None = None,
) -> rpc.Service:
    """The service, not yet started. `engines` replaces the configured ones,
    `admission` the default limits (MAX_ACTIVE_BATCHES, MAX_QUEUED_BATCHES) and
    `cache` the phrase cache of settings.mt.cache."""
    names = registry.configured(settings.mt.engines)
    if engines is None:
        engines = await asyncio.to_thread(
            registry.load, names, settings.models_dir, DecodeOptions.of(settings.mt), settings.triton,
            settings.tls)
    router = Router(engines, registry.OFFERS, preference=registry.preference(names))
    await warm_up(router.engines)
    pipeline = Pipeline(router, cache or open_cache(settings.mt))
    admission = admission or Admission(MAX_ACTIVE_BATCHES, MAX_QUEUED_BATCHES)
    servicer = TranslationServicer(pipeline, settings.mt, admission, speech_engines(settings))
    service = rpc.Service.serving(
        "mt_svc", [(mt_pb2_grpc.add_TranslationServiceServicer_to_server, servicer)],
        [SERVICE_NAME], engines=router.engines, tls=MeshTls.from_settings(settings.tls))
    service.on_stop.extend([router.close, pipeline.cache.close])
    return service


async def serve(settings: config.Settings) -> None:
    await rpc.run(settings, "mt", create)


def main() -> None:
    logs.configure("mt_svc")
    rpc.main(serve)


if __name__ == "__main__":
    main()
