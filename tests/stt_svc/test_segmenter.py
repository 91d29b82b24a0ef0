"""The streaming segmenter and VAD, on audio time (sample counts), without gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stt_svc.segmenter import Segmenter, SegmenterOptions, SpeechEnded, SpeechStarted
from stt_svc.vad import FRAME_SAMPLES, SileroVad
from tests.stt_svc.conftest import clip, silence

RATE = 16_000


class EnergyVad:
    """Stand-in VAD: a frame is speech when its RMS is above 0.01."""

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(np.square(frames), axis=1))
        return np.where(rms > 0.01, 0.9, 0.05).astype(np.float32)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def feed(segmenter: Segmenter, samples: np.ndarray, chunk: int) -> list:
    out = []
    for i in range(0, len(samples), chunk):
        out += segmenter.feed(samples[i : i + chunk])
    return out


def frames(ms: int) -> int:
    """Samples in `ms`, rounded up to whole VAD frames."""
    n = RATE * ms // 1000
    return -(-n // FRAME_SAMPLES) * FRAME_SAMPLES


def test_one_utterance_with_pre_roll_and_endpoint() -> None:
    audio = np.concatenate([silence(1.024), tone(0.992), silence(1.0)])
    seg = Segmenter(EnergyVad(), SegmenterOptions(endpoint_silence_ms=300, pre_roll_ms=200))
    got = feed(seg, audio, 1600)
    assert [type(e) for e in got] == [SpeechStarted, SpeechEnded]
    started, ended = got
    speech_start = int(1.024 * RATE)
    assert started.start_sample == speech_start - RATE * 200 // 1000  # 200 ms pre-roll
    assert ended.end_sample == speech_start + int(0.992 * RATE)
    # The decoder gets pre-roll + speech + 150 ms tail.
    assert len(ended.audio) == ended.end_sample - started.start_sample + RATE * 150 // 1000
    assert not seg.speaking


def test_endpoint_comes_after_exactly_the_endpoint_silence_of_audio() -> None:
    seg = Segmenter(EnergyVad(), SegmenterOptions(endpoint_silence_ms=500))
    assert [type(e) for e in seg.feed(tone(1.024))] == [SpeechStarted]
    assert seg.feed(silence((frames(500) - FRAME_SAMPLES) / RATE)) == []
    assert seg.speaking and seg.trailing_silence == frames(500) - FRAME_SAMPLES
    assert [type(e) for e in seg.feed(silence(FRAME_SAMPLES / RATE))] == [SpeechEnded]


def test_end_if_silent_is_the_coming_end_once_the_tail_is_heard() -> None:
    """A final's input is known `endpoint - tail` before the endpoint: exactly what it ends with."""
    seg = Segmenter(EnergyVad(), SegmenterOptions(endpoint_silence_ms=300, tail_ms=150))
    seg.feed(np.concatenate([silence(0.512), tone(1.024)]))
    assert seg.end_if_silent() is None  # still speaking
    seg.feed(silence(frames(150) / RATE - FRAME_SAMPLES / RATE))
    assert seg.end_if_silent() is None  # the tail is not all here yet
    seg.feed(silence(FRAME_SAMPLES / RATE))
    ahead = seg.end_if_silent()
    assert ahead is not None
    (ended,) = feed(seg, silence(0.3), 512)
    assert isinstance(ended, SpeechEnded)
    assert (ahead.index, ahead.start_sample, ahead.end_sample) == (ended.index, ended.start_sample,
                                                                   ended.end_sample)
    assert np.array_equal(ahead.audio, ended.audio)
    assert seg.end_if_silent() is None  # no utterance open


def test_end_if_silent_moves_when_speech_resumes() -> None:
    seg = Segmenter(EnergyVad(), SegmenterOptions(endpoint_silence_ms=300, tail_ms=150))
    seg.feed(np.concatenate([silence(0.512), tone(1.024), silence(0.2)]))
    first = seg.end_if_silent()
    assert first is not None
    seg.feed(tone(0.5))
    assert seg.end_if_silent() is None
    seg.feed(silence(0.2))
    second = seg.end_if_silent()
    assert second is not None and second.index == first.index
    assert second.end_sample > first.end_sample + int(0.6 * RATE)


