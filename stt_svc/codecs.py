"""Audio decoders for the stream: client bytes in, 16 kHz mono float32 out.

LINEAR16 is PCM16 at the configured rate, resampled. OGG_OPUS is an Ogg
stream of Opus packets (RFC 7845), as `opusenc` or Firefox's MediaRecorder
write it: pages are parsed as bytes arrive, whatever the chunking, and each
packet goes to FFmpeg's Opus decoder (PyAV); the 48 kHz output is mixed to
mono, the encoder's pre-skip dropped, and the rest resampled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from dragoman import audio
from dragoman.errors import InvalidArgument
from dragoman.ogg import OggPackets

if TYPE_CHECKING:
    import av

OPUS_RATE_HZ = 48_000


class AudioDecoder(Protocol):
    def decode(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples that `data` completes."""
        ...

    def flush(self) -> np.ndarray:
        """Whatever is held back, at the end of the stream."""
        ...


class Pcm16Decoder:
    """Signed 16-bit little-endian mono PCM at `rate_hz`."""

    def __init__(self, rate_hz: int) -> None:
        self._resampler = audio.StreamResampler(rate_hz, audio.STT_RATE_HZ)

    def decode(self, data: bytes) -> np.ndarray:
        return self._resampler.process(audio.pcm16_to_float(data))

    def flush(self) -> np.ndarray:
        return self._resampler.process(np.zeros(0, np.float32), last=True)


class OggOpusDecoder:
    """Ogg Opus (mono or stereo) to 16 kHz mono."""

    def __init__(self) -> None:
        self._ogg = OggPackets()
        self._codec: av.AudioCodecContext | None = None
        self._tags_seen = False
        self._skip = 0
        self._resampler = audio.StreamResampler(OPUS_RATE_HZ, audio.STT_RATE_HZ)

    def decode(self, data: bytes) -> np.ndarray:
        parts = [self._decode_packet(p) for p in self._ogg.feed(data)]
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return self._resampler.process(samples)

    def flush(self) -> np.ndarray:
        return self._resampler.process(np.zeros(0, np.float32), last=True)

    def _decode_packet(self, packet: bytes) -> np.ndarray:
        import av

        if self._codec is None:
            if not packet.startswith(b"OpusHead") or len(packet) < 19:
                raise InvalidArgument("OGG_OPUS audio must begin with an OpusHead packet")
            self._codec = av.CodecContext.create("opus", "r")  # type: ignore[assignment]
            self._codec.extradata = packet  # type: ignore[union-attr]
            self._skip = int.from_bytes(packet[10:12], "little")
            return np.zeros(0, np.float32)
        if not self._tags_seen and packet.startswith(b"OpusTags"):
            self._tags_seen = True
            return np.zeros(0, np.float32)
        try:
            frames = self._codec.decode(av.Packet(packet))
        except av.error.FFmpegError as e:
            raise InvalidArgument(f"undecodable Opus packet ({e})") from None
        parts = [f.to_ndarray().reshape(len(f.layout.channels), -1).mean(axis=0) for f in frames]
        samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        skipped = min(self._skip, len(samples))
        self._skip -= skipped
        return samples[skipped:]
