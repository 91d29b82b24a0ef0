"""Audio helpers: PCM16 <-> float32, resampling, decoding files, writing WAV.

Inside the mesh audio is 16-bit little-endian mono PCM; engines work on
float32 in [-1, 1]. Resampling uses soxr (high quality, streaming-capable).
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import soxr

from dragoman.errors import InvalidArgument

STT_RATE_HZ = 16_000
MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 48_000
OUTPUT_RATES_HZ = (16_000, 22_050, 24_000, 48_000)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """PCM16 bytes to float32 samples; an odd byte count is INVALID_ARGUMENT."""
    if len(data) % 2:
        raise InvalidArgument(
            f"LINEAR16 audio must have an even number of bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 samples to PCM16 bytes, clipped to the 16-bit range."""
    clipped = np.clip(samples, -1.0, 32767.0 / 32768.0)
    return (clipped * 32768.0).astype("<i2").tobytes()


def check_rate(rate_hz: int, what: str = "sample_rate_hertz") -> int:
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise InvalidArgument(
            f"{what} must be between {MIN_RATE_HZ} and {MAX_RATE_HZ} Hz, got {rate_hz}"
        )
    return rate_hz


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    if from_hz == to_hz or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32, copy=False), from_hz, to_hz).astype(
        np.float32, copy=False
    )


class StreamResampler:
    """Resamples a stream chunk by chunk without clicks at chunk borders."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz, self.to_hz = from_hz, to_hz
        self._rs = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, "float32")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return samples
        return self._rs.resample_chunk(samples.astype(np.float32, copy=False), last=last)


def decode_file(path: str | Path, rate_hz: int = STT_RATE_HZ) -> np.ndarray:
    """Decodes any audio file PyAV (FFmpeg) reads to mono float32 at `rate_hz`."""
    import av  # bundled with faster-whisper; imported lazily, it is large

    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
            parts = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except (av.error.FFmpegError, ValueError, IndexError) as e:  # an empty file is EOFError
        raise InvalidArgument(f"{path}: not a readable audio file ({e})") from None
    if not parts:
        return np.zeros(0, np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def wav_bytes(pcm16: bytes, rate_hz: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm16)
    return buf.getvalue()


def write_wav(path: str | Path, pcm16: bytes, rate_hz: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(pcm16, rate_hz))
    return path


def chunks(pcm16: bytes, rate_hz: int, chunk_ms: int = 100) -> list[bytes]:
    """Splits PCM16 into chunks of `chunk_ms` (the last may be shorter)."""
    step = rate_hz * chunk_ms // 1000 * 2
    return [pcm16[i : i + step] for i in range(0, len(pcm16), step)]
