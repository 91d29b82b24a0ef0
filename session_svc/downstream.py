"""Calls from session_svc to the model services, through their protos only."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import grpc

from dragoman import errors, mux
from dragoman.config import Addresses
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tls import MeshTls
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc


class Downstream:
    """Channels and stubs to stt_svc, mt_svc and tts_svc, with error mapping."""

    def __init__(self, addresses: Addresses, timeout_s: float, trunk: bool = True,
                 linger_s: float = mux.LINGER_S, tls: MeshTls | None = None) -> None:
        """Channels to `addresses` (mutual TLS with `tls`), on trunks unless `trunk`
        is false; `timeout_s` bounds each call for one utterance."""
        self.timeout_s = timeout_s
        # Translate and Synthesize are idempotent: retried when a replica is
        # briefly unreachable. A recognition stream is not (audio was consumed).
        mt_service = mt_pb2.DESCRIPTOR.services_by_name["TranslationService"].full_name
        tts_service = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeechService"].full_name
        self._channels = [
            mux.channel(addresses.stt, trunk=trunk, linger_s=linger_s, tls=tls, server_role="stt"),
            mux.channel(addresses.mt, trunk=trunk, retry=[mt_service], linger_s=linger_s,
                        tls=tls, server_role="mt"),
            mux.channel(addresses.tts, trunk=trunk, retry=[tts_service], linger_s=linger_s,
                        tls=tls, server_role="tts"),
        ]
        self.stt = stt_pb2_grpc.SpeechToTextServiceStub(self._channels[0])
        self.mt = mt_pb2_grpc.TranslationServiceStub(self._channels[1])
        self.tts = tts_pb2_grpc.TextToSpeechServiceStub(self._channels[2])

    async def recognize(
        self, requests: AsyncIterable[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        """One recognition stream; no deadline, it lives as long as the speaker."""
        try:
            async for response in self.stt.StreamingRecognize(requests):
                yield response
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "speech recognition") from None

    async def translate(self, source: str, target: str, text: str) -> mt_pb2.Translation:
        request = mt_pb2.TranslateRequest(
            source_language_code=source, target_language_code=target, segments=[text]
        )
        try:
            reply = await self.mt.Translate(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "translation") from None
        return reply.translations[0]

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
        try:
            async for chunk in self.tts.Synthesize(request, timeout=self.timeout_s):
                yield chunk
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e, "speech synthesis") from None

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
