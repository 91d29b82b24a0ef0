"""One StreamingRecognize stream: audio chunks in, speech events and results out.

Two tasks share the stream. The reader converts each chunk (PCM16 -> float,
resample to 16 kHz), runs the segmenter (VAD) and emits speech events at
once; an utterance that ends is queued for its final. The decode loop runs
the finals in order and, while someone speaks and interim results are on,
one partial decode at a time of the utterance so far, at most every
`partial_interval_ms` of audio (longer while the model's lane queues), once
the VAD has heard new speech since the last one, in a shorter encoder window
than a final's. When an utterance ends, a partial decode not
yet started is withdrawn and its result dropped, so the final goes straight
to the head of its model's lane: end of speech to final is one decode.

That decode starts before the endpoint fires: the audio a final decodes is
the utterance up to its last speech plus a short tail (SegmenterOptions),
so once the trailing silence covers the tail, the final's input is known
exactly, `endpoint_silence_ms - tail_ms` (150 ms by default) early. The
stream starts the final's decode then (a speculation); if the endpoint
comes with that very audio and the same options, the final is that
decode's result, already done or nearly; if speech resumes first, the
speculation is withdrawn (or its result dropped) and a new one follows the
next pause. Same input, same decode: the final is what it would have been,
only earlier.

A final is decoded with beam search (FINAL_IDLE_BEAM) when no other
stream's decode waits in its model's lane, greedily otherwise
(`final_beam_when_idle`): the beam's WER without holding up other streams.
The choice is made when the final's decode starts, so a speculation's
choice stands at the endpoint and its result serves the final.

A greedy final that the decoder doubts (`final_beam_when_doubtful`: its confidence under
the threshold) is decoded again with the beam, after the greedy reading is in, and the
reading with the higher mean token log-probability is kept: only doubtful finals pay the
beam's time (bench/results/stt_final_doubt.md).

A final hears what came just before it: when an utterance starts within
OVERLAP_GAP_S of the previous one's end (a pause, or a cut for length), the
end of the previous utterance's audio goes before its own (up to
OVERLAP_AUDIO_S in all, so the encoder window stays 10 s) and the previous
final's words heard there are forced as the decoder prefix; the words after
them are the final's. A fragment cut off mid-sentence ("... estruturas da" /
"pirâmide construídas para honrar faraós mortos") is then decoded as the
rest of that sentence, not as a sentence of its own.

A final does not decode again what its partials already agree on
(`final_context_s`): its audio starts about that long before its last
stable word ends, in the widest pause there, with the stable words from
there on forced as context; the older stable words stay as the partials
read and timed them (partials align their words for this). A forced token
costs the decoder a step, as a generated one does, so a long utterance's
final costs about what a short one's does (bench/results/stt_final_context.md).
Its own stable words are then its context, and it takes no overlap.

Stable words are the ones two successive partials agree on (LocalAgreement),
less the last one, and only those the older partial heard at least
AGREEMENT_RIGHT_CONTEXT_S of audio after: every later decode is forced to
start with them, so a word misheard for want of what follows would stay
misheard.

Everything one stream can pile up is bounded, so that a client that floods,
stalls or stops reading hurts only itself: at most one decode of the stream
waits in its model's lane, at most MAX_QUEUED_FINALS utterances wait for
their finals (then the reader stops reading that client's audio), chunks
beyond the configured rate end the stream with RESOURCE_EXHAUSTED, and so
do results piling up unread (partials are skipped first).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from dragoman import config, logs, metrics
from dragoman.errors import DragomanError, InvalidArgument, ResourceExhausted
from stt_svc import coverage, guards
from stt_svc.agreement import LocalAgreement
from stt_svc.codecs import AudioDecoder, OggOpusDecoder, Pcm16Decoder
from stt_svc.engines.base import DecodeOptions, Task, Transcription, WordTiming
from stt_svc.flow import BURST_CHUNKS, ChunkRate
from stt_svc.lanes import Priority, Timed
from stt_svc.loaded import LoadedModel, Models
from stt_svc.segmenter import RATE_HZ, Segmenter, SegmenterOptions, SpeechEnded, SpeechStarted
from stt_svc.vad import FrameClassifier, SileroVad

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
LANGUAGE_LOCK_PROBABILITY = 0.8
"""An identified language this likely is kept for the rest of the stream."""
FINAL_TEMPERATURES = (0.0,)
FINAL_FALLBACK_BEAM = 5
"""A final whose greedy reading looks degenerate is decoded again with this beam, not by
sampling at a higher temperature: the same audio then always gives the same final."""
FINAL_IDLE_BEAM = 5
"""Beam of a final decoded while no other stream's decode waits for the model
(`final_beam_when_idle`; bench/results/stt_final_beam.md)."""
AGREEMENT_HOLDBACK = 1
"""The last word two partials agree on is not made stable (often cut off by the audio's
end): forced-prefix errors 20 -> 7 on the diagnose bench's FLEURS clips. Transcription only:
speech translated into English was not measured with it, and a German clip's English lost
its key word with it (tests/dragoman_tools/test_interpret.py). Not for early partials either:
it made simultaneous mode's ear-voice span 0.2-0.3 s longer (bench/results/simultaneous.md)."""
AGREEMENT_RIGHT_CONTEXT_S = 0.5
"""A word two partials agree on becomes stable only once the older of them heard this much
audio after it (`LocalAgreement`'s right context; the partials' word times): a word read
with nothing after it is often misheard alike twice ("on a deux vrais" for "on ne
devrait"), then forced into every later decode. French WER 37.7 -> 33.8 % over three
diagnose passes, the others within main's run-to-run spread (bench/results/stt_right_context.md).
Transcription only, and not for early partials, for the same reasons as AGREEMENT_HOLDBACK."""
SPARSE_WORDS_PER_S = 1.0
SPARSE_MIN_S = 3.0
"""A final of SPARSE_MIN_S or more of speech with fewer words a second than SPARSE_WORDS_PER_S
(conversational speech has 2.5-3 in the FLEURS languages) is decoded again without its
forced prefix (`redecode_sparse`); scripts written without spaces are not counted so."""
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue"})
MAX_QUEUED_FINALS = 4
OVERLAP_AUDIO_S = 8.0
"""A final decodes at most this much audio with its overlap (Whisper's 10 s window)."""
OVERLAP_GAP_S = 2.0
"""An utterance that starts this soon after the previous one ends continues it."""
MIN_OVERLAP_S = 1.0
PARTIAL_BACKLOG = 8
"""Partials are skipped while this many responses wait unread."""
MAX_BACKLOG = 256
"""Responses waiting unread that end the stream (the client stopped reading)."""
PARTIAL_WINDOW_STEP_S = 4.0
"""Partials encode the audio so far in windows of whole steps of this (finals: the engine's
10 s): 0.56x the encoder seconds per partial; 2 s steps made Whisper loop and the guards
drop partials (bench/results/gpu_cost.md)."""
PARTIAL_NEW_SPEECH_MS = 200
"""A partial waits until the VAD has heard this much new speech since the last one: audio
of pauses and breaths adds no words."""
HEAD_CUT_CHOICES = 3
"""A final that skips its older stable words (`final_context_s`) starts its audio in the
widest pause before one of the latest this many words it may start at."""


