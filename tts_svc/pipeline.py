"""From a validated request to a stream of encoded audio chunks.

`Synthesizer.plan()` checks a request and splits its text; `stream()` runs
the plan: a producer task synthesises the pieces in order and hands each
chunk over as soon as it exists, through a one-slot queue, so piece n+1 is
being synthesised while chunk n is sent. Each piece is normalised for the
engine (`normalize`), each chunk has its edge silence trimmed, gets the
pause of the boundary before it, is resampled (one stream resampler
across chunks, so no clicks at the joins) and encoded (`encoding`).

A finished stream of a short text is kept in the audio cache (`cache`),
keyed by everything that changes its bytes; the same request again
replays those bytes without synthesising.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from dragoman import audio
from dragoman.errors import InvalidArgument, ResourceExhausted
from tts_svc import encoding as encodings
from tts_svc import normalize
from tts_svc import text as textsplit
from tts_svc.cache import AudioCache, MemoryCache
from tts_svc.encoding import Encoding
from tts_svc.engines.base import SynthesisRequest, TtsEngine, Voice
from tts_svc.voices import Choice, VoiceCatalog, primary_language

log = logging.getLogger(__name__)

TRIM_FLOOR_DB = -45.0
"""Edge frames this far below the loudest 10 ms frame count as silence."""
TRIM_MARGIN_MS = 20
CACHE_MAX_CHARS = 200
"""Only texts up to this long are cached (frequent short phrases)."""
CACHE_FORMAT = 1
"""Part of every cache key: bump it when the processing here changes the audio."""
MIN_SPEED, MAX_SPEED = 0.5, 2.0
"""Speaking rates a request may ask for, relative to the voice's own."""
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
    """A checked request: who speaks which pieces, how the audio is encoded, its cache key."""

    choice: Choice
    language: str
    pieces: tuple[textsplit.Piece, ...]
    output_rate_hz: int
    encoding: Encoding
    cache_key: str | None
    speed: float = 1.0
    """Asked of the engine: 1 when it cannot change its rate."""

    @property
    def voice(self) -> Voice:
        return self.choice.voice


@dataclass(frozen=True, slots=True)
class Chunk:
    """One encoded chunk of the output stream."""

    index: int
    audio: bytes
    sample_rate_hz: int
    text: str
    voice: str
    is_last: bool
    duration_s: float


def checked_speed(speed: float) -> float:
    """A request's speed (0: the voice's own rate, 1), rounded so that float32 noise does
    not split the cache; outside `MIN_SPEED`..`MAX_SPEED` it is INVALID_ARGUMENT."""
    if speed == 0:
        return 1.0
    if not MIN_SPEED <= speed <= MAX_SPEED:  # NaN too
        raise InvalidArgument(
            f"speed {speed:g} is out of range; use 0 (the voice's own rate) or "
            f"{MIN_SPEED:g} to {MAX_SPEED:g}"
        )
    return round(speed, 3)


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


def cache_key(
    text: str, language: str, choice: Choice, rate_hz: int, encoding: Encoding, speed: float = 1.0
) -> str:
    """Everything that changes the bytes of a synthesis, hashed."""
    caps = choice.engine.capabilities
    fields = [
        CACHE_FORMAT,
        text,
        language,
        choice.voice.name,
        rate_hz,
        encoding.value,
        caps.name,
        caps.version,
    ]
    if speed != 1.0:  # only then, so that the keys of the voice's own rate stay as they were
        fields.append(speed)
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


_HEADER = struct.Struct("<4sI")
_ENTRY = struct.Struct("<IIdII")
_MAGIC = b"TTS1"


def pack(chunks: Sequence[Chunk]) -> bytes:
    """The chunks of a stream as one cache value."""
    out = [_HEADER.pack(_MAGIC, len(chunks))]
    for c in chunks:
        text, voice = c.text.encode(), c.voice.encode()
        out.append(_ENTRY.pack(c.sample_rate_hz, len(c.audio), c.duration_s, len(text), len(voice)))
        out += [c.audio, text, voice]
    return b"".join(out)


def unpack(data: bytes) -> list[Chunk] | None:
    """The chunks `pack` stored; None for a value in another format."""
    try:
        magic, count = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            return None
        offset, chunks = _HEADER.size, []
        for index in range(count):
            rate_hz, n_audio, duration_s, n_text, n_voice = _ENTRY.unpack_from(data, offset)
            offset += _ENTRY.size
            body = data[offset : offset + n_audio + n_text + n_voice]
            offset += n_audio + n_text + n_voice
            text, voice = body[n_audio : n_audio + n_text].decode(), body[n_audio + n_text :].decode()
            chunks.append(Chunk(index, body[:n_audio], rate_hz, text, voice, index == count - 1, duration_s))
        return chunks if offset == len(data) else None
    except (struct.error, UnicodeDecodeError):
        return None


