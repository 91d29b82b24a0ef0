"""Calibrated stand-ins for stt_svc, mt_svc and tts_svc, for the load benchmark.

They speak the same internal protos as the real services but do no model
work: their purpose is to load the plumbing (gateway, session_svc, gRPC),
not to measure models. Each sleeps a fixed time standing in for the
measured real stage time:

- STT: audio chunks that are all zero bytes are silence, any other chunk is
  speech. After `endpoint_ms` of silence following speech it sends
  END_OF_SPEECH (offset: the end of the last speech chunk), then, after
  `recognition_ms`, the final transcript. A partial goes out per 600 ms of
  speech. No VAD, no decoding.
- MT: sleeps `translation_ms`, returns the text tagged with the pair.
- TTS: sleeps `synthesis_ms`, then streams `audio_s` seconds of a constant
  PCM16 signal in 0.5 s chunks.

    python -m bench.fakes --stt ADDR --mt ADDR --tts ADDR \
        --recognition-ms 500 --translation-ms 60 --synthesis-ms 300

Any subset of the three may be served by one process; bench.load runs each
in its own process, as the real services run, so that one fake's load does
not delay another's timers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from dragoman import languages, logs, rpc
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc

log = logging.getLogger(__name__)

PARTIAL_EVERY_MS = 600
WORDS = "uno dos tres cuatro cinco seis siete ocho nueve diez".split()


@dataclass(frozen=True, slots=True)
class Delays:
    """Stand-ins for model time, in milliseconds."""

    endpoint_ms: int = 300
    recognition_ms: int = 500
    translation_ms: int = 60
    synthesis_ms: int = 300
    audio_s: float = 2.0


def _offset(samples: int, rate_hz: int) -> Duration:
    d = Duration()
    d.FromNanoseconds(samples * 1_000_000_000 // rate_hz)
    return d


class FakeStt(stt_pb2_grpc.SpeechToTextServiceServicer):
    def __init__(self, delays: Delays) -> None:
        self.delays = delays

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.ListModelsResponse:
        # it hears any language: session_svc's checks before a session must let every pair through
        return stt_pb2.ListModelsResponse(models=[
            stt_pb2.ModelInfo(name="bench-fake", engine="bench-fake", language_codes=["*"])])

    async def StreamingRecognize(
        self, request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        out: asyncio.Queue[stt_pb2.StreamingRecognizeResponse | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(request_iterator, out))
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        out: asyncio.Queue[stt_pb2.StreamingRecognizeResponse | None],
    ) -> None:
        d = self.delays
        rate_hz, language = 16_000, "en"
        samples = speech_end = 0
        speech_ms = silence_ms = 0.0
        index, in_speech = 0, False
        finals: set[asyncio.Task[None]] = set()

        async def final(i: int, words: int) -> None:
            await asyncio.sleep(d.recognition_ms / 1000)
            out.put_nowait(stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
                utterance_index=i, transcript=" ".join(WORDS[k % len(WORDS)] for k in range(words)),
                is_final=True, stability=1.0, language_code=language)))

        def end() -> None:
            nonlocal in_speech, index
            out.put_nowait(stt_pb2.StreamingRecognizeResponse(speech_event=stt_pb2.SpeechEvent(
                type=stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH, utterance_index=index,
                audio_offset=_offset(speech_end, rate_hz))))
            task = asyncio.create_task(final(index, max(1, int(speech_ms // 300))))
            finals.add(task)
            task.add_done_callback(finals.discard)
            in_speech, index = False, index + 1

        try:
            async for request in requests:
                if request.HasField("config"):
                    rate_hz = request.config.sample_rate_hertz or rate_hz
                    language = request.config.language_code or language
                    continue
                n = len(request.audio) // 2
                samples += n
                chunk_ms = n * 1000 / rate_hz
                if request.audio.strip(b"\0"):
                    if not in_speech:
                        in_speech, speech_ms = True, 0.0
                        out.put_nowait(stt_pb2.StreamingRecognizeResponse(
                            speech_event=stt_pb2.SpeechEvent(
                                type=stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED, utterance_index=index,
                                audio_offset=_offset(samples - n, rate_hz))))
                    before = speech_ms
                    speech_ms += chunk_ms
                    silence_ms, speech_end = 0.0, samples
                    if int(speech_ms // PARTIAL_EVERY_MS) > int(before // PARTIAL_EVERY_MS):
                        out.put_nowait(stt_pb2.StreamingRecognizeResponse(
                            result=stt_pb2.RecognitionResult(
                                utterance_index=index, is_final=False, stability=0.5,
                                transcript=" ".join(WORDS[: int(speech_ms // 300)]),
                                language_code=language)))
                elif in_speech:
                    silence_ms += chunk_ms
                    if silence_ms >= d.endpoint_ms:
                        end()
            if in_speech:
                end()
            if finals:
                await asyncio.gather(*finals)
        finally:
            out.put_nowait(None)


class FakeMt(mt_pb2_grpc.TranslationServiceServicer):
    def __init__(self, delays: Delays) -> None:
        self.delays = delays

    async def ListLanguagePairs(
        self, request: mt_pb2.ListLanguagePairsRequest, context: grpc.aio.ServicerContext
    ) -> mt_pb2.ListLanguagePairsResponse:
        return mt_pb2.ListLanguagePairsResponse(pairs=[
            mt_pb2.LanguagePair(source_language_code=s, target_language_code=t,
                                engines=["bench-fake"], installed=True)
            for s, t in languages.all_pairs()])

    async def Translate(
        self, request: mt_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> mt_pb2.TranslateResponse:
        await asyncio.sleep(self.delays.translation_ms / 1000)
        pair = f"[{request.source_language_code}>{request.target_language_code}]"
        return mt_pb2.TranslateResponse(translations=[
            mt_pb2.Translation(text=f"{s} {pair}", engine="bench-fake") for s in request.segments])


class FakeTts(tts_pb2_grpc.TextToSpeechServiceServicer):
    CHUNK_S = 0.5

    def __init__(self, delays: Delays) -> None:
        self.delays = delays
        self._audio: dict[int, bytes] = {}

    def _chunk(self, rate_hz: int) -> bytes:
        if rate_hz not in self._audio:
            self._audio[rate_hz] = b"\x10\x00" * int(rate_hz * self.CHUNK_S)
        return self._audio[rate_hz]

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        await asyncio.sleep(self.delays.synthesis_ms / 1000)
        rate_hz = request.sample_rate_hertz or 24_000
        count = max(1, round(self.delays.audio_s / self.CHUNK_S))
        for i in range(count):
            yield tts_pb2.SynthesizeResponse(
                audio=self._chunk(rate_hz), sample_rate_hertz=rate_hz, chunk_index=i,
                text=request.text if i == 0 else "", voice="bench-fake", is_last=i == count - 1,
                audio_duration=_offset(int(rate_hz * self.CHUNK_S), rate_hz))


    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        return tts_pb2.ListVoicesResponse(voices=[
            tts_pb2.Voice(name=f"bench-fake-{code}", language_code=code, engine="bench-fake")
            for code in languages.SUPPORTED])


_ADD: dict[str, tuple[Callable[[Any, Any], None], Callable[[Delays], Any], str]] = {
    "stt": (stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server, FakeStt,
            stt_pb2.DESCRIPTOR.services_by_name["SpeechToTextService"].full_name),
    "mt": (mt_pb2_grpc.add_TranslationServiceServicer_to_server, FakeMt,
           mt_pb2.DESCRIPTOR.services_by_name["TranslationService"].full_name),
    "tts": (tts_pb2_grpc.add_TextToSpeechServiceServicer_to_server, FakeTts,
            tts_pb2.DESCRIPTOR.services_by_name["TextToSpeechService"].full_name),
}


async def start(delays: Delays, addresses: dict[str, str]) -> list[rpc.Service]:
    """The fakes named in `addresses` ("stt", "mt", "tts" -> host:port, port 0
    allowed), each its own server; session_svc calls them on trunks by default."""
    services = []
    for name, address in addresses.items():
        add, fake, full_name = _ADD[name]
        service = rpc.Service.serving(f"fake-{name}", [(add, fake(delays))], [full_name])
        await service.start(address)
        services.append(service)
    return services


async def _serve(delays: Delays, addresses: dict[str, str]) -> None:
    services = await start(delays, addresses)
    try:
        await asyncio.Event().wait()
    finally:
        for service in services:
            await service.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("stt", "mt", "tts"):
        parser.add_argument(f"--{name}", metavar="ADDRESS",
                            help=f"serve a fake {name} on host:port (at least one of the three)")
    defaults = Delays()
    for name in ("endpoint_ms", "recognition_ms", "translation_ms", "synthesis_ms"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--audio-s", type=float, default=defaults.audio_s)
    args = parser.parse_args()
    addresses = {n: getattr(args, n) for n in ("stt", "mt", "tts") if getattr(args, n)}
    if not addresses:
        parser.error("nothing to serve: give --stt, --mt and/or --tts")
    logs.configure("bench-fakes")
    delays = Delays(args.endpoint_ms, args.recognition_ms, args.translation_ms,
                    args.synthesis_ms, args.audio_s)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(delays, addresses))


if __name__ == "__main__":
    main()