class Encoding(Enum):
    LINEAR16 = "linear16"
    OGG_OPUS = "ogg_opus"


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """A validated stream configuration."""

    language_code: str
    """The client's tag, "" for automatic identification."""
    language: str | None
    """Whisper base code of `language_code`; None to identify it."""
    encoding: Encoding = Encoding.LINEAR16
    sample_rate_hz: int = RATE_HZ
    """Rate of LINEAR16 audio (Ogg Opus says its own)."""
    interim_results: bool = False
    endpoint_silence_ms: int = 300
    hotwords: tuple[str, ...] = ()
    task: Task = "transcribe"
    """"translate": every result (partials too) is English text; the stable prefix that the
    next decode is forced to start with must be in the language of the output."""
    early_partials: bool = False
    """Partials every `early_partial_interval_ms`, and stable words without AGREEMENT_HOLDBACK:
    for speech spoken while the speaker goes on (PARTIAL_MODE_EARLY)."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Service-wide knobs (from settings.stt)."""

    partial_interval_ms: int = 600
    early_partial_interval_ms: int = 400
    max_utterance_ms: int = 15_000
    idle_timeout_s: float = 10.0
    beam_size: int = 1
    final_beam_when_idle: bool = config.SttSettings().final_beam_when_idle
    """Finals take FINAL_IDLE_BEAM while their model's lane has no other stream's decode
    waiting."""
    final_beam_when_doubtful: float = config.SttSettings().final_beam_when_doubtful
    """A greedy final whose `confidence()` is under this is decoded again with FINAL_IDLE_BEAM
    (`_unless_doubtful`); 0: never."""
    redecode_gaps: bool = config.SttSettings().redecode_gaps
    redecode_sparse: bool = True
    final_context_s: float = config.SttSettings().final_context_s
    """A final decodes its audio from this long before the stable prefix's end (`_Head`);
    0: all of it."""
    max_chunks_per_s: float = 0.0
    """Audio chunks a second after a burst of `burst_chunks`; 0: no limit."""
    burst_chunks: int = BURST_CHUNKS
    low_confidence_below: float = config.SttSettings().low_confidence_below
    """Finals whose `confidence()` is under this are flagged `low_confidence`."""


class SpeechEventKind(Enum):
    STARTED = "started"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class SpeechEventOut:
    kind: SpeechEventKind
    utterance_index: int
    offset_s: float


@dataclass(frozen=True, slots=True)
class ResultOut:
    utterance_index: int
    transcript: str
    is_final: bool
    stability: float
    stable_prefix: str
    language_code: str
    language_probability: float
    confidence: float
    """`confidence()` of a final; 0 on partials."""
    low_confidence: bool
    start_s: float
    end_s: float
    words: tuple[WordTiming, ...]
    """Timed from the start of the stream."""
    processing_s: float


