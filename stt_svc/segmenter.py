"""Cuts a live stream into utterances, judged on audio time (sample counts).

Audio may arrive much faster than real time, so nothing here looks at the
clock: every decision counts samples of the 16 kHz stream. The segmenter
feeds 512-sample frames to a `FrameClassifier` (Silero) and runs a small
state machine:

    idle --speech frame--> candidate --min_speech_ms of speech--> speaking
    candidate --endpoint silence first--> idle (a click or a breath: no events)
    speaking --trailing silence reaches endpoint_silence_ms--> idle (SpeechEnded)
    speaking --max_utterance_ms--> cut at the latest pause after the held audio,
        next utterance starts (waits up to max_overrun_ms for such a pause)

An utterance that grows too long while its speaker is pausing is not cut
there and then: the pause either reaches the endpoint (the utterance simply
ends, and `end_if_silent` has told the stream its audio 150 ms early) or
becomes the cut point when speech resumes. Cutting at once left a
remainder of pure silence that ended as an utterance of its own at the
endpoint: a wasted decode, and a final of nothing or of noise
(bench/results/stt_cut_in_pause.md).

A little audio before the first speech frame (pre-roll) is kept, since the
VAD reacts a frame or two late and Whisper needs the onset.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from stt_svc.vad import FRAME_SAMPLES, FrameClassifier

RATE_HZ = 16_000


@dataclass(frozen=True, slots=True)
class SegmenterOptions:
    """Endpointing parameters; durations in milliseconds of audio."""

    endpoint_silence_ms: int = 300
    """Trailing silence that ends an utterance."""
    pre_roll_ms: int = 200
    """Audio kept before the first speech frame. Silero flags speech 0.2-0.3 s after a soft
    onset ("construída" at 1.75 s, first speech frame at 2.05 s): with 200 ms the first
    syllable was lost (bench/results/stt_streaming.md), but 400 ms made Whisper's greedy
    reading of fleurs-en-000's first word degenerate, and its sampled fallback differed from
    run to run (tests/triton/test_same_results.py): 200 until the fallback is deterministic."""
    min_speech_ms: int = 96
    """Speech needed before an utterance counts (shorter bursts are dropped)."""
    max_utterance_ms: int = 15_000
    """An utterance is cut at the latest pause once it grows this long."""
    max_overrun_ms: int = 2_000
    """How much longer an utterance may grow while it waits for a pause to cut at (one after
    its held audio, in its second half); past that it is cut where it is."""
    tail_ms: int = 150
    """Silence after the last speech frame that goes to the decoder with it."""
    min_pause_ms: int = 96
    """Shortest pause inside speech that may serve as a cut point."""
    speech_threshold: float = 0.5
    """Frame speech probability at or above which a frame is speech."""
    silence_threshold: float = 0.35
    """Probability below which a frame is silence (between: no change)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """An utterance was confirmed; `start_sample` includes the pre-roll."""

    index: int
    start_sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """An utterance is complete; `audio` spans start_sample to end_sample plus a short tail."""

    index: int
    start_sample: int
    end_sample: int
    audio: np.ndarray = field(repr=False)


Event = SpeechStarted | SpeechEnded


class _State(Enum):
    IDLE = "idle"
    CANDIDATE = "candidate"
    SPEAKING = "speaking"


def _samples(ms: int) -> int:
    return RATE_HZ * ms // 1000


