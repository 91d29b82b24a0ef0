"""gRPC servicer of dragoman.stt.v1.SpeechToTextService, and the process entry point.

Proto <-> dataclass conversion happens here and nowhere else: requests become
a `StreamConfig` and a stream of audio bytes, the stream's outputs become
`StreamingRecognizeResponse` messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import grpc

from dragoman import audio, config, logs, rpc
from dragoman.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from dragoman.packs import SttChoice
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tls import MeshTls
from stt_svc import engines as engine_loader
from stt_svc import vad
from stt_svc.engines.base import ANY_LANGUAGE, SpeechRecognizer, Task
from stt_svc.loaded import Models
from stt_svc.stream import (
    Encoding,
    Output,
    RecognizeStream,
    ResultOut,
    SpeechEventKind,
    StreamConfig,
    StreamLimits,
)

# the module name under `python -m` too, where __name__ is "__main__"
log = logging.getLogger(__spec__.name if __spec__ else __name__)

SERVICE_NAME = stt_pb2.DESCRIPTOR.services_by_name["SpeechToTextService"].full_name
MIN_ENDPOINT_SILENCE_MS = 100
MAX_ENDPOINT_SILENCE_MS = 5000
MAX_HOTWORDS = 100
MAX_HOTWORD_CHARS = 500

_ENCODINGS = {
    stt_pb2.AUDIO_ENCODING_LINEAR16: Encoding.LINEAR16,
    stt_pb2.AUDIO_ENCODING_OGG_OPUS: Encoding.OGG_OPUS,
}
_TASKS: dict[int, Task] = {
    stt_pb2.RECOGNITION_TASK_UNSPECIFIED: "transcribe",
    stt_pb2.RECOGNITION_TASK_TRANSCRIBE: "transcribe",
    stt_pb2.RECOGNITION_TASK_TRANSLATE_TO_ENGLISH: "translate",
}
_EARLY_PARTIALS = {
    stt_pb2.PARTIAL_MODE_UNSPECIFIED: False,
    stt_pb2.PARTIAL_MODE_STEADY: False,
    stt_pb2.PARTIAL_MODE_EARLY: True,
}
_EVENT_TYPES = {
    SpeechEventKind.STARTED: stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED,
    SpeechEventKind.ENDED: stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH,
}


class SpeechToTextServicer(stt_pb2_grpc.SpeechToTextServiceServicer):
    """Streaming recognition over the loaded models."""

    def __init__(
        self, settings: config.Settings, models: Models, limits: StreamLimits | None = None
    ) -> None:
        self._settings = settings.stt
        self._models = models
        self._limits = limits or stream_limits(settings.stt)
        self._active = 0

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.ListModelsResponse:
        reply = stt_pb2.ListModelsResponse()
        for model in self._models.loaded:
            caps = model.capabilities
            reply.models.add(
                name=caps.name,
                engine=caps.engine,
                language_codes=[ANY_LANGUAGE] if caps.detects_language else list(caps.languages),
                translates_to_english=caps.translates_to_english,
                chosen_language_codes=self._models.chosen_languages(model),
                reason=self._models.reason(model),
            )
        return reply

    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        if self._active >= self._settings.max_streams:
            raise ResourceExhausted(
                f"too many concurrent recognition streams (limit {self._settings.max_streams}); "
                "retry later"
            )
        self._active += 1
        try:
            stream_config = await self._read_config(request_iterator)
            if stream_config is None:
                return
            stream = RecognizeStream(stream_config, self._models, self._limits)
            runner = asyncio.create_task(stream.run(_audio(request_iterator)))
            runner.add_done_callback(lambda _: stream.outputs.put_nowait(None))
            try:
                while (item := await stream.outputs.get()) is not None:
                    yield _response(item)
                runner.result()  # the stream's error, if it failed
            finally:
                if not runner.done():
                    runner.cancel()
                    await asyncio.wait([runner])
        finally:
            self._active -= 1

    async def _read_config(
        self, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
    ) -> StreamConfig | None:
        """The first message as a config; None if the stream stays idle that long."""
        try:
            async with asyncio.timeout(self._settings.idle_timeout_s):
                first = await anext(aiter(requests), None)
        except TimeoutError:
            log.info("no config within %g s: closing the idle stream", self._settings.idle_timeout_s)
            return None
        if first is None:
            raise InvalidArgument("the stream ended before its config message")
        kind = first.WhichOneof("streaming_request")
        if kind == "audio":
            raise FailedPrecondition(
                "audio arrived before the config: the first StreamingRecognizeRequest "
                "must carry `config`"
            )
        if kind != "config":
            raise InvalidArgument("the first StreamingRecognizeRequest must carry `config`")
        return self._stream_config(first.config)

    def _stream_config(self, c: stt_pb2.StreamingRecognitionConfig) -> StreamConfig:
        if c.encoding not in _ENCODINGS:
            raise InvalidArgument(
                "config.encoding must be AUDIO_ENCODING_LINEAR16 or AUDIO_ENCODING_OGG_OPUS, "
                f"got {c.encoding}"
            )
        encoding = _ENCODINGS[c.encoding]
        rate_hz = audio.STT_RATE_HZ
        if encoding is Encoding.LINEAR16:
            rate_hz = audio.check_rate(c.sample_rate_hertz, "config.sample_rate_hertz")
        language = self._models.resolve(c.language_code)
        task = _TASKS.get(c.task)
        if task is None:
            raise InvalidArgument(
                "config.task must be RECOGNITION_TASK_TRANSCRIBE or "
                f"RECOGNITION_TASK_TRANSLATE_TO_ENGLISH (or unset), got {c.task}"
            )
        self._models.check_task(task)
        early_partials = _EARLY_PARTIALS.get(c.partial_mode)
        if early_partials is None:
            raise InvalidArgument(
                "config.partial_mode must be PARTIAL_MODE_STEADY or PARTIAL_MODE_EARLY "
                f"(or unset), got {c.partial_mode}")
        return StreamConfig(
            language_code=c.language_code,
            language=language,
            encoding=encoding,
            sample_rate_hz=rate_hz,
            interim_results=c.interim_results,
            endpoint_silence_ms=self._endpoint_silence_ms(c),
            hotwords=_hotwords(c.hotwords),
            task=task,
            early_partials=early_partials,
        )

    def _endpoint_silence_ms(self, c: stt_pb2.StreamingRecognitionConfig) -> int:
        if not c.HasField("endpoint_silence"):
            return self._settings.endpoint_silence_ms
        d = c.endpoint_silence
        nanos = d.seconds * 1_000_000_000 + d.nanos
        if nanos == 0:
            return self._settings.endpoint_silence_ms
        ms = nanos // 1_000_000
        if not MIN_ENDPOINT_SILENCE_MS <= ms <= MAX_ENDPOINT_SILENCE_MS:
            raise InvalidArgument(
                f"config.endpoint_silence must be between {MIN_ENDPOINT_SILENCE_MS} and "
                f"{MAX_ENDPOINT_SILENCE_MS} ms (or 0 for the default), got {nanos / 1e6:g} ms"
            )
        return int(ms)


def stream_limits(stt: config.SttSettings) -> StreamLimits:
    """The per-stream limits `stt` sets.

    The chunk rate limit is off unless configured: stt_svc's one client is
    session_svc, which forwards audio as the gateway let it through (the
    gateway limits clients to `limits.audio_chunks_per_s`). `max_chunks_per_s`
    and `burst_chunks` are read from the stt settings when they have them.
    """
    return StreamLimits(
        partial_interval_ms=stt.partial_interval_ms,
        early_partial_interval_ms=stt.early_partial_interval_ms,
        max_utterance_ms=round(stt.max_utterance_s * 1000),
        idle_timeout_s=stt.idle_timeout_s,
        beam_size=stt.beam_size,
        final_beam_when_idle=stt.final_beam_when_idle,
        final_beam_when_doubtful=stt.final_beam_when_doubtful,
        redecode_gaps=stt.redecode_gaps,
        redecode_sparse=stt.redecode_sparse,
        final_context_s=stt.final_context_s,
        max_chunks_per_s=stt.max_chunks_per_s,
        burst_chunks=stt.burst_chunks,
        low_confidence_below=stt.low_confidence_below,
    )


async def _audio(
    requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
) -> AsyncIterator[bytes]:
    async for request in requests:
        kind = request.WhichOneof("streaming_request")
        if kind == "config":
            raise InvalidArgument(
                "config may only be sent in the first message; this stream is configured already"
            )
        if kind != "audio":
            raise InvalidArgument("a StreamingRecognizeRequest after the config must carry audio")
        yield request.audio


def _hotwords(values: Sequence[str]) -> tuple[str, ...]:
    words = tuple(w.strip() for w in values if w.strip())
    if len(words) > MAX_HOTWORDS or sum(len(w) for w in words) > MAX_HOTWORD_CHARS:
        raise InvalidArgument(
            f"config.hotwords: at most {MAX_HOTWORDS} entries and {MAX_HOTWORD_CHARS} "
            f"characters in all, got {len(words)} entries, {sum(len(w) for w in words)} characters"
        )
    return words


def _response(item: Output) -> stt_pb2.StreamingRecognizeResponse:
    if not isinstance(item, ResultOut):
        return stt_pb2.StreamingRecognizeResponse(
            speech_event=stt_pb2.SpeechEvent(
                type=_EVENT_TYPES[item.kind],
                utterance_index=item.utterance_index,
                audio_offset=rpc.duration(item.offset_s),
            )
        )
    return stt_pb2.StreamingRecognizeResponse(
        result=stt_pb2.RecognitionResult(
            utterance_index=item.utterance_index,
            transcript=item.transcript,
            is_final=item.is_final,
            stability=item.stability,
            stable_prefix=item.stable_prefix,
            language_code=item.language_code,
            language_probability=item.language_probability,
            confidence=item.confidence,
            low_confidence=item.low_confidence,
            start_offset=rpc.duration(item.start_s),
            end_offset=rpc.duration(item.end_s),
            words=[
                stt_pb2.WordInfo(
                    word=w.word,
                    start_offset=rpc.duration(w.start_s),
                    end_offset=rpc.duration(w.end_s),
                    confidence=w.probability,
                )
                for w in item.words
            ],
            processing_time=rpc.duration(item.processing_s),
        )
    )


async def create(
    settings: config.Settings,
    *,
    engine: SpeechRecognizer | Sequence[SpeechRecognizer] | None = None,
    limits: StreamLimits | None = None,
    choice: SttChoice | None = None,
) -> rpc.Service:
    """Builds the service; loads and warms up the models unless `engine` is given.

    `engine` may be one engine or several (e.g. whisper-base and whisper-tiny.en
    loaded once and shared by several test services). `limits` replaces the
    per-stream limits from `settings` (tests, benchmarks). `choice`: the model
    of each language (default: `engines.choice(settings)` for the models it loads).
    """
    owned = engine is None
    if engine is None:
        engines = await asyncio.to_thread(engine_loader.load, settings)
        if choice is None and settings.stt.engine == "whisper":
            choice = await asyncio.to_thread(engine_loader.choice, settings)
    elif isinstance(engine, Sequence):
        engines = list(engine)
    else:
        engines = [engine]
    await asyncio.to_thread(vad.warm_up)
    models = Models(engines, max_pending=2 * settings.stt.max_streams + 2, choice=choice)
    service = rpc.Service.serving("stt", [(stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server,
                                           SpeechToTextServicer(settings, models, limits))],
                                  [SERVICE_NAME], engines=engines,
                                  tls=MeshTls.from_settings(settings.tls))
    service.on_stop.append(models.close)
    if owned:  # engines with connections (Triton) close with the service that loaded them
        service.on_stop.extend(e.close for e in engines)
    return service


async def serve(settings: config.Settings) -> None:
    await rpc.run(settings, "stt", create)


def main() -> None:
    logs.configure("stt")
    rpc.main(serve)


if __name__ == "__main__":
    main()
