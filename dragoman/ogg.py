"""Ogg Opus as bytes arrive (RFC 7845): packets out of pages, and how long a packet plays.

stt_svc decodes the packets; session_svc counts their duration against a
speaker's audio limit without decoding anything (`packet_seconds` reads the
table-of-contents byte, RFC 6716 section 3.1, which the decoder obeys too).
"""

from __future__ import annotations

import io

from dragoman.errors import InvalidArgument

MAX_PACKET_BYTES = 256 * 1024
_PAGE_HEADER_BYTES = 27


class OggPackets:
    """Incremental Ogg demuxer: bytes in, complete packets of the first logical stream out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._packet = bytearray()
        self._serial: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= _PAGE_HEADER_BYTES:
            if self._buffer[:4] != b"OggS":
                raise InvalidArgument("OGG_OPUS audio is not an Ogg stream (no OggS page here)")
            header = _PAGE_HEADER_BYTES + self._buffer[26]
            if len(self._buffer) < header:
                break
            lacing = self._buffer[_PAGE_HEADER_BYTES:header]
            end = header + sum(lacing)
            if len(self._buffer) < end:
                break
            serial = bytes(self._buffer[14:18])
            self._serial = self._serial or serial
            if serial == self._serial:
                packets += self._packets(lacing, header)
            del self._buffer[:end]
        return packets

    def _packets(self, lacing: bytearray, position: int) -> list[bytes]:
        packets = []
        for size in lacing:
            self._packet += self._buffer[position : position + size]
            position += size
            if len(self._packet) > MAX_PACKET_BYTES:
                raise InvalidArgument(f"Ogg packet larger than {MAX_PACKET_BYTES} bytes")
            if size < 255:  # a lacing value under 255 ends the packet
                packets.append(bytes(self._packet))
                self._packet.clear()
        return packets


_SILK_MS = (10.0, 20.0, 40.0, 60.0)
_HYBRID_MS = (10.0, 20.0)
_CELT_MS = (2.5, 5.0, 10.0, 20.0)


def packet_seconds(packet: bytes) -> float:
    """How long an Opus audio packet plays: its frame size times its frame count (TOC byte)."""
    if not packet:
        return 0.0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame_ms = _SILK_MS[config % 4]
    elif config < 16:
        frame_ms = _HYBRID_MS[config % 2]
    else:
        frame_ms = _CELT_MS[config % 4]
    code = toc & 3
    frames = 1 if code == 0 else 2 if code < 3 else (packet[1] & 0x3F if len(packet) > 1 else 0)
    return frames * frame_ms / 1000


class OpusDuration:
    """Seconds of Opus audio in an Ogg stream fed in chunks of any size."""

    def __init__(self) -> None:
        self._ogg = OggPackets()
        self._headers = 2  # OpusHead, OpusTags: no audio

    def feed(self, data: bytes) -> float:
        seconds = 0.0
        for packet in self._ogg.feed(data):
            if self._headers and packet[:8] in (b"OpusHead", b"OpusTags"):
                self._headers -= 1
                continue
            seconds += packet_seconds(packet)
        return seconds


OPUS_RATE_HZ = 48_000


def encode_opus(pcm: bytes, rate_hz: int, bitrate_bps: int = 24_000) -> bytes:
    """Mono PCM16 at `rate_hz` as an Ogg Opus file (48 kHz), which browsers play as it is.
    FFmpeg's libopus through PyAV, imported here: only recordings encode."""
    import av  # noqa: PLC0415 - heavy, and only session_svc's recordings need it
    import numpy as np  # noqa: PLC0415

    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=OPUS_RATE_HZ, layout="mono")
        stream.bit_rate = bitrate_bps
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], np.int16).reshape(1, -1)
        if samples.size:  # no audio: the headers alone, a file that plays nothing
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = rate_hz
            resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE_HZ)
            for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
                for packet in stream.encode(resampled):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
