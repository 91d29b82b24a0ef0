"""Unit tests of the chunk encoders (tts_svc.encoding): PCM16 and Ogg Opus, decoded back with FFmpeg."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from dragoman.errors import InvalidArgument
from tests.tts_svc.conftest import decode_ogg
from tts_svc.encoding import (
    Encoding,
    OggOpusEncoder,
    OggWriter,
    Pcm16Encoder,
    ogg_crc,
    output_rate,
)


def tone(rate_hz: int, seconds: float, pitch_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * pitch_hz * t)).astype(np.float32)


def pages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(flags, granule, page bytes) of each Ogg page, checking each starts where the last ended."""
    out, offset = [], 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS", f"no page at byte {offset}"
        flags, granule = data[offset + 5], struct.unpack_from("<q", data, offset + 6)[0]
        count = data[offset + 26]
        size = 27 + count + sum(data[offset + 27 : offset + 27 + count])
        out.append((flags, granule, data[offset : offset + size]))
        offset += size
    return out


def test_ogg_crc_matches_the_reference_value() -> None:
    # CRC-32/MPEG-2 without the final inversion, init 0: "123456789" -> 0x89A1897F.
    assert ogg_crc(b"123456789") == 0x89A1897F
    assert ogg_crc(b"") == 0


@pytest.mark.parametrize("rate_hz", [16_000, 24_000, 48_000])
def test_opus_chunks_are_pages_that_join_into_one_file(rate_hz: int) -> None:
    encoder = OggOpusEncoder(rate_hz)
    audio = tone(rate_hz, 2.0)
    cuts = [0, rate_hz // 3 + 7, rate_hz + 11, audio.size]
    chunks = [encoder.encode(audio[a:b], last=b == audio.size) for a, b in zip(cuts, cuts[1:], strict=False)]

    first = pages(chunks[0].data)
    assert first[0][2][28:36] == b"OpusHead" and first[0][0] & 0x02  # BOS
    assert first[1][2][28:36] == b"OpusTags"
    assert all(c.data[:4] == b"OggS" for c in chunks)
    assert not any(p[0] & 0x02 for c in chunks[1:] for p in pages(c.data))
    last_flags = [p[0] for p in pages(chunks[-1].data)]
    assert last_flags[-1] & 0x04 and not any(f & 0x04 for f in last_flags[:-1])  # EOS once, at the end

    decoded, decoded_hz = decode_ogg(b"".join(c.data for c in chunks))
    assert decoded_hz == 48_000
    assert decoded.size == pytest.approx(audio.size * 48_000 / rate_hz, abs=1)
    assert sum(c.duration_s for c in chunks) == pytest.approx(2.0, abs=1e-3)
    # The same tone comes back: compare the loudness and the dominant pitch.
    assert float(np.sqrt(np.mean(decoded**2))) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    spectrum = np.abs(np.fft.rfft(decoded))
    assert float(np.argmax(spectrum)) * 48_000 / decoded.size == pytest.approx(440.0, abs=2.0)


def test_the_first_opus_chunk_alone_is_playable() -> None:
    encoder = OggOpusEncoder(24_000)
    first = encoder.encode(tone(24_000, 0.5), last=False)
    decoded, _ = decode_ogg(first.data)
    assert decoded.size >= 0.45 * 48_000  # all but the tail under one 20 ms frame


def test_an_empty_last_chunk_still_ends_the_stream() -> None:
    encoder = OggOpusEncoder(16_000)
    body = encoder.encode(tone(16_000, 0.3), last=False)
    end = encoder.encode(np.zeros(0, np.float32), last=True)
    assert pages(end.data)[-1][0] & 0x04
    decoded, _ = decode_ogg(body.data + end.data)
    assert decoded.size == pytest.approx(0.3 * 48_000, abs=1)


def test_a_page_holds_at_most_255_segments() -> None:
    writer = OggWriter(serial=7)
    packets = [(bytes([n % 256]) * 300, 960 * (n + 1)) for n in range(200)]  # 2 segments each
    data = writer.pages(packets, eos=True)
    found = pages(data)
    assert len(found) == 2
    assert [g for _, g, _ in found] == [960 * 127, 960 * 200]  # 127 packets fill 254 segments
    assert found[-1][0] & 0x04


def test_pcm16_is_little_endian_and_clipped() -> None:
    encoded = Pcm16Encoder(16_000).encode(np.array([0.0, 0.5, -1.0, 2.0], np.float32), last=True)
    assert np.frombuffer(encoded.data, "<i2").tolist() == [0, 16384, -32768, 32767]
    assert encoded.duration_s == 4 / 16_000


@pytest.mark.parametrize(
    ("encoding", "requested", "voice", "expected"),
    [
        (Encoding.LINEAR16, 0, 22_050, 22_050),
        (Encoding.LINEAR16, 48_000, 22_050, 48_000),
        (Encoding.OGG_OPUS, 0, 24_000, 24_000),
        (Encoding.OGG_OPUS, 0, 22_050, 48_000),
        (Encoding.OGG_OPUS, 16_000, 22_050, 16_000),
    ],
)
def test_output_rate(encoding: Encoding, requested: int, voice: int, expected: int) -> None:
    assert output_rate(encoding, requested, voice) == expected


def test_opus_refuses_rates_it_cannot_encode() -> None:
    with pytest.raises(InvalidArgument) as info:
        output_rate(Encoding.OGG_OPUS, 22_050, 22_050)
    assert info.value.message == (
        "sample_rate_hertz 22050 is not supported with OGG_OPUS; use 0 (the voice's own rate) "
        "or one of 16000, 24000, 48000"
    )