@pytest.mark.parametrize("chunk", [1, 160, 511, 512, 1600, 48_000])
def test_chunking_does_not_change_the_events(chunk: int) -> None:
    audio = np.concatenate([silence(0.5), tone(0.8), silence(0.2), tone(0.6), silence(0.6)])
    reference = feed(Segmenter(EnergyVad()), audio, len(audio))
    got = feed(Segmenter(EnergyVad()), audio, chunk)
    assert [(type(e), e.index) for e in got] == [(type(e), e.index) for e in reference]
    assert [getattr(e, "start_sample", None) for e in got] == [
        getattr(e, "start_sample", None) for e in reference
    ]
    assert len(reference) == 2  # the 200 ms pause is shorter than the 300 ms endpoint


def test_short_pause_keeps_one_utterance_and_long_pause_splits() -> None:
    audio = np.concatenate([tone(0.5), silence(0.25), tone(0.5), silence(0.5), tone(0.5)])
    got = feed(Segmenter(EnergyVad()), np.concatenate([audio, silence(1)]), 1600)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechStarted", 0), ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]


def test_a_click_shorter_than_min_speech_gives_no_events() -> None:
    audio = np.concatenate([silence(0.5), tone(0.032), silence(1.0)])
    seg = Segmenter(EnergyVad(), SegmenterOptions(min_speech_ms=96))
    assert feed(seg, audio, 1600) == []
    assert seg.flush() == []


def test_flush_ends_the_open_utterance() -> None:
    seg = Segmenter(EnergyVad())
    assert [type(e) for e in seg.feed(tone(1.0))] == [SpeechStarted]
    (ended,) = seg.flush()
    assert isinstance(ended, SpeechEnded) and ended.index == 0
    assert seg.flush() == []


def test_long_speech_is_cut_at_the_latest_pause() -> None:
    options = SegmenterOptions(max_utterance_ms=3000)
    audio = np.concatenate([tone(2.0), silence(0.192), tone(2.0), silence(1.0)])
    got = feed(Segmenter(EnergyVad(), options), audio, 1600)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechStarted", 0), ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]
    first_end, second_start = got[1], got[2]
    # Cut in the middle of the pause, not mid-word at the 3 s limit.
    assert 2.0 * RATE <= first_end.start_sample + len(first_end.audio) <= 2.2 * RATE
    assert second_start.start_sample == first_end.start_sample + len(first_end.audio)


def test_a_cut_keeps_the_held_audio_and_waits_for_the_next_pause() -> None:
    """The stream holds the audio its stable words were heard in (here 2.5 s, past the first
    pause): the cut falls in the pause after it, not in the earlier one."""
    options = SegmenterOptions(max_utterance_ms=3000, max_overrun_ms=2000)
    audio = np.concatenate(
        [tone(2.0), silence(0.192), tone(2.0), silence(0.192), tone(1.5), silence(1.0)]
    )
    seg = Segmenter(EnergyVad(), options)
    got = feed(seg, audio[: int(2.8 * RATE)], 1600)
    seg.hold(int(2.5 * RATE))
    got += feed(seg, audio[int(2.8 * RATE) :], 1600)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechStarted", 0), ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]
    first_end, second_start = got[1], got[2]
    # In the second pause (4.192 to 4.384 s), not the first (2.0 to 2.192 s).
    assert 4.192 * RATE <= first_end.start_sample + len(first_end.audio) <= 4.384 * RATE
    assert second_start.start_sample == first_end.start_sample + len(first_end.audio)


def test_an_over_long_utterance_whose_speaker_stops_ends_at_the_endpoint() -> None:
    """Past max_utterance_ms, the pause that ends the speech is not a cut: no utterance of
    silence follows, and the end is the one `end_if_silent` announced."""
    options = SegmenterOptions(max_utterance_ms=3000, endpoint_silence_ms=300, tail_ms=150)
    seg = Segmenter(EnergyVad(), options)
    got = feed(seg, np.concatenate([tone(3.5), silence(0.2)]), 1600)
    assert [type(e) for e in got] == [SpeechStarted] and seg.overdue
    ahead = seg.end_if_silent()
    assert ahead is not None
    got = feed(seg, silence(1.0), 1600)
    assert [(type(e).__name__, e.index) for e in got] == [("SpeechEnded", 0)]
    (ended,) = got
    assert (ended.end_sample, len(ended.audio)) == (ahead.end_sample, len(ahead.audio))
    assert ended.end_sample == frames(3500)
    assert seg.flush() == []


