"""Calls from session_svc to the model services, through their protos only.

When a model service restarts (it died, or was replaced on the same
address), its calls in flight fail UNAVAILABLE, and its trunk with them; the
next call opens a new trunk (dragoman.mux) on a channel that reconnects with
backoff (rpc.channel_options). `watch` follows the services' health
(dragoman.dependencies): session_svc is NOT_SERVING while one is down, and
calls made meanwhile wait, bounded, for it to come back instead of failing
at once (`RECOGNITION_WAIT_S`; a translation or synthesis within its
deadline). A recognition stream on a trunk that breaks is replaced once
stt_svc is back, and sent again the audio not recognised in full (`Replay`),
so an utterance cut off by the crash is recognised after all. What is lost
all the same (a service down past the wait) is reported with
ERROR_CODE_SERVICE_UNAVAILABLE (`error_code`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable

import grpc

from dragoman import errors, mux, rpc
from dragoman.config import Addresses
from dragoman.dependencies import Dependencies
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tls import MeshTls
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from dragoman.v1 import conversation_pb2 as pb
from session_svc.lexicon import NO_GLOSSARY, Glossary

RECOGNITION_WAIT_S = 10.0
"""How long a recognition stream waits for stt_svc to come back while its audio
queues (a new stream at most until its queue is nearly full); the restart of a
model service takes seconds (bench/results/chaos.md)."""
RETRY_PAUSE_S = 0.1
"""Pause before a failed translation or synthesis is tried again."""
FEED_RESERVE = 10
"""Queue slots a waiting recognition stream leaves free, so the speaker's next
chunks are not refused while it gives up."""


MAX_REPLAY_S = 30.0
"""Audio kept for a recognition stream to send again on a new one when stt_svc dies:
at most this much since the end of the last utterance recognised in full."""

QUIET_KEEP_S = 2.0
"""Audio kept while no utterance is being recognised: speech may have begun that the
recogniser has not reported yet."""

Request = stt_pb2.StreamingRecognizeRequest
Response = stt_pb2.StreamingRecognizeResponse


class Replay:
    """A speaker's recognition requests (an rpc.Feed of LINEAR16 audio after its config)
    on their way to stt_svc, keeping what a new stream must be sent if this one breaks:
    the config and the audio since the end of speech of the last utterance recognised in
    full. The new stream's responses are mapped onto the first: utterance indexes go on
    from the first utterance not final, offsets count from the first stream's start, so
    an utterance cut off by the crash is recognised again under its own index.

    `stream()` is each stt call's request stream; `take(response)` maps a response."""

    def __init__(self, feed: rpc.Feed[Request]) -> None:
        self.feed = feed
        self.config: Request | None = None
        """The first request, once it went out (the feed holds it until then)."""
        self.rate_hz = 1
        self.samples = 0
        """Samples of audio taken so far."""
        self._audio: deque[tuple[int, bytes]] = deque()  # (first sample, audio) since `_safe`
        self._safe = 0
        """Sample where the audio not yet recognised in full begins."""
        self._ends: dict[int, int] = {}  # utterance index -> end of speech, while not final
        self._final = -1  # every utterance up to this index is final
        self._seen = -1  # the highest utterance index seen
        self._cut = False  # audio of an utterance not final was dropped (MAX_REPLAY_S)
        self._base_index, self._base_sample = 0, 0  # of the current stream

    def _record(self, request: Request) -> None:
        if request.HasField("config"):
            self.config, self.rate_hz = request, request.config.sample_rate_hertz or 1
            return
        self._audio.append((self.samples, request.audio))
        self.samples += len(request.audio) // 2
        span = self.samples - self._safe
        if self._seen == self._final and span > 2 * QUIET_KEEP_S * self.rate_hz:
            self._advance(self.samples - round(QUIET_KEEP_S * self.rate_hz))
        elif span > MAX_REPLAY_S * self.rate_hz:  # one long utterance: bounded memory
            self._cut = True
            self._advance(self.samples - round(MAX_REPLAY_S * self.rate_hz))

    def _advance(self, safe: int) -> None:
        """Audio before sample `safe` will not be sent again."""
        self._safe = max(self._safe, safe)
        while self._audio and self._audio[0][0] + len(self._audio[0][1]) // 2 <= self._safe:
            self._audio.popleft()

    def possible(self) -> bool:
        """Whether a new stream can take over: LINEAR16 audio (whose samples are
        counted), of which nothing not recognised in full was dropped."""
        return (self.config is not None and not self._cut
                and self.config.config.encoding == stt_pb2.AUDIO_ENCODING_LINEAR16)

    def restart(self) -> None:
        """The next `stream()` starts a new recognition from the audio not recognised in full."""
        self._base_index = self._final + 1
        self._base_sample = self._audio[0][0] if self._audio else self.samples
        self._ends.clear()

    def stream(self) -> _ReplayStream:
        """The next call's requests: the feed's (config first) on the first call; on a
        later one the config and the audio kept (chunks that began before the safe
        point go whole), then the feed's."""
        if self.config is None:
            return _ReplayStream(self, [])
        return _ReplayStream(self, [self.config, *(
            stt_pb2.StreamingRecognizeRequest(audio=data) for _, data in self._audio)])

    def take(self, response: Response) -> Response:
        """`response` of the current stream, its indexes and offsets as the first stream's."""
        shift_s = self._base_sample / self.rate_hz
        if response.HasField("speech_event"):
            ev = response.speech_event
            ev.utterance_index += self._base_index
            self._seen = max(self._seen, ev.utterance_index)
            if shift_s:
                _shift(ev.audio_offset, shift_s)
            if ev.type == stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH:
                self._ends[ev.utterance_index] = round(
                    ev.audio_offset.ToTimedelta().total_seconds() * self.rate_hz)
            return response
        result = response.result
        result.utterance_index += self._base_index
        self._seen = max(self._seen, result.utterance_index)
        if shift_s:
            for offset in (result.start_offset, result.end_offset,
                           *(o for w in result.words for o in (w.start_offset, w.end_offset))):
                _shift(offset, shift_s)
        if result.is_final and result.utterance_index == self._final + 1:
            self._final = result.utterance_index
            end = self._ends.pop(result.utterance_index, None)
            if end is None and result.HasField("end_offset"):
                end = round(result.end_offset.ToTimedelta().total_seconds() * self.rate_hz)
            if end is not None:  # what comes before is done with
                self._advance(end)
            if self._final == self._seen:
                self._cut = False
        return response


