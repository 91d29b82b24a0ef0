"""Audio for `Session.converse`: PCM16 mono in chunks of about 100 ms, and WAV files.

    async for event in session.converse(wav_chunks("hello.wav"), sample_rate=wav_rate("hello.wav")):
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

CHUNK_MS = 100
"""The chunk length the API expects (about 100 ms; a chunk is at most 64 KiB)."""


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


async def paced(chunks: Iterator[bytes], sample_rate: int) -> AsyncIterator[bytes]:
    """`chunks` of PCM16 no faster than real time, as a microphone would give them
    (the gateway refuses audio much faster than real time)."""
    start, sent = time.monotonic(), 0.0
    for chunk in chunks:
        await asyncio.sleep(max(0.0, start + sent - time.monotonic()))
        yield chunk
        sent += len(chunk) / 2 / sample_rate


async def wav_chunks(path: str | Path, *, realtime: bool = True, silence_ms: int = 0) -> AsyncIterator[bytes]:
    """A WAV file as 100 ms chunks, paced in real time unless `realtime` is False, then
    `silence_ms` of silence (which ends the last utterance sooner)."""
    pcm, rate = read_wav(path)
    pcm += bytes(rate * silence_ms // 1000 * 2)
    chunks = split(pcm, rate)
    if realtime:
        async for chunk in paced(chunks, rate):
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