Output = SpeechEventOut | ResultOut


@dataclass
class _Utterance:
    index: int
    start_sample: int
    language: str | None
    language_probability: float
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    decoded_samples: int = 0
    """Audio given to the latest partial decode."""
    decoded_speech: int = 0
    """Samples of it the VAD heard as speech."""
    stable_words: tuple[WordTiming, ...] = ()
    """The stable prefix's words (the first ones, or all), timed from the utterance's start by
    the latest partial that read them as the stable prefix."""
    open: bool = True


@dataclass(frozen=True, slots=True)
class _Speculation:
    """A final's decode started before its endpoint (see the module's docstring)."""

    ended: SpeechEnded
    options: DecodeOptions
    model: LoadedModel
    future: asyncio.Future[Timed[Transcription]]
    samples: int
    """Length of the audio it decodes."""

    def hears(self, event: SpeechEnded) -> bool:
        """Whether this decode had the final's audio: same utterance, same span."""
        e = self.ended
        return (e.index, e.start_sample, e.end_sample, len(e.audio)) == (
            event.index, event.start_sample, event.end_sample, len(event.audio)
        )

    def serves(self, event: SpeechEnded, final: _FinalInput, model: LoadedModel) -> bool:
        """Whether this decode had exactly the final's input: same utterance, audio and options."""
        return (self.hears(event) and self.options == final.options and self.model is model
                and self.samples == len(final.audio) and not self.future.cancelled())


@dataclass(frozen=True, slots=True)
class _Context:
    """The previous final's audio and words (timed from the start of `audio`)."""

    language: str
    end_sample: int
    audio: np.ndarray = field(repr=False)
    words: tuple[WordTiming, ...]


@dataclass(frozen=True, slots=True)
class _Overlap:
    """The end of the previous utterance, decoded again ahead of a final as its context."""

    audio: np.ndarray = field(repr=False)
    text: str
    words: int


@dataclass(frozen=True, slots=True)
class _Head:
    """The stable words a final does not decode again: its audio starts after their start."""

    words: tuple[WordTiming, ...]
    text: str
    samples: int
    """Where the decoded audio starts in the utterance's."""


@dataclass(frozen=True, slots=True)
class _FinalInput:
    """What a final's decode is given, and how its result maps back to the utterance."""

    audio: np.ndarray = field(repr=False)
    options: DecodeOptions
    overlap: _Overlap | None = None
    head: _Head | None = None


@dataclass(frozen=True, slots=True)
class _Doubt:
    """Whether a doubtful final was decoded again with the beam, and the seconds it took."""

    decoded: bool = False
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _FinalJob:
    utterance: _Utterance
    event: SpeechEnded
    received_s: float
    """perf_counter() when the chunk that ended the utterance arrived."""