def test_a_pause_heard_to_the_tail_is_cut_where_end_if_silent_said() -> None:
    """An over-long utterance whose speaker pauses past the tail and goes on is cut after
    the tail: the audio the stream's speculative final decode already has."""
    options = SegmenterOptions(max_utterance_ms=3000, endpoint_silence_ms=300, tail_ms=150)
    seg = Segmenter(EnergyVad(), options)
    feed(seg, np.concatenate([tone(3.5), silence(0.224)]), 512)
    ahead = seg.end_if_silent()
    assert ahead is not None
    got = feed(seg, np.concatenate([tone(1.0), silence(1.0)]), 512)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]
    cut, resumed = got[0], got[1]
    assert (cut.end_sample, len(cut.audio)) == (ahead.end_sample, len(ahead.audio))
    assert np.array_equal(cut.audio, ahead.audio)
    assert resumed.start_sample == cut.start_sample + len(cut.audio) < int(3.724 * RATE)


def test_a_pause_past_the_overrun_limit_ends_the_utterance() -> None:
    options = SegmenterOptions(max_utterance_ms=3000, max_overrun_ms=500, endpoint_silence_ms=2000)
    seg = Segmenter(EnergyVad(), options)
    got = feed(seg, np.concatenate([tone(3.4), silence(1.0), tone(1.0), silence(3.0)]), 1600)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechStarted", 0), ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]
    # ended in the pause once 3.5 s long (the silence so far as its tail); the speech after
    # the pause starts an utterance of its own (with its pre-roll), not a cut's remainder
    assert got[1].end_sample == frames(3400)
    assert len(got[1].audio) == frames(3500) < frames(3400) + 2400
    assert got[2].start_sample > got[1].end_sample + 2400


def test_speech_without_a_pause_is_cut_at_the_overrun_limit() -> None:
    options = SegmenterOptions(max_utterance_ms=3000, max_overrun_ms=2000)
    seg = Segmenter(EnergyVad(), options)
    assert not seg.overdue
    got = feed(seg, tone(4.0), 1600)
    assert [type(e) for e in got] == [SpeechStarted] and seg.overdue  # waiting for a pause
    got = feed(seg, np.concatenate([tone(3.0), silence(1.0)]), 1600)
    assert [(type(e).__name__, e.index) for e in got] == [
        ("SpeechEnded", 0), ("SpeechStarted", 1), ("SpeechEnded", 1),
    ]
    assert len(got[0].audio) == frames(5000)
    assert not seg.overdue


def test_silero_streaming_matches_whole_file(fleurs: Path) -> None:
    from faster_whisper.vad import get_vad_model

    audio = clip(fleurs, "fleurs-en-003")
    audio = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES]
    whole = get_vad_model()(audio).reshape(-1)
    vad, parts = SileroVad(), []
    blocks = audio.reshape(-1, FRAME_SAMPLES)
    for i in range(0, len(blocks), 3):
        parts.append(vad.speech_probabilities(blocks[i : i + 3]))
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)


def test_silero_segments_real_speech(fleurs: Path) -> None:
    audio = np.concatenate([silence(0.5), clip(fleurs, "fleurs-en-004"), silence(2.0)])
    got = feed(Segmenter(SileroVad()), audio, 1600)
    assert got and isinstance(got[0], SpeechStarted) and isinstance(got[-1], SpeechEnded)
    assert 0.2 * RATE <= got[0].start_sample <= 1.0 * RATE


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silero_ignores_silence_and_white_noise(kind: str) -> None:
    rng = np.random.default_rng(7)
    audio = silence(10) if kind == "silence" else rng.normal(0.0, 0.1, 10 * RATE).astype(
        np.float32
    )
    seg = Segmenter(SileroVad())
    assert feed(seg, audio, 1600) + seg.flush() == []