class Synthesizer:
    """Plans and runs syntheses; at most `max_streams` run at once.

    Args:
        catalog: The voices and their engines.
        max_text_chars: Longest text accepted.
        max_streams: Concurrent streams; one more gets RESOURCE_EXHAUSTED.
        cache: Where finished streams of short texts are kept (default: an
            in-process LRU of 256).
    """

    def __init__(
        self,
        catalog: VoiceCatalog,
        *,
        max_text_chars: int,
        max_streams: int,
        cache: AudioCache | None = None,
    ) -> None:
        self.catalog = catalog
        self.cache: AudioCache = cache if cache is not None else MemoryCache()
        self._max_text_chars = max_text_chars
        self._max_streams = max_streams
        self._slots = asyncio.BoundedSemaphore(max_streams)

    def plan(
        self,
        text: str,
        language_code: str,
        voice: str,
        sample_rate_hz: int,
        encoding: Encoding = Encoding.LINEAR16,
        speed: float = 0.0,
    ) -> Plan:
        """Checks a request; every problem is INVALID_ARGUMENT or NOT_FOUND naming it."""
        speed = checked_speed(speed)
        if not text.strip():
            raise InvalidArgument("text is empty")
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"text has {len(text)} characters; the limit is {self._max_text_chars}")
        choice = self.catalog.choose(language_code, voice)
        rate_hz = encodings.output_rate(encoding, sample_rate_hz, choice.voice.sample_rate_hz)
        language = primary_language(language_code)
        caps = choice.engine.capabilities
        pieces = textsplit.split(text, language, first_words=caps.first_piece_words)
        if not pieces:
            raise InvalidArgument("text has nothing to speak (no letters or digits)")
        if not caps.speeds:  # the voice speaks at its own rate: its audio is the same
            speed = 1.0
        key = (cache_key(text, language, choice, rate_hz, encoding, speed)
               if len(text) <= CACHE_MAX_CHARS else None)
        return Plan(choice, language, tuple(pieces), rate_hz, encoding, key, speed)

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
        """Runs `plan`, yielding each chunk as soon as it is ready (or the cached ones)."""
        async with self._slot():
            cached = await self._cached(plan)
            if cached is not None:
                for chunk in cached:
                    yield chunk
                return
            made: list[Chunk] = []
            async for chunk in self._run(plan):
                made.append(chunk)
                yield chunk
            if plan.cache_key is not None:
                await self.cache.put(plan.cache_key, pack(made))

    async def _cached(self, plan: Plan) -> list[Chunk] | None:
        if plan.cache_key is None:
            return None
        data = await self.cache.get(plan.cache_key)
        chunks = unpack(data) if data is not None else None
        if chunks is not None:
            log.info("cache hit", extra={"voice": plan.voice.name, "chunks": len(chunks)})
        return chunks

    async def _run(self, plan: Plan) -> AsyncIterator[Chunk]:
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
        encoder = encodings.new_encoder(plan.encoding, plan.output_rate_hz)
        index, pause_ms = 0, 0
        started = time.perf_counter()

        async def send(samples: np.ndarray, piece_text: str, is_last: bool) -> None:
            nonlocal index
            encoded = encoder.encode(resampler.process(samples, last=is_last), is_last)
            chunk = Chunk(
                index, encoded.data, plan.output_rate_hz, piece_text, voice.name, is_last, encoded.duration_s
            )
            await queue.put(chunk)
            if index == 0:
                log.info(
                    "first chunk",
                    extra={"voice": voice.name, "ms": round((time.perf_counter() - started) * 1e3)},
                )
            index += 1

        last_piece = len(plan.pieces) - 1
        for n, piece in enumerate(plan.pieces):
            held: np.ndarray | None = None  # the last piece's chunk, until we know it is the last
            request = SynthesisRequest(
                normalize.normalize(piece.text, plan.language), voice.name, plan.speed)
            async for chunk in plan.choice.engine.synthesize(request):
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

    async def warm_up(self, engines: Sequence[TtsEngine]) -> None:
        """One synthesis per engine (and one Opus encoder), so the first request is as
        fast as later ones."""
        encodings.new_encoder(Encoding.OGG_OPUS, encodings.OPUS_RATES_HZ[-1]).encode(
            np.zeros(960, np.float32), last=True
        )
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