class Segmenter:
    """Stateful endpointer for one stream."""

    def __init__(self, vad: FrameClassifier, options: SegmenterOptions | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._vad = vad
        self._endpoint = _samples(self.options.endpoint_silence_ms)
        self._pre_roll = _samples(self.options.pre_roll_ms)
        self._min_speech = _samples(self.options.min_speech_ms)
        self._max_utterance = max(_samples(self.options.max_utterance_ms), 4 * FRAME_SAMPLES)
        self._max_overrun = _samples(self.options.max_overrun_ms)
        self._tail = _samples(self.options.tail_ms)
        self._min_pause = _samples(self.options.min_pause_ms)
        self._pending = np.zeros(0, np.float32)
        self._history_frames = self._pre_roll // FRAME_SAMPLES + 2
        self._history: collections.deque[np.ndarray] = collections.deque(
            maxlen=self._history_frames
        )
        self._position = 0
        """Samples classified so far (the stream position of the next frame)."""
        self._state = _State.IDLE
        self._index = 0
        self._reset_utterance(0, [])

    def _reset_utterance(self, start: int, audio: list[np.ndarray]) -> None:
        self._start = start
        self._audio = audio
        self._length = sum(len(a) for a in audio)
        self._speech = 0
        self._silence_run = 0
        self._speech_end = start
        self._cut = 0
        """Where a cut for length falls (the latest pause), from the utterance's start."""
        self._cut_speech_end = start
        """The end of the speech before that pause."""
        self._held = 0

    # -- what the stream asks -------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Samples received so far (stream time, 16 kHz)."""
        return self._position + len(self._pending)

    @property
    def speaking(self) -> bool:
        """Whether a confirmed utterance is open."""
        return self._state is _State.SPEAKING

    @property
    def utterance_index(self) -> int:
        """Index of the open (or next) utterance."""
        return self._index

    @property
    def utterance_samples(self) -> int:
        """Samples buffered for the open utterance."""
        return self._length

    @property
    def utterance_speech(self) -> int:
        """Samples of the open utterance the VAD heard as speech."""
        return self._speech

    @property
    def trailing_silence(self) -> int:
        """Samples of silence since the last speech of the open utterance."""
        return self._silence_run

    @property
    def overdue(self) -> bool:
        """Whether the open utterance is past max_utterance_ms, waiting for a point to cut at."""
        return self._state is _State.SPEAKING and self._length >= self._max_utterance

    def hold(self, samples: int) -> None:
        """Keeps the open utterance's first `samples` samples in it: a cut for length falls after
        them. The stream holds the audio its stable words were heard in, so that a word already
        promised to the client is not cut off into the next utterance."""
        self._held = max(self._held, samples)

    def utterance_audio(self) -> np.ndarray:
        """A copy of the open utterance's audio so far."""
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    def end_if_silent(self) -> SpeechEnded | None:
        """The `SpeechEnded` the endpoint will bring if no more speech comes, as soon as all of
        its audio is here: the trailing silence covers the tail that goes to the decoder, which
        is `endpoint_silence_ms - tail_ms` before the endpoint fires. None before that, or
        when no utterance is open."""
        if self._state is not _State.SPEAKING or self._silence_run < self._tail:
            return None
        return self._ended(self._keep())

    # -- feeding --------------------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> list[Event]:
        """Adds 16 kHz float32 samples; returns the events they complete."""
        if len(samples) == 0:
            return []
        data = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = data[whole:]
        if not whole:
            return []
        frames = data[:whole].reshape(-1, FRAME_SAMPLES)
        events: list[Event] = []
        for frame, prob in zip(frames, self._vad.speech_probabilities(frames), strict=True):
            events += self._step(frame, float(prob))
        return events

    def flush(self) -> list[Event]:
        """Ends the stream: the open utterance (if confirmed) ends here."""
        events: list[Event] = []
        if self._state is _State.SPEAKING:
            if len(self._pending):
                self._append(self._pending)
            events.append(self._end(self._length))
        self._position += len(self._pending)
        self._pending = np.zeros(0, np.float32)
        self._state = _State.IDLE
        return events

    # -- the state machine ----------------------------------------------------------------------

    def _append(self, frame: np.ndarray) -> None:
        self._audio.append(frame)
        self._length += len(frame)

    def _step(self, frame: np.ndarray, prob: float) -> list[Event]:
        frame_start = self._position
        self._position += len(frame)
        if self._state is _State.IDLE:
            if prob < self.options.speech_threshold:
                self._history.append(frame)
                return []
            history = np.concatenate(self._history) if self._history else np.zeros(0, np.float32)
            pre_roll = history[len(history) - min(len(history), self._pre_roll):]
            self._history.clear()
            self._reset_utterance(frame_start - len(pre_roll), [pre_roll] if len(pre_roll) else [])
            self._state = _State.CANDIDATE
        self._append(frame)
        self._classify(prob, frame_start)
        if self._state is _State.CANDIDATE:
            if self._speech >= self._min_speech:
                self._state = _State.SPEAKING
                return [SpeechStarted(self._index, self._start)]
            if self._silence_run >= self._endpoint or self._length >= self._max_utterance:
                self._go_idle()  # too little speech: forget it
            return []
        if self._silence_run >= self._endpoint:
            return [self._end_here()]
        if self._length >= self._max_utterance:
            return self._split()
        return []

    def _go_idle(self) -> None:
        """Back to waiting; the utterance's last frames become the pre-roll history."""
        self._state = _State.IDLE
        self._history.extend(self._audio[-self._history_frames :])

    def _classify(self, prob: float, frame_start: int) -> None:
        if prob >= self.options.speech_threshold:
            if self._silence_run >= self._min_pause:  # a pause inside speech: a cut point
                # in its middle; after the tail once it had one, so that the cut's audio is
                # what `end_if_silent` offered during the pause (the stream's speculation)
                cut = frame_start - self._silence_run // 2
                if self._silence_run >= self._tail:
                    cut = self._speech_end + self._tail
                self._cut, self._cut_speech_end = cut - self._start, self._speech_end
            self._speech += FRAME_SAMPLES
            self._silence_run = 0
            self._speech_end = frame_start + FRAME_SAMPLES
        elif prob < self.options.silence_threshold or self._silence_run:
            self._silence_run += FRAME_SAMPLES
        else:  # undecided frame right after speech: still speech
            self._speech_end = frame_start + FRAME_SAMPLES

    def _end_here(self) -> SpeechEnded:
        """Ends the utterance at its last speech, with the tail: the endpoint."""
        self._go_idle()
        return self._end(self._keep())

    def _keep(self) -> int:
        """Samples an utterance ending at its last speech keeps: the speech and the tail."""
        return min(self._length, self._speech_end - self._start + self._tail)

    def _ended(self, keep: int, audio: np.ndarray | None = None) -> SpeechEnded:
        """The open utterance as it would end keeping its first `keep` samples (of `audio`,
        its audio so far, when the caller has joined it already)."""
        audio = self.utterance_audio() if audio is None else audio
        return SpeechEnded(self._index, self._start, min(self._speech_end, self._start + keep),
                           audio[:keep])

    def _end(self, keep: int, audio: np.ndarray | None = None) -> SpeechEnded:
        """Closes the utterance, keeping its first `keep` samples."""
        event = self._ended(keep, audio)
        self._index += 1
        return event

    def _split(self) -> list[Event]:
        """Cuts an over-long utterance at its latest pause, if that lies in its second half and
        after the held audio, and goes on speaking; with no such pause it waits ([]) until
        max_overrun_ms past the limit, then cuts here. While its speaker pauses it waits for
        the endpoint or for the speech after the pause; past the overrun it ends there."""
        overrun = self._length >= self._max_utterance + self._max_overrun
        if self._silence_run >= self._min_pause:
            if not overrun:
                return []
            return [self._end_here()]
        cut, speech_end = self._cut, self._cut_speech_end
        if cut < max(self._length // 2, self._held):
            if not overrun:
                return []
            cut, speech_end = self._length, self._speech_end
        audio = self.utterance_audio()
        self._speech_end = speech_end  # `_end` reports it, within the `cut` samples kept
        ended = self._end(cut, audio)
        rest = audio[cut:]
        self._reset_utterance(self._start + cut, [rest] if len(rest) else [])
        self._speech = self._min_speech
        self._speech_end = self._start + len(rest)
        return [ended, SpeechStarted(self._index, self._start)]