class RecognizeStream:
    """Runs one stream; read `outputs` while `run()` works."""

    def __init__(
        self,
        config: StreamConfig,
        models: Models,
        limits: StreamLimits,
        vad: FrameClassifier | None = None,
    ) -> None:
        self.config = config
        self.outputs: asyncio.Queue[Output | None] = asyncio.Queue()
        self._models = models
        self._limits = limits
        self._segmenter = Segmenter(
            vad or SileroVad(),
            SegmenterOptions(
                endpoint_silence_ms=config.endpoint_silence_ms,
                max_utterance_ms=limits.max_utterance_ms,
            ),
        )
        self._decoder: AudioDecoder = (
            OggOpusDecoder()
            if config.encoding is Encoding.OGG_OPUS
            else Pcm16Decoder(config.sample_rate_hz)
        )
        self._partial_interval = RATE_HZ * (
            limits.early_partial_interval_ms if config.early_partials
            else limits.partial_interval_ms) // 1000
        self._partial_new_speech = RATE_HZ * PARTIAL_NEW_SPEECH_MS // 1000
        # both agreement rules hold for transcription's steady partials only (see each one)
        steady_transcript = config.task == "transcribe" and not config.early_partials
        self._holdback = AGREEMENT_HOLDBACK if steady_transcript else 0
        self._right_context = (round(AGREEMENT_RIGHT_CONTEXT_S * RATE_HZ)
                               if steady_transcript else 0)
        # a final can start after stable words only where they are the words heard; a
        # translation's words are not the audio's, so their gaps are no lost speech, and the
        # gap and no-speech changes were measured on transcription only (stt_levels.md)
        self._transcribing = config.task == "transcribe"
        self._times_stable_words = limits.final_context_s > 0 and self._transcribing
        # No partial decode once this much trailing silence is heard: it would add no words
        # and could still be running when the endpoint comes.
        self._partial_quiet = RATE_HZ * min(100, config.endpoint_silence_ms // 2) // 1000
        self._finals: asyncio.Queue[_FinalJob] = asyncio.Queue(MAX_QUEUED_FINALS)
        self._chunk_rate = (
            ChunkRate(limits.max_chunks_per_s, limits.burst_chunks)
            if limits.max_chunks_per_s > 0
            else None
        )
        self._wakeup = asyncio.Event()
        self._closed = False
        self._utterance: _Utterance | None = None
        self._speculation: _Speculation | None = None
        self._language = config.language
        self._language_probability = 1.0
        self._context: _Context | None = None

    async def run(self, chunks: AsyncIterator[bytes]) -> None:
        """Reads audio until the client half-closes or goes idle, then flushes."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._decode_loop(), name="stt-decode")
                await self._read(chunks)
        except* DragomanError as group:
            raise group.exceptions[0] from None

    # -- reader ---------------------------------------------------------------------------------

    async def _read(self, chunks: AsyncIterator[bytes]) -> None:
        iterator = aiter(chunks)
        while True:
            try:
                async with asyncio.timeout(self._limits.idle_timeout_s):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                break
            except TimeoutError:
                log.info("stream idle for %.1f s: closing it", self._limits.idle_timeout_s)
                break
            await self._consume(chunk)
        now = time.perf_counter()
        tail = self._decoder.flush()
        await self._handle(self._segmenter.feed(tail) + self._segmenter.flush(), now)
        self._closed = True
        self._wakeup.set()

    async def _consume(self, chunk: bytes) -> None:
        received = time.perf_counter()
        if self._chunk_rate is not None:
            self._chunk_rate.admit(received)
        if len(chunk) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"audio chunk of {len(chunk)} bytes is larger than the {MAX_CHUNK_BYTES}-byte "
                "limit; send smaller chunks"
            )
        samples = self._decoder.decode(chunk)
        await self._handle(self._segmenter.feed(samples), received)
        self._wakeup.set()

    async def _handle(self, events: list[SpeechStarted | SpeechEnded], received: float) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._utterance = _Utterance(
                    event.index, event.start_sample, self._language, self._language_probability,
                    agreement=LocalAgreement(holdback=self._holdback,
                                             right_context=self._right_context),
                )
                self._emit(SpeechEventOut(SpeechEventKind.STARTED, event.index, _s(event.start_sample)))
                continue
            utterance = self._utterance
            assert utterance is not None and utterance.index == event.index
            utterance.open = False
            self._utterance = None
            self._emit(SpeechEventOut(SpeechEventKind.ENDED, event.index, _s(event.end_sample)))
            await self._finals.put(_FinalJob(utterance, event, received))
            self._wakeup.set()

    def _emit(self, item: Output) -> None:
        backlog = self.outputs.qsize()
        if backlog >= MAX_BACKLOG:
            raise ResourceExhausted(
                f"{backlog} recognition results are waiting unread: read the response stream"
            )
        if isinstance(item, ResultOut) and not item.is_final and backlog >= PARTIAL_BACKLOG:
            return  # a slow reader gets fewer partials
        self.outputs.put_nowait(item)

    # -- decoder --------------------------------------------------------------------------------

    async def _decode_loop(self) -> None:
        partial: asyncio.Future[Timed[Transcription]] | None = None
        target: _Utterance | None = None
        try:
            while True:
                self._wakeup.clear()
                if not self._finals.empty():
                    if partial is not None:  # stale: withdraw it, or drop its result
                        partial.cancel()
                        partial = None
                    await self._finalise(self._finals.get_nowait())
                    continue
                if self._closed:
                    return
                if self._speculate(partial) and partial is not None:
                    partial.cancel()  # the final is on its way: its decode goes first
                    partial = None
                if partial is None and (target := self._partial_due()) is not None:
                    partial = self._start_partial(target)
                await self._wait(partial)
                if partial is not None and partial.done() and target is not None:
                    self._on_partial(target, partial.result())
                    partial = None
        finally:
            if partial is not None:
                partial.cancel()
            if self._speculation is not None:
                self._speculation.future.cancel()

    def _speculate(self, partial: asyncio.Future[Timed[Transcription]] | None) -> bool:
        """Starts the open utterance's final decode once its input is known, and withdraws one
        whose utterance went on; True when it started one (`partial`, the stream's own partial
        decode, is withdrawn then: it does not count as a decode waiting in the lane)."""
        u, spec = self._utterance, self._speculation
        if u is None:
            return False  # any speculation belongs to a final that is queued now
        ahead = self._segmenter.end_if_silent()
        if spec is not None:
            if ahead is not None and ahead.end_sample == spec.ended.end_sample:
                return False  # still the final's input
            spec.future.cancel()  # speech went on
            self._speculation = None
        if ahead is None or ahead.index != u.index:
            return False
        model = self._models.for_language(u.language, self.config.task)
        mine = () if partial is None else (partial,)
        final = self._final_input(u, ahead, self._final_beam(model, mine))
        try:
            future = model.decode(final.audio, final.options, Priority.FINAL)
        except ResourceExhausted:
            return False  # a busy lane: the final will queue at the endpoint as it always did
        self._speculation = _Speculation(ahead, final.options, model, future, len(final.audio))
        return True

    def _final_input(self, u: _Utterance, ended: SpeechEnded, beam_size: int) -> _FinalInput:
        """What a final decodes: its audio after the stable words that need no second decode
        (`_head`); or all of it, with the end of the previous utterance before it and that
        utterance's words forced ahead of its own, when they follow each other."""
        options = self._final_options(u, beam_size)
        head = self._head(u)
        if head is not None:
            rest = u.agreement.stable_prefix.split()[len(head.words):]
            return _FinalInput(ended.audio[head.samples:],
                               replace(options, prefix=" ".join(rest)), head=head)
        overlap = self._overlap(u, ended)
        if overlap is None:
            return _FinalInput(ended.audio, options)
        prefix = f"{overlap.text} {options.prefix}".strip()
        return _FinalInput(np.concatenate([overlap.audio, ended.audio]),
                           replace(options, prefix=prefix), overlap=overlap)

    def _head(self, u: _Utterance) -> _Head | None:
        """The stable words heard more than `final_context_s` before the last stable word
        ends, which the final takes as they are; None if there are none. Each token forced
        on the decoder costs a step, as much as one it generates (bench/results/
        stt_final_context.md): the final decodes only the audio after them, with the stable
        words of that stretch forced, so that it still hears their context."""
        context_s, words = self._limits.final_context_s, u.stable_words
        if context_s <= 0 or len(words) < 2:
            return None
        keep_from_s = words[-1].end_s - context_s
        starts = [i for i in range(1, len(words)) if words[i].start_s <= keep_from_s]
        if not starts:
            return None
        # the widest pause of the latest few: a partial's word times are surest there
        n = max(starts[-HEAD_CUT_CHOICES:], key=lambda i: (words[i].start_s - words[i - 1].end_s, i))
        cut_s = min(words[n].start_s - 0.05, (words[n - 1].end_s + words[n].start_s) / 2)
        samples = max(0, round(cut_s * RATE_HZ))
        return _Head(words[:n], " ".join(u.agreement.stable_prefix.split()[:n]), samples)

    def _overlap(self, u: _Utterance, ended: SpeechEnded) -> _Overlap | None:
        """The end of the previous final's audio and its words there, to decode ahead of
        `ended`; None when `ended` does not follow it closely or leaves no room."""
        c = self._context
        if c is None or u.language != c.language:
            return None
        if ended.start_sample - c.end_sample > OVERLAP_GAP_S * RATE_HZ:
            return None
        room_s = OVERLAP_AUDIO_S - len(ended.audio) / RATE_HZ
        if room_s < MIN_OVERLAP_S:
            return None
        # the pre-roll may reach back into the previous utterance's audio: hear it once
        end = len(c.audio) - max(0, c.end_sample - ended.start_sample)
        from_s = end / RATE_HZ - room_s
        words = [w for w in c.words if w.start_s >= from_s and w.end_s <= end / RATE_HZ]
        if not words:
            return None
        start = max(0, round((words[0].start_s - 0.05) * RATE_HZ))
        return _Overlap(c.audio[start:end], coverage.text_of(words), len(words))

    def _final_beam(self, model: LoadedModel, mine: tuple[asyncio.Future[Any], ...] = ()) -> int:
        """The beam for a final about to be decoded: FINAL_IDLE_BEAM when no decode but the
        stream's own (`mine`) waits in `model`'s lane, else greedy (`beam_size`): a wider
        beam then would hold up the other streams' results (bench/results/stt_final_beam.md)."""
        if self._limits.final_beam_when_idle and model.lane.waiting_besides(mine) == 0:
            return max(FINAL_IDLE_BEAM, self._limits.beam_size)
        return self._limits.beam_size

    def _final_path(self, options: DecodeOptions) -> str:
        """How a final was decoded (the label of dragoman_stt_finals_total)."""
        if options.beam_size > self._limits.beam_size:
            return "idle_beam"
        if self._limits.final_beam_when_idle and self._limits.beam_size < FINAL_IDLE_BEAM:
            return "busy_greedy"
        return "fixed"

    def _final_options(self, u: _Utterance, beam_size: int) -> DecodeOptions:
        return DecodeOptions(
            language=u.language, prefix=u.agreement.stable_prefix, hotwords=self.config.hotwords,
            word_timestamps=True, beam_size=beam_size,
            temperatures=FINAL_TEMPERATURES, fallback_beam_size=FINAL_FALLBACK_BEAM,
            task=self.config.task,
        )

    async def _wait(self, partial: asyncio.Future[Timed[Transcription]] | None) -> None:
        wakeup = asyncio.ensure_future(self._wakeup.wait())
        waits: list[asyncio.Future[Any]] = [wakeup]
        if partial is not None:
            waits.append(partial)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wakeup.cancel()

    def _partial_due(self) -> _Utterance | None:
        u = self._utterance
        if not self.config.interim_results or u is None or not self._segmenter.speaking:
            return None
        if self._segmenter.trailing_silence >= self._partial_quiet:
            return None
        if self._segmenter.overdue:
            return None  # it will be cut at its next pause: its stable words stay as they are
        # fewer partials while the model's lane queues: one more interval per batch waiting
        lane = self._models.for_language(u.language, self.config.task).lane
        interval = self._partial_interval * (1 + lane.depth // lane.max_batch)
        if self._segmenter.utterance_samples - u.decoded_samples < interval:
            return None
        if self._segmenter.utterance_speech - u.decoded_speech < self._partial_new_speech:
            return None  # nothing new heard: the words cannot change
        return u

    def _start_partial(self, u: _Utterance) -> asyncio.Future[Timed[Transcription]]:
        u.decoded_samples = self._segmenter.utterance_samples
        u.decoded_speech = self._segmenter.utterance_speech
        options = DecodeOptions(
            language=u.language, prefix=u.agreement.stable_prefix, hotwords=self.config.hotwords,
            task=self.config.task, window_step_s=PARTIAL_WINDOW_STEP_S,
            word_timestamps=self._times_stable_words or self._right_context > 0,
        )
        model = self._models.for_language(u.language, self.config.task)
        return model.decode(self._segmenter.utterance_audio(), options, Priority.PARTIAL)

    def _on_partial(self, u: _Utterance, timed: Timed[Transcription]) -> None:
        result = timed.value
        if not u.open:
            return  # its final is on the way
        reason = guards.rejection(result, u.decoded_samples / RATE_HZ,
                                  speech_heard=self._heard_speech(u))
        if reason is not None:
            log.debug("partial dropped: %s", reason)
            return
        ends = [round(w.end_s * RATE_HZ) for w in result.words] if result.words else None
        transcript, stable, stability = u.agreement.update(result.text, u.decoded_samples, ends)
        if self._times_stable_words:  # the latest reading times them best: they are further in
            u.stable_words = _stable_words(stable, result.words) or u.stable_words
        self._segmenter.hold(u.agreement.stable_samples)
        if stable and u.language is None:  # the forced prefix fixes the language
            u.language, u.language_probability = result.language, result.language_probability
        code, probability = self._language_of(u, result)
        self._emit(ResultOut(
            utterance_index=u.index, transcript=transcript, is_final=False, stability=stability,
            stable_prefix=stable, language_code=code, language_probability=probability,
            confidence=0.0, low_confidence=False, start_s=_s(u.start_sample),
            end_s=_s(u.start_sample + u.decoded_samples), words=(), processing_s=timed.seconds,
        ))

    async def _finalise(self, job: _FinalJob) -> None:
        u, event = job.utterance, job.event
        model = self._models.for_language(u.language, self.config.task)
        spec, self._speculation = self._speculation, None
        # the beam was chosen when the final's decode started: by its speculation, if that
        # had this very audio, else now
        if spec is not None and spec.hears(event):
            beam_size = spec.options.beam_size
        else:
            if spec is not None:
                spec.future.cancel()
                spec = None
            beam_size = self._final_beam(model)
        final = self._final_input(u, event, beam_size)
        speculated = spec is not None and spec.serves(event, final, model)
        if spec is not None and speculated:
            timed = await spec.future
        else:
            if spec is not None:
                spec.future.cancel()
            timed = await model.decode(final.audio, final.options, Priority.FINAL)
        result: Transcription | None = timed.value
        processing_s = timed.seconds
        if final.overlap is not None:
            result = _without_overlap(timed.value, final.overlap)
            if result is None:  # the overlap went wrong: decode the utterance alone
                final = _FinalInput(event.audio, self._final_options(u, beam_size))
                timed = await model.decode(final.audio, final.options, Priority.FINAL)
                result = timed.value
                processing_s += timed.seconds
        assert result is not None
        result, doubt = await self._unless_doubtful(u, result, final, model)
        result = _with_head(result, final.head)
        processing_s += doubt.seconds
        options = final.options
        reason = guards.rejection(result, len(event.audio) / RATE_HZ,
                                  speech_heard=self._heard_speech(u))
        offset_s = _s(event.start_sample)
        if reason is None:
            result, recovering_s = await self._recover(u, event, result, options, model)
            processing_s += recovering_s
            result, again_s = await self._unless_sparse(u, event, result, options, model)
            processing_s += again_s
            transcript = u.agreement.merge(result.text)
            self._context = _Context(
                result.language, event.start_sample + len(event.audio), event.audio, result.words
            )
            words = coverage.shifted(result.words, offset_s)
        else:
            log.info("utterance %d dropped: %s", u.index, reason)
            self._context = None
            transcript, words = u.agreement.stable_prefix, ()
            # the speech after the stable words (all of it, without any) got no words
            heard_s = _s(u.agreement.stable_samples) if transcript else 0.0
            speech_s = _s(event.end_sample - event.start_sample)
            if speech_s > heard_s:
                self._unrecognised(u, event, heard_s, speech_s, reason.kind)
        if (
            self._language is None
            and reason is None
            and result.language_probability >= LANGUAGE_LOCK_PROBABILITY
        ):
            self._language, self._language_probability = (
                result.language, result.language_probability
            )
            log.info("language locked", extra={"language": self._language})
        code, probability = self._language_of(u, result)
        score = confidence(words, result) if transcript else 0.0
        self._emit(ResultOut(
            utterance_index=u.index, transcript=transcript, is_final=True, stability=1.0,
            stable_prefix=transcript, language_code=code, language_probability=probability,
            confidence=score, low_confidence=bool(transcript) and score < self._limits.low_confidence_below,
            start_s=offset_s, end_s=_s(event.end_sample),
            words=words, processing_s=processing_s,
        ))
        path = "doubt_beam" if doubt.decoded else self._final_path(options)
        metrics.STT_FINAL_PATHS.labels(path).inc()
        log.debug("final %d: %s", u.index, logs.redact(transcript))
        log.info(
            "final sent",
            extra={
                "utterance": u.index,
                "model": model.capabilities.name,
                "audio_ms": round(1000 * len(event.audio) / RATE_HZ),
                "decoded_audio_ms": round(1000 * len(final.audio) / RATE_HZ),
                "decode_ms": round(1000 * processing_s),
                "speculated": speculated,
                "path": path,
                "endpoint_to_final_ms": round(1000 * (time.perf_counter() - job.received_s)),
            },
        )

    async def _unless_doubtful(
        self, u: _Utterance, result: Transcription, final: _FinalInput, model: LoadedModel,
    ) -> tuple[Transcription, _Doubt]:
        """`result`, a greedy final, or its input decoded again with FINAL_IDLE_BEAM when its
        `confidence()` is under `final_beam_when_doubtful`, whichever reading has the higher
        mean token log-probability (both decode the same audio after the same forced prefix).
        Greedy's mistakes cluster in the finals it doubts: the beam's cost goes there only
        (bench/results/stt_final_doubt.md)."""
        threshold = self._limits.final_beam_when_doubtful
        if final.options.beam_size >= FINAL_IDLE_BEAM or not result.text:
            return result, _Doubt()
        score = confidence(result.words, result)
        if score >= threshold:
            return result, _Doubt()
        try:
            timed = await model.decode(
                final.audio, replace(final.options, beam_size=FINAL_IDLE_BEAM), Priority.FINAL)
        except ResourceExhausted:
            return result, _Doubt()
        beam = (timed.value if final.overlap is None
                else _without_overlap(timed.value, final.overlap))
        kept = beam is not None and beam.avg_logprob > result.avg_logprob
        log.info("doubtful final decoded again", extra={
            "utterance": u.index, "confidence": round(score, 3),
            "logprob": round(result.avg_logprob, 3),
            "logprob_beam": None if beam is None else round(beam.avg_logprob, 3),
            "kept_beam": kept})
        return (beam if kept and beam is not None else result), _Doubt(True, timed.seconds)

    async def _recover(
        self, u: _Utterance, event: SpeechEnded, result: Transcription, options: DecodeOptions,
        model: LoadedModel,
    ) -> tuple[Transcription, float]:
        """`result` with the speech its words leave out decoded again, alone and with no forced
        prefix, and spliced in (see stt_svc.coverage); and the seconds that took. Speech still
        without words is counted as unrecognised."""
        words, spent, lost = result.words, 0.0, "uncovered"
        if not self._limits.redecode_gaps or not self._transcribing:
            for gap in coverage.gaps(words, _s(event.end_sample - event.start_sample)):
                self._unrecognised(u, event, gap.start_s, gap.end_s, lost)
            return result, spent
        speech_end_s = _s(event.end_sample - event.start_sample)
        # greedy only: a fallback temperature samples, and a short gap's degenerate greedy
        # reading then came out different on every run; the guards judge the greedy one
        again = replace(options, language=result.language, prefix="", temperatures=(0.0,))
        for gap in reversed(coverage.gaps(result.words, speech_end_s)):  # later gaps first
            lo = max(0, round((gap.start_s - coverage.MARGIN_S) * RATE_HZ))
            hi = (len(event.audio) if gap.index == len(result.words)
                  else round((gap.end_s + coverage.MARGIN_S) * RATE_HZ))
            try:
                timed = await model.decode(event.audio[lo:hi], again, Priority.FINAL)
            except ResourceExhausted:
                lost = "overloaded"
                break
            spent += timed.seconds
            found = timed.value
            if guards.rejection(found, (hi - lo) / RATE_HZ) is None:
                words = coverage.splice(words, gap, found.words, lo / RATE_HZ)
        for gap in coverage.gaps(words, speech_end_s):
            self._unrecognised(u, event, gap.start_s, gap.end_s, lost)
        if words == result.words:
            return result, spent
        added = len(words) - len(result.words)
        log.info("speech re-decoded", extra={"utterance": u.index, "words_added": added})
        return replace(result, text=coverage.text_of(words), words=words), spent

    async def _unless_sparse(
        self, u: _Utterance, event: SpeechEnded, result: Transcription, options: DecodeOptions,
        model: LoadedModel,
    ) -> tuple[Transcription, float]:
        """`result`, or the utterance decoded again alone with no forced prefix when `result`
        has too few words for its speech (SPARSE_WORDS_PER_S) and the new reading has at least
        twice as many; and the seconds that took. A decode forced to start with a misheard
        stable prefix can end after a word or two, and its words, aligned across the whole
        audio, leave no gap for `_recover` to find."""
        speech_s = len(event.audio) / RATE_HZ
        words = len(result.text.split())
        if (not self._limits.redecode_sparse or speech_s < SPARSE_MIN_S
                or words >= SPARSE_WORDS_PER_S * speech_s or result.language in UNSPACED_LANGUAGES):
            return result, 0.0
        again_options = replace(options, language=result.language, prefix="")
        try:
            timed = await model.decode(event.audio, again_options, Priority.FINAL)
        except ResourceExhausted:
            return result, 0.0
        again = timed.value
        found = len(again.text.split())
        kept = guards.rejection(again, speech_s) is None and found >= 2 * max(words, 1)
        log.info("sparse final decoded again", extra={
            "utterance": u.index, "audio_ms": round(1000 * speech_s), "words": words,
            "words_again": found, "kept": kept})
        metrics.STT_SPARSE_FINALS.labels("replaced" if kept else "kept").inc()
        return (again if kept else result), timed.seconds

    def _heard_speech(self, u: _Utterance) -> bool:
        """Whether partials of `u` agreed on words of its speech (transcription only)."""
        return self._transcribing and bool(u.agreement.stable_prefix)

    def _unrecognised(
        self, u: _Utterance, event: SpeechEnded, start_s: float, end_s: float, reason: str
    ) -> None:
        """Counts and logs speech (times from the utterance's start) that got no final text."""
        metrics.STT_UNRECOGNISED_SPEECH.labels(reason).inc(max(0.0, end_s - start_s))
        offset_ms = 1000 * _s(event.start_sample)
        log.info(
            "unrecognised speech",
            extra={
                "stream": logs.rpc_id.get(),
                "utterance": u.index,
                "start_ms": round(offset_ms + 1000 * start_s),
                "end_ms": round(offset_ms + 1000 * end_s),
                "reason": reason,
            },
        )

    def _language_of(self, u: _Utterance, result: Transcription) -> tuple[str, float]:
        if self.config.language is not None:
            return self.config.language_code, 1.0
        if u.language is not None:
            return u.language, u.language_probability
        return result.language, result.language_probability


def _without_overlap(result: Transcription, overlap: _Overlap) -> Transcription | None:
    """`result` of a decode with `overlap` before the utterance, less the overlap's words;
    None if it does not start with them or has nothing after them."""
    n = overlap.words
    heard = coverage.text_of(result.words[:n])
    if guards.normalised_words(heard) != guards.normalised_words(overlap.text):
        return None
    shift_s = len(overlap.audio) / RATE_HZ
    words = tuple(
        replace(w, start_s=max(0.0, w.start_s - shift_s), end_s=max(0.0, w.end_s - shift_s))
        for w in result.words[n:]
    )
    if not words:
        return None
    rest = result.text[len(overlap.text):] if result.text.startswith(overlap.text) else ""
    if rest[:1].isspace():
        text = rest.strip()
    else:  # the last context word reads differently ("However" -> "However,"): cut by words
        text = " ".join(result.text.split()[n:])
    return replace(result, text=text, words=words)


def _stable_words(stable: str, words: tuple[WordTiming, ...]) -> tuple[WordTiming, ...]:
    """The first of `words` (a partial's, timed) that read as the stable prefix `stable`;
    () when they do not."""
    n = len(stable.split())
    head = words[:n]
    if len(head) < n or (guards.normalised_words(coverage.text_of(head))
                         != guards.normalised_words(stable)):
        return ()
    return head


def _with_head(result: Transcription, head: _Head | None) -> Transcription:
    """`result`, a decode of the audio after `head`, with `head`'s words before its own."""
    if head is None:
        return result
    words = head.words + coverage.shifted(result.words, head.samples / RATE_HZ)
    return replace(result, text=f"{head.text} {result.text}".strip(), words=words)


def _s(samples: int) -> float:
    return samples / RATE_HZ


def confidence(words: tuple[WordTiming, ...], result: Transcription) -> float:
    """How sure the decoder is of a final, in [0, 1]: the mean probability of `words` (of
    the tokens, exp(avg_logprob), without words) times 1 - no_speech_prob. The word mean
    separates right from misheard speech best; the no-speech factor pulls down
    noise the guards let through (bench/results/stt_confidence.md)."""
    if words:
        heard = float(np.mean([w.probability for w in words]))
    elif result.text:
        heard = math.exp(result.avg_logprob)
    else:
        return 0.0
    return min(1.0, max(0.0, heard * (1.0 - result.no_speech_prob)))
