"""From a validated request to a stream of encoded audio chunks.

`Synthesizer.plan()` checks a request and splits its text; `stream()` runs
the plan: a producer task synthesises the pieces in order and hands each
chunk over as soon as it exists, through a one-slot queue, so piece n+1 is
being synthesised while chunk n is sent. Each chunk has its edge silence
trimmed, gets the pause of the boundary before it, is resampled (one
stream resampler across chunks, so no clicks at the joins) and encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from dragoman import audio
from dragoman.errors import InvalidArgument, ResourceExhausted
from tts_svc import text as textsplit
from tts_svc.engines.base import AudioChunk, SynthesisRequest, TtsEngine, Voice
from tts_svc.voices import Choice, VoiceCatalog, primary_language

log = logging.getLogger("tts_svc.pipeline")

OUTPUT_RATES_HZ = audio.OUTPUT_RATES_HZ
TRIM_FLOOR_DB = -45.0
"""Edge frames this far below the loudest 10 ms frame count as silence."""
TRIM_MARGIN_MS = 20
CACHE_MAX_CHARS = 120
"""Only pieces up to this long are cached (frequent short phrases)."""
WARM_UP_TEXT = {
    "en": "Hello, the voice is ready to speak now.",
    "es": "Hola, la voz ya está lista para hablar.",
    "pt": "Olá, a voz já está pronta para falar.",
    "fr": "Bonjour, la voix est prête à parler.",
    "it": "Ciao, la voce è pronta a parlare.",
    "hi": "नमस्ते, आवाज़ अब बोलने के लिए तैयार है।",
}
"""A sentence per language of medium length, so the warm-up also sizes ONNX Runtime's buffers."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked request: who speaks which pieces, at which output rate."""

    choice: Choice
    pieces: tuple[textsplit.Piece, ...]
    output_rate_hz: int

    @property
    def voice(self) -> Voice:
        return self.choice.voice