def _shift(offset: object, seconds: float) -> None:
    offset.FromNanoseconds(offset.ToNanoseconds() + round(seconds * 1e9))  # type: ignore[attr-defined]


class _ReplayStream:
    """One stt call's requests: `head` (config and the audio to send again), then the
    feed's, each recorded on its way. Bound to a trunk call (rpc.Bindable) as the feed
    would be, or iterated."""

    def __init__(self, replay: Replay, head: list[Request]) -> None:
        self._replay, self._head = replay, head

    def bind(self, send: Callable[[Request], None], half_close: Callable[[], None]) -> None:
        replay, closed = self._replay, False
        for request in self._head:
            send(request)

        def record(request: Request) -> None:
            replay._record(request)
            send(request)

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                half_close()

        replay.feed.bind(record, close)
        if replay.feed.closed:  # closed while the last stream broke: nothing more will come
            close()

    def __aiter__(self) -> AsyncIterator[Request]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Request]:  # a trunk whose server went plain
        for request in self._head:
            yield request
        async for request in self._replay.feed:
            self._replay._record(request)
            yield request


def error_code(error: errors.DragomanError, stage: pb.ErrorCode.ValueType) -> pb.ErrorCode.ValueType:
    """The ConversationError code for a failed `stage` (ERROR_CODE_RECOGNITION_FAILED, ...):
    ERROR_CODE_SERVICE_UNAVAILABLE when its service could not be reached."""
    return pb.ERROR_CODE_SERVICE_UNAVAILABLE if isinstance(error, errors.Unavailable) else stage


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
        replay = self._replay(requests)
        if replay is None:
            try:
                async for response in self.stt.StreamingRecognize(requests):
                    yield response
            except grpc.aio.AioRpcError as e:
                raise errors.from_rpc_error(e, "speech recognition") from None
            return
        # stt_svc restarting mid-stream: a new stream, sent again what was not recognised in full
        while True:
            try:
                async for response in self.stt.StreamingRecognize(replay.stream()):
                    yield replay.take(response)
                return
            except grpc.aio.AioRpcError as e:
                error = errors.from_rpc_error(e, "speech recognition")
            if not (isinstance(error, errors.Unavailable) and replay.possible()
                    and await self._back("stt", RECOGNITION_WAIT_S)):
                raise error
            replay.restart()

    def _replay(self, requests: AsyncIterable[Request]) -> Replay | None:
        """A Replay of `requests` where a broken stream can be replaced: health
        watched, requests an rpc.Feed, and calls on a trunk, which binds the feed (a
        gRPC call iterates it, and the feed cannot yet be taken from a broken one)."""
        stt = self._channels[0]
        if (self.health is None or not isinstance(requests, rpc.Feed)
                or not isinstance(stt, mux.TrunkedChannel) or stt.plain):
            return None
        return Replay(requests)

    async def translate(self, source: str, target: str, text: str,
                        glossary: Glossary = NO_GLOSSARY) -> mt_pb2.Translation:
        request = mt_pb2.TranslateRequest(
            source_language_code=source, target_language_code=target, segments=[text],
            glossary=[mt_pb2.GlossaryEntry(source=s, target=t) for s, t in glossary.translations],
            do_not_translate=glossary.keep,
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
        self, text: str, language_code: str, voice: str, rate_hz: int, speed: float = 1.0
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        request = tts_pb2.SynthesizeRequest(
            text=text, language_code=language_code, voice=voice, sample_rate_hertz=rate_hz,
            encoding=tts_pb2.AUDIO_ENCODING_LINEAR16, speed=0.0 if speed == 1.0 else speed,
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
