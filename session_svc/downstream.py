"""Calls from session_svc to the model services, through their protos only.

When a model service restarts (it died, or was replaced on the same
address), its calls in flight fail UNAVAILABLE, and its trunk with them; the
next call opens a new trunk (dragoman.mux) on a channel that reconnects with
backoff (rpc.channel_options). `watch` follows the services' health
(dragoman.dependencies): session_svc is NOT_SERVING while one is down, and
calls made meanwhile wait, bounded, for it to come back instead of failing
at once (`RECOGNITION_WAIT_S`; a translation or synthesis within its
deadline), so only the utterance in flight at the crash is lost, and it is
reported with ERROR_CODE_SERVICE_UNAVAILABLE (`error_code`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator

import grpc

from dragoman import errors, mux, rpc
from dragoman.config import Addresses
from dragoman.dependencies import Dependencies
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from dragoman.v1 import conversation_pb2 as pb

RECOGNITION_WAIT_S = 5.0
"""How long a new recognition stream waits for stt_svc to come back while its audio
queues (at most until the queue is nearly full); the restart of a model service
takes seconds (bench/results/chaos.md)."""
RETRY_PAUSE_S = 0.1
"""Pause before a failed translation or synthesis is tried again."""
FEED_RESERVE = 10
"""Queue slots a waiting recognition stream leaves free, so the speaker's next
chunks are not refused while it gives up."""


def error_code(error: errors.DragomanError, stage: pb.ErrorCode.ValueType) -> pb.ErrorCode.ValueType:
    """The ConversationError code for a failed `stage` (ERROR_CODE_RECOGNITION_FAILED, ...):
    ERROR_CODE_SERVICE_UNAVAILABLE when its service could not be reached."""
    return pb.ERROR_CODE_SERVICE_UNAVAILABLE if isinstance(error, errors.Unavailable) else stage


class Downstream:
    """Channels and stubs to stt_svc, mt_svc and tts_svc, with error mapping."""

    def __init__(self, addresses: Addresses, timeout_s: float, trunk: bool = True,
                 linger_s: float = mux.LINGER_S) -> None:
        self.timeout_s = timeout_s
        # Translate and Synthesize are idempotent: retried when a replica is
        # briefly unreachable. A recognition stream is not (audio was consumed).
        mt_service = mt_pb2.DESCRIPTOR.services_by_name["TranslationService"].full_name
        tts_service = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeechService"].full_name
        self._channels = [
            mux.channel(addresses.stt, trunk=trunk, linger_s=linger_s),
            mux.channel(addresses.mt, trunk=trunk, retry=[mt_service], linger_s=linger_s),
            mux.channel(addresses.tts, trunk=trunk, retry=[tts_service], linger_s=linger_s),
        ]
        self.stt = stt_pb2_grpc.SpeechToTextServiceStub(self._channels[0])
        self.mt = mt_pb2_grpc.TranslationServiceStub(self._channels[1])
        self.tts = tts_pb2_grpc.TextToSpeechServiceStub(self._channels[2])
        self.health: Dependencies | None = None
        """The services' health, once `watch` started following it."""

    def watch(self, service: rpc.Service | None = None) -> Dependencies:
        """Follows the health of stt_svc, mt_svc and tts_svc (until `close`);
        `service` is NOT_SERVING while one of them is down."""
        if self.health is None:
            self.health = Dependencies(dict(zip(("stt", "mt", "tts"), self._channels, strict=True)),
                                       service)
        return self.health

    async def _back(self, name: str, timeout_s: float) -> bool:
        """After a call to service `name` failed UNAVAILABLE: whether it is up again
        within `timeout_s` (False unwatched). Waits a little first, for the health
        watch to learn what the call did."""
        if self.health is None or timeout_s <= RETRY_PAUSE_S:
            return False
        await asyncio.sleep(RETRY_PAUSE_S)
        return await self.health.wait_up(name, timeout_s - RETRY_PAUSE_S)

    async def recognize(
        self, requests: AsyncIterable[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        """One recognition stream; no deadline, it lives as long as the speaker.
        While stt_svc is down, the stream waits for it (RECOGNITION_WAIT_S, and
        while `requests`, an rpc.Feed, has room)."""
        if self.health is not None and not self.health.up("stt"):
            deadline = time.monotonic() + RECOGNITION_WAIT_S
            while not await self.health.wait_up("stt", 0.1):
                full = isinstance(requests, rpc.Feed) and requests.room() <= FEED_RESERVE
                if full or time.monotonic() > deadline:
                    raise errors.Unavailable("speech recognition is unavailable")
        try:
            async for response in self.stt.StreamingRecognize(requests):
                yield response
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "speech recognition") from None

    async def translate(self, source: str, target: str, text: str) -> mt_pb2.Translation:
        request = mt_pb2.TranslateRequest(
            source_language_code=source, target_language_code=target, segments=[text]
        )
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                reply = await self.mt.Translate(request, timeout=deadline - time.monotonic())
                return reply.translations[0]
            except grpc.aio.AioRpcError as e:
                error = errors.from_rpc_error(e, "translation")
            # mt_svc restarting: again once it is back, within the deadline
            if not (isinstance(error, errors.Unavailable)
                    and await self._back("mt", deadline - time.monotonic())):
                raise error

    async def list_pairs(self) -> mt_pb2.ListLanguagePairsResponse:
        try:
            return await self.mt.ListLanguagePairs(mt_pb2.ListLanguagePairsRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "translation") from None

    async def list_models(self) -> stt_pb2.ListModelsResponse:
        try:
            return await self.stt.ListModels(stt_pb2.ListModelsRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "speech recognition") from None

    async def list_voices(self) -> tts_pb2.ListVoicesResponse:
        try:
            return await self.tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "speech synthesis") from None

    async def synthesize(
        self, text: str, language_code: str, voice: str, rate_hz: int
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        request = tts_pb2.SynthesizeRequest(
            text=text, language_code=language_code, voice=voice, sample_rate_hertz=rate_hz,
            encoding=tts_pb2.AUDIO_ENCODING_LINEAR16,
        )
        deadline = time.monotonic() + self.timeout_s
        while True:
            sent = False
            try:
                async for chunk in self.tts.Synthesize(request, timeout=deadline - time.monotonic()):
                    sent = True
                    yield chunk
                return
            except grpc.aio.AioRpcError as e:
                error = errors.from_rpc_error(e, "speech synthesis")
            # tts_svc restarting before any audio: again once it is back, within the deadline
            if sent or not (isinstance(error, errors.Unavailable)
                            and await self._back("tts", deadline - time.monotonic())):
                raise error

    async def close(self) -> None:
        if self.health is not None:
            await self.health.close()
        for ch in self._channels:
            await ch.close()
