"""Encoding the audio of a stream chunk by chunk: raw PCM16, or Ogg Opus.

Ogg Opus (RFC 7845) chunks are whole Ogg pages: the first chunk starts with
the two header pages (OpusHead, OpusTags), the last ends the stream (EOS),
and the chunks of a stream joined in order are one valid .opus file. libopus
encodes 20 ms frames, so up to 20 ms of a chunk's tail waits for the next
chunk (a chunk's tail is its trimmed silence margin), and the last chunk
flushes everything. The encoder is FFmpeg's libopus through PyAV (bundled
with faster-whisper); the Ogg framing is written here, because FFmpeg's Ogg
muxer holds pages back and cannot be told to end one at a chunk boundary.
"""

from __future__ import annotations

import enum
import secrets
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from dragoman import audio
from dragoman.errors import InvalidArgument


class Encoding(enum.Enum):
    """How the audio bytes of a stream are encoded."""

    LINEAR16 = "LINEAR16"
    OGG_OPUS = "OGG_OPUS"


PCM_RATES_HZ = audio.OUTPUT_RATES_HZ
OPUS_RATES_HZ = (16_000, 24_000, 48_000)
OPUS_BITRATE_BPS = 32_000
"""Mono speech: transparent enough at 24-32 kbit/s."""
OPUS_FRAME_MS = 20
_OPUS_GRANULE_HZ = 48_000  # Ogg Opus granule positions always count 48 kHz samples


def output_rate(encoding: Encoding, requested_hz: int, voice_hz: int) -> int:
    """The rate a stream is encoded at; an unsupported one is INVALID_ARGUMENT.

    0 asks for the voice's own rate; for Opus, which takes only some rates,
    48 kHz when the voice's rate is not one of them.
    """
    rates = OPUS_RATES_HZ if encoding is Encoding.OGG_OPUS else PCM_RATES_HZ
    if requested_hz == 0:
        return voice_hz if voice_hz in rates else rates[-1]
    if requested_hz not in rates:
        extra = f" with {encoding.value}" if encoding is Encoding.OGG_OPUS else ""
        raise InvalidArgument(
            f"sample_rate_hertz {requested_hz} is not supported{extra}; use 0 (the voice's own "
            f"rate) or one of {', '.join(map(str, rates))}"
        )
    return requested_hz


@dataclass(frozen=True, slots=True)
class Encoded:
    """The bytes of one chunk and the duration of the audio they hold."""

    data: bytes
    duration_s: float


class Encoder(Protocol):
    """Encodes one stream; `encode` is called once per chunk, `last=True` on the last."""

    def encode(self, samples: np.ndarray, last: bool) -> Encoded: ...


class Pcm16Encoder:
    """Signed 16-bit little-endian mono PCM."""

    def __init__(self, rate_hz: int) -> None:
        self._rate_hz = rate_hz

    def encode(self, samples: np.ndarray, last: bool) -> Encoded:
        return Encoded(audio.float_to_pcm16(samples), samples.size / self._rate_hz)


def new_encoder(encoding: Encoding, rate_hz: int) -> Encoder:
    if encoding is Encoding.OGG_OPUS:
        return OggOpusEncoder(rate_hz)
    return Pcm16Encoder(rate_hz)


# -- Ogg framing (RFC 3533) ------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no final xor)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


class OggWriter:
    """Pages of one logical Ogg stream."""

    MAX_SEGMENTS = 255

    def __init__(self, serial: int) -> None:
        self._serial = serial
        self._sequence = 0

    def pages(self, packets: list[tuple[bytes, int]], *, bos: bool = False, eos: bool = False) -> bytes:
        """Pages holding `packets` (each with the granule position at its end), in order.

        A page ends where 255 segments are full; `eos` marks the last page (an
        empty one when there are no packets).
        """
        out = bytearray()
        page: list[bytes] = []
        segments: list[int] = []
        granule = -1  # no packet ends on the page
        for n, (packet, packet_granule) in enumerate(packets):
            lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
            if len(segments) + len(lacing) > self.MAX_SEGMENTS and page:
                out += self._page(page, segments, granule, bos=bos, eos=False)
                page, segments, granule, bos = [], [], -1, False
            page.append(packet)
            segments += lacing
            granule = packet_granule
            if n == len(packets) - 1 or len(segments) == self.MAX_SEGMENTS:
                out += self._page(page, segments, granule, bos=bos, eos=eos and n == len(packets) - 1)
                page, segments, granule, bos = [], [], -1, False
        if not packets and (eos or bos):
            out += self._page([], [], granule, bos=bos, eos=eos)
        return bytes(out)

    def _page(
        self, packets: list[bytes], segments: list[int], granule: int, *, bos: bool, eos: bool
    ) -> bytes:
        flags = (0x02 if bos else 0) | (0x04 if eos else 0)
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self._serial, self._sequence, 0, len(segments)
        )
        self._sequence += 1
        page = bytearray(header + bytes(segments) + b"".join(packets))
        page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
        return bytes(page)


# -- Opus ------------------------------------------------------------------------


class OggOpusEncoder:
    """Mono Ogg Opus at `rate_hz` (one of `OPUS_RATES_HZ`)."""

    def __init__(self, rate_hz: int, bitrate_bps: int = OPUS_BITRATE_BPS) -> None:
        import av  # bundled with faster-whisper; large, so imported on first use

        self._av = av
        self._rate_hz = rate_hz
        self._codec: Any = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = rate_hz
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._codec.bit_rate = bitrate_bps
        self._codec.time_base = Fraction(1, rate_hz)
        self._codec.open()
        self._frame = self._codec.frame_size  # 20 ms
        head = bytes(self._codec.extradata or b"")  # OpusHead, with the encoder's pre-skip
        self._pre_skip = struct.unpack_from("<H", head, 10)[0]
        self._ogg = OggWriter(secrets.randbits(32))
        self._headers = self._ogg.pages([(head, 0)], bos=True) + self._ogg.pages([(_opus_tags(), 0)])
        self._pending = np.zeros(0, np.int16)
        self._pts = 0
        self._granule = self._pre_skip  # granule positions count the pre-skip too

    def encode(self, samples: np.ndarray, last: bool) -> Encoded:
        pcm = np.frombuffer(audio.float_to_pcm16(samples), "<i2")
        self._pending = np.concatenate([self._pending, pcm])
        whole = self._pending.size if last else self._pending.size - self._pending.size % self._frame
        packets = []
        for start in range(0, whole, self._frame):
            packets += self._packets(self._pending[start : start + self._frame])
        self._pending = self._pending[whole:]
        if last:
            packets += self._packets(None)
        headers, self._headers = self._headers, b""
        before = self._granule
        if packets:
            self._granule = packets[-1][1]
        data = headers + self._ogg.pages(packets, eos=last)
        return Encoded(data, (self._granule - before) / _OPUS_GRANULE_HZ)

    def _packets(self, pcm: np.ndarray | None) -> list[tuple[bytes, int]]:
        frame = None
        if pcm is not None:
            frame = self._av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self._rate_hz
            frame.pts = self._pts
            self._pts += pcm.size
        scale = _OPUS_GRANULE_HZ // self._rate_hz
        return [(bytes(p), (p.pts + p.duration) * scale + self._pre_skip) for p in self._codec.encode(frame)]


def _opus_tags(vendor: bytes = b"dragoman tts_svc") -> bytes:
    return b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
