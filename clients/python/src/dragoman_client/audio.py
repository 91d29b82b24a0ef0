"""Audio for `Session.converse`: PCM16 mono in chunks of about 100 ms from WAV files or
the microphone, and Ogg Opus files page by page.

    async for event in session.converse(wav_chunks("hello.wav"), sample_rate=read_wav("hello.wav")[1]):
    async for event in session.converse(ogg_chunks("hello.ogg"), encoding="ogg_opus"):
    async for event in session.converse(microphone(16_000)):      # the `mic` extra
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

CHUNK_MS = 100
"""The chunk length the API expects (about 100 ms; a chunk is at most 64 KiB)."""
MAX_CHUNK_BYTES = 64 * 1024
_OGG_HEADER = 27


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """A mono 16-bit WAV file's samples (PCM16 little-endian) and its sample rate."""
    with wave.open(str(path)) as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError(f"{path}: need mono 16-bit PCM, got {f.getnchannels()} channels of "
                             f"{8 * f.getsampwidth()} bits")
        return f.readframes(f.getnframes()), f.getframerate()


def write_wav(path: str | Path, pcm16: bytes, sample_rate: int) -> None:
    """Writes PCM16 mono (e.g. the joined `SpeechAudio.data` of an utterance) as a WAV file."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm16)


def split(pcm16: bytes, sample_rate: int, chunk_ms: int = CHUNK_MS) -> Iterator[bytes]:
    """`pcm16` in chunks of `chunk_ms` (the last one shorter)."""
    step = sample_rate * chunk_ms // 1000 * 2
    for start in range(0, len(pcm16), step):
        yield pcm16[start:start + step]


async def paced(chunks: Iterable[bytes], sample_rate: int, *, speed: float = 1.0) -> AsyncIterator[bytes]:
    """`chunks` of PCM16 at `speed` times real time (1: as a microphone would give them;
    the gateway refuses audio much faster than real time, 2x by default)."""
    start, sent = time.monotonic(), 0.0
    for chunk in chunks:
        await asyncio.sleep(max(0.0, start + sent / speed - time.monotonic()))
        yield chunk
        sent += len(chunk) / 2 / sample_rate


async def wav_chunks(path: str | Path, *, realtime: bool = True, speed: float = 1.0,
                     silence_ms: int = 0) -> AsyncIterator[bytes]:
    """A WAV file as 100 ms chunks, paced at `speed` times real time unless `realtime` is
    False, then `silence_ms` of silence (which ends the last utterance sooner)."""
    pcm, rate = read_wav(path)
    pcm += bytes(rate * silence_ms // 1000 * 2)
    chunks = split(pcm, rate)
    if realtime:
        async for chunk in paced(chunks, rate, speed=speed):
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


def ogg_pages(data: bytes) -> Iterator[tuple[bytes, float]]:
    """The pages of an Ogg Opus stream (RFC 7845), each with the time its audio ends, in
    seconds (its granule position at 48 kHz; 0 for the header pages)."""
    at = 0
    while at < len(data):
        if data[at:at + 4] != b"OggS" or len(data) < at + _OGG_HEADER:
            raise ValueError(f"not an Ogg stream: no page at byte {at}")
        segments = data[at + 26]
        end = at + _OGG_HEADER + segments + sum(data[at + _OGG_HEADER:at + _OGG_HEADER + segments])
        granule = int.from_bytes(data[at + 6:at + 14], "little", signed=True)
        yield data[at:end], max(0, granule) / 48_000
        at = end


async def ogg_chunks(path: str | Path, *, realtime: bool = True, speed: float = 1.0) -> AsyncIterator[bytes]:
    """An Ogg Opus file (send it with `converse(..., encoding="ogg_opus")`) as its pages,
    the two header pages first as one chunk, each page sent once the audio before it has
    played at `speed` times real time unless `realtime` is False."""
    data = Path(path).read_bytes()
    if b"OpusHead" not in data[:_OGG_HEADER + 255 + 8]:
        raise ValueError(f"{path}: not an Ogg Opus file (no OpusHead)")
    pages = list(ogg_pages(data))
    start, played = time.monotonic(), 0.0
    yield pages[0][0] + pages[1][0] if len(pages) > 1 else pages[0][0]
    for page, ends in pages[2:]:
        if realtime:
            await asyncio.sleep(max(0.0, start + played / speed - time.monotonic()))
        for piece in range(0, len(page), MAX_CHUNK_BYTES):
            yield page[piece:piece + MAX_CHUNK_BYTES]
        played = max(played, ends)


async def microphone(sample_rate: int = 16_000, *, chunk_ms: int = CHUNK_MS,
                     device: int | str | None = None) -> AsyncIterator[bytes]:
    """The default (or `device`) microphone as PCM16 mono chunks of `chunk_ms`, until the
    iteration stops. Needs the `mic` extra: `pip install 'dragoman-client[mic]'`
    (sounddevice, over PortAudio)."""
    try:
        import sounddevice  # optional: only microphone users install it
    except ImportError as e:
        raise ImportError(
            "dragoman_client.audio.microphone needs the 'mic' extra: "
            f"pip install 'dragoman-client[mic]' ({e})", name="sounddevice") from None
    except OSError as e:
        raise ImportError(f"sounddevice could not load PortAudio: {e}", name="sounddevice") from None
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def captured(data: Any, frames: int, when: Any, status: Any) -> None:  # PortAudio's thread
        loop.call_soon_threadsafe(chunks.put_nowait, bytes(data))

    with sounddevice.RawInputStream(samplerate=sample_rate, channels=1, dtype="int16", device=device,
                                    blocksize=sample_rate * chunk_ms // 1000, callback=captured):
        while True:
            yield await chunks.get()
