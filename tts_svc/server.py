"""dragoman.tts.v1.TextToSpeechService: streaming speech synthesis.

`python -m tts_svc.server` loads the engines named in `tts.engines` (plus
espeak-ng, the fallback for every language), warms each up with one
synthesis, opens the audio cache (`tts.cache`: in process, Redis or off)
and serves on `addresses.tts`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from dragoman import config, logs, rpc
from dragoman.errors import InvalidArgument
from dragoman.tls import MeshTls
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from tts_svc import engines as engine_registry
from tts_svc.cache import AudioCache, CacheOptions, open_cache
from tts_svc.encoding import Encoding
from tts_svc.engines.base import Gender, TtsEngine, Voice
from tts_svc.pipeline import Synthesizer
from tts_svc.voices import VoiceCatalog

# the module name under `python -m` too, where __name__ is "__main__"
log = logging.getLogger(__spec__.name if __spec__ else __name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeechService"].full_name
MAX_STREAMS = 8
"""Concurrent Synthesize streams; more get RESOURCE_EXHAUSTED."""
_ENCODINGS = {
    tts_pb2.AUDIO_ENCODING_UNSPECIFIED: Encoding.LINEAR16,
    tts_pb2.AUDIO_ENCODING_LINEAR16: Encoding.LINEAR16,
    tts_pb2.AUDIO_ENCODING_OGG_OPUS: Encoding.OGG_OPUS,
}
_GENDERS = {
    Gender.UNSPECIFIED: tts_pb2.VOICE_GENDER_UNSPECIFIED,
    Gender.FEMALE: tts_pb2.VOICE_GENDER_FEMALE,
    Gender.MALE: tts_pb2.VOICE_GENDER_MALE,
}


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServiceServicer):
    """Proto <-> pipeline; all the work is in `Synthesizer`."""

    def __init__(self, synthesizer: Synthesizer) -> None:
        self._synthesizer = synthesizer

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        encoding = _ENCODINGS.get(request.encoding)
        if encoding is None:
            raise InvalidArgument(
                f"encoding {request.encoding} is not supported; use AUDIO_ENCODING_LINEAR16 "
                "or AUDIO_ENCODING_OGG_OPUS"
            )
        plan = self._synthesizer.plan(
            request.text, request.language_code, request.voice, request.sample_rate_hertz, encoding,
            request.speed,
        )
        log.info(
            "synthesize",
            extra={
                "voice": plan.voice.name,
                "pieces": len(plan.pieces),
                "rate_hz": plan.output_rate_hz,
                "encoding": encoding.value,
                "speed": plan.speed,
            },
        )
        log.debug("synthesize text", extra={"text": logs.redact(request.text)})
        async for chunk in self._synthesizer.stream(plan):
            yield tts_pb2.SynthesizeResponse(
                audio=chunk.audio,
                sample_rate_hertz=chunk.sample_rate_hz,
                chunk_index=chunk.index,
                text=chunk.text,
                voice=chunk.voice,
                is_last=chunk.is_last,
                audio_duration=rpc.duration(chunk.duration_s),
            )

    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        catalog = self._synthesizer.catalog
        return tts_pb2.ListVoicesResponse(
            voices=[self._voice(v, catalog.is_default(v)) for v in catalog.voices(request.language_code)]
        )

    @staticmethod
    def _voice(voice: Voice, is_default: bool) -> tts_pb2.Voice:
        return tts_pb2.Voice(
            name=voice.name,
            language_code=voice.language_code,
            engine=voice.engine,
            natural_sample_rate_hertz=voice.sample_rate_hz,
            gender=_GENDERS[voice.gender],
            quality=voice.quality,
            is_default=is_default,
        )


def _workers(settings: config.Settings) -> int:
    """Synthesis threads: as many as the cores allow at `cpu_threads` each."""
    return max(1, (os.cpu_count() or 1) // max(1, settings.tts.cpu_threads))


async def create(
    settings: config.Settings,
    *,
    engine: TtsEngine | Sequence[TtsEngine] | None = None,
    max_streams: int = MAX_STREAMS,
    cache: AudioCache | None = None,
) -> rpc.Service:
    """Builds the service: the given engine(s), or those `tts.engines` names, warmed
    up; the given cache (the caller closes it), or the one the settings name."""
    executor = ThreadPoolExecutor(max_workers=_workers(settings), thread_name_prefix="tts")
    owns_cache = cache is None
    if cache is None:
        cache = open_cache(CacheOptions.from_settings(settings.tts))
    try:
        if engine is None:
            engines = await engine_registry.load(settings, executor)
        else:
            engines = [engine] if not isinstance(engine, Sequence) else list(engine)
        synthesizer = Synthesizer(
            VoiceCatalog(engines),
            max_text_chars=settings.tts.max_text_chars,
            max_streams=max_streams,
            cache=cache,
        )
        await synthesizer.warm_up(engines)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        if owns_cache:
            await cache.close()
        raise

    service = rpc.Service.serving("tts_svc", [
        (tts_pb2_grpc.add_TextToSpeechServiceServicer_to_server, TextToSpeechServicer(synthesizer))],
        [SERVICE_NAME], engines=engines, tls=MeshTls.from_settings(settings.tls))

    async def close() -> None:
        stats = synthesizer.cache.stats
        log.info(
            "tts stopping",
            extra={"cache_hits": stats.hits, "cache_misses": stats.misses, "cache_errors": stats.errors},
        )
        for e in engines:
            await e.close()
        if owns_cache:
            await synthesizer.cache.close()
        executor.shutdown(wait=False, cancel_futures=True)

    service.on_stop.append(close)
    log.info(
        "tts ready",
        extra={
            "engines": [e.capabilities.name for e in engines],
            "languages": synthesizer.catalog.languages,
            "cache": synthesizer.cache.kind,
        },
    )
    return service


async def serve(settings: config.Settings) -> None:
    await rpc.run(settings, "tts", create)


def main() -> None:
    logs.configure("tts_svc")
    rpc.main(serve)


if __name__ == "__main__":
    main()