@dataclass(frozen=True, slots=True)
class Chunk:
    """One encoded chunk of the output stream."""

    index: int
    pcm16: bytes
    sample_rate_hz: int
    text: str
    voice: str
    is_last: bool

    @property
    def duration_s(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate_hz


def trim_silence(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Drops leading and trailing silence, keeping a `TRIM_MARGIN_MS` margin."""
    frame = max(1, rate_hz // 100)
    frames = samples.size // frame
    if frames == 0:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[: frames * frame].reshape(frames, frame)), axis=1))
    peak = float(rms.max())
    if peak <= 1e-6:
        return samples[:0]
    loud = np.flatnonzero(rms >= peak * 10 ** (TRIM_FLOOR_DB / 20))
    margin = rate_hz * TRIM_MARGIN_MS // 1000
    start = max(0, int(loud[0]) * frame - margin)
    end = min(samples.size, (int(loud[-1]) + 1) * frame + margin)
    return samples[start:end]


class _PieceCache:
    """LRU of the audio of short pieces, by (voice, text)."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str], tuple[AudioChunk, ...]] = OrderedDict()

    def get(self, voice: str, text: str) -> tuple[AudioChunk, ...] | None:
        key = (voice, text)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, voice: str, text: str, chunks: tuple[AudioChunk, ...]) -> None:
        if self._max <= 0 or len(text) > CACHE_MAX_CHARS:
            return
        self._items[(voice, text)] = chunks
        self._items.move_to_end((voice, text))
        while len(self._items) > self._max:
            self._items.popitem(last=False)


class Synthesizer:
    """Plans and runs syntheses; at most `max_streams` run at once.

    Args:
        catalog: The voices and their engines.
        max_text_chars: Longest text accepted.
        max_streams: Concurrent streams; one more gets RESOURCE_EXHAUSTED.
        cache_entries: Short pieces whose audio is kept (0: no cache).
    """

    def __init__(
        self,
        catalog: VoiceCatalog,
        *,
        max_text_chars: int,
        max_streams: int,
        cache_entries: int = 256,
    ) -> None:
        self.catalog = catalog
        self._max_text_chars = max_text_chars
        self._max_streams = max_streams
        self._slots = asyncio.BoundedSemaphore(max_streams)
        self._cache = _PieceCache(cache_entries)

    def plan(self, text: str, language_code: str, voice: str, sample_rate_hz: int) -> Plan:
        """Checks a request; every problem is INVALID_ARGUMENT or NOT_FOUND naming it."""
        if not text.strip():
            raise InvalidArgument("text is empty")
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"text has {len(text)} characters; the limit is {self._max_text_chars}")
        choice = self.catalog.choose(language_code, voice)
        if sample_rate_hz != 0 and sample_rate_hz not in OUTPUT_RATES_HZ:
            raise InvalidArgument(
                f"sample_rate_hertz {sample_rate_hz} is not supported; use 0 (the voice's own "
                f"rate) or one of {', '.join(map(str, OUTPUT_RATES_HZ))}"
            )
        pieces = textsplit.split(text, primary_language(language_code))
        if not pieces:
            raise InvalidArgument("text has nothing to speak (no letters or digits)")
        return Plan(choice, tuple(pieces), sample_rate_hz or choice.voice.sample_rate_hz)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            raise ResourceExhausted(
                f"all {self._max_streams} synthesis slots are busy; retry shortly",
                retry_after_s=0.5,
            )
        async with self._slots:
            yield

    async def stream(self, plan: Plan) -> AsyncIterator[Chunk]:
        """Runs `plan`, yielding each chunk as soon as it is ready."""
        async with self._slot():
            queue: asyncio.Queue[Chunk | Exception | None] = asyncio.Queue(maxsize=1)
            # A bare task rather than a TaskGroup: the caller may stop at any
            # yield, and errors must reach it unwrapped to map to a status.
            producer = asyncio.create_task(self._produce(plan, queue))
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer

    async def _produce(self, plan: Plan, queue: asyncio.Queue[Chunk | Exception | None]) -> None:
        try:
            await self._synthesize(plan, queue)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # handed to the consumer, which raises it
            await queue.put(e)
        else:
            await queue.put(None)

    async def _synthesize(self, plan: Plan, queue: asyncio.Queue[Chunk | Exception | None]) -> None:
        voice = plan.voice
        resampler = audio.StreamResampler(voice.sample_rate_hz, plan.output_rate_hz)
        index, pause_ms = 0, 0
        started = time.perf_counter()

        async def send(samples: np.ndarray, piece_text: str, is_last: bool) -> None:
            nonlocal index
            out = resampler.process(samples, last=is_last)
            await queue.put(
                Chunk(index, audio.float_to_pcm16(out), plan.output_rate_hz, piece_text, voice.name, is_last)
            )
            if index == 0:
                log.info(
                    "first chunk",
                    extra={"voice": voice.name, "ms": round((time.perf_counter() - started) * 1e3)},
                )
            index += 1

        last_piece = len(plan.pieces) - 1
        for n, piece in enumerate(plan.pieces):
            held: np.ndarray | None = None  # the last piece's chunk, until we know it is the last
            async for chunk in self._piece_audio(plan.choice, piece.text):
                samples = trim_silence(chunk.samples, chunk.sample_rate_hz)
                if samples.size == 0:
                    continue
                if pause_ms:
                    silence = np.zeros(voice.sample_rate_hz * pause_ms // 1000, np.float32)
                    samples, pause_ms = np.concatenate([silence, samples]), 0
                if n < last_piece:
                    await send(samples, piece.text, is_last=False)
                    continue
                if held is not None:
                    await send(held, piece.text, is_last=False)
                held = samples
            if n < last_piece:
                pause_ms += piece.pause_after_ms
            elif held is not None:
                await send(held, piece.text, is_last=True)
            elif index:  # the last piece was silent: close the stream with an empty chunk
                await send(np.zeros(0, np.float32), "", is_last=True)
            else:
                raise InvalidArgument(f"voice {voice.name} found nothing to pronounce in the text")

    async def _piece_audio(self, choice: Choice, text: str) -> AsyncIterator[AudioChunk]:
        cached = self._cache.get(choice.voice.name, text)
        if cached is not None:
            for chunk in cached:
                yield chunk
            return
        made: list[AudioChunk] = []
        async for chunk in choice.engine.synthesize(SynthesisRequest(text, choice.voice.name)):
            made.append(chunk)
            yield chunk
        self._cache.put(choice.voice.name, text, tuple(made))

    async def warm_up(self, engines: Sequence[TtsEngine]) -> None:
        """One synthesis per engine, so the first request is as fast as later ones."""
        for engine in engines:
            voices = engine.capabilities.voices
            if not voices:
                continue
            voice = next((v for v in voices if self.catalog.is_default(v)), voices[0])
            words = WARM_UP_TEXT.get(primary_language(voice.language_code), "Hello.")
            started = time.perf_counter()
            async for _ in engine.synthesize(SynthesisRequest(words, voice.name)):
                pass
            log.info(
                "warmed up",
                extra={
                    "engine": engine.capabilities.name,
                    "voice": voice.name,
                    "ms": round((time.perf_counter() - started) * 1e3),
                },
            )
