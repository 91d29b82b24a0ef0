"""Per-listener delivery: each listener hears whole utterances, one after another.

A speaker's pipeline (session_svc.pipeline) puts a `Delivery` into the outbox
of every listener of an utterance when its final comes, so each outbox holds
the utterances of all speakers in the order their finals came. The outbox
sends one delivery's speech at a time, chunk by chunk as it is synthesised,
and starts the next only when the last chunk has gone; the speakers'
pipelines prepare the next ones meanwhile. One synthesis (`Speech`) is read
by every listener of its language, voice and output rate.

In simultaneous mode an utterance spoken in pieces (`Pieces`, one per language,
voice and rate) is put in the outboxes when its first piece is committed, and
holds them until its last piece (made when its final comes) has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from dragoman.errors import DragomanError
from dragoman.tts.v1 import tts_pb2
from dragoman.v1 import conversation_pb2 as pb
from session_svc.catchup import Backlog
from session_svc.sessions import Member

log = logging.getLogger(__name__)

DELIVERY_WAIT_S = 2.0
"""How long an outbox waits for the listener's stream to send an utterance's first chunk."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of speech as a listener gets it (SpeechAudio)."""

    audio: bytes
    sample_rate_hertz: int
    chunk_index: int
    is_last: bool
    text: str
    piece_index: int = 0
    source_text: str = ""
    after_final: bool = True
    """It speaks what was said after the final came (the utterance's latency counts from
    the first such chunk): all of an utterance spoken whole, only the last piece's."""
    duration_s: float = 0.0
    ready: float | None = None
    """On a speech's first chunk: when its text was ready (`Speech.translated`)."""


class Speech:
    """One synthesis, read by every listener it is for: its chunks as they come, then its end.

    `text` is what is spoken (a translation, or a transcript for listeners of the
    speaker's language), `source_text` the speaker's words it speaks, and `translated`
    when `text` was ready."""

    def __init__(self, source_text: str = "") -> None:
        self.text = ""
        self.source_text = source_text
        self.translated: float | None = None
        self.chunks: list[tts_pb2.SynthesizeResponse] = []
        self.error: DragomanError | None = None
        self.ended = False
        self._changed = asyncio.Event()

    def add(self, chunk: tts_pb2.SynthesizeResponse) -> None:
        self.chunks.append(chunk)
        self._wake()

    def end(self, error: DragomanError | None = None) -> None:
        """No more chunks; `error` stopped the synthesis (raised to each reader after the chunks)."""
        if not self.ended:
            self.ended, self.error = True, error
            self._wake()

    def _wake(self) -> None:
        # Each waiter holds the event current when it began waiting: setting it wakes them all.
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self) -> AsyncIterator[Chunk]:
        """Every chunk, from the first, as it comes; raises the error that ended it, if any."""
        i = 0
        while True:
            if i < len(self.chunks):
                c = self.chunks[i]
                yield Chunk(c.audio, c.sample_rate_hertz, c.chunk_index, c.is_last, c.text,
                            source_text=self.source_text if i == 0 else "",
                            duration_s=c.audio_duration.seconds + c.audio_duration.nanos / 1e9,
                            ready=self.translated if i == 0 else None)
                i += 1
            elif self.ended:
                if self.error is not None:
                    raise self.error
                return
            else:
                await self._changed.wait()


class Pieces:
    """An utterance spoken in pieces for one language, voice and rate (simultaneous mode):
    piece speeches appended as they are committed, the last one when the final came.

    Read as one speech: `chunk_index` counts on across pieces, `piece_index` from 1,
    `source_text` on each piece's first chunk, `is_last` only at the end of the last piece.
    A piece that failed before the last is skipped (the speaker was told). When no chunk of a
    last piece closed it (the last piece had nothing to say, or no last piece came because the
    final never did), it closes with one empty `is_last` chunk, so a player waiting for the end
    of the utterance gets it; `rate_hz` is the rate asked of tts_svc."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.pieces: list[Speech] = []
        self.text = ""
        """All that was spoken, once the last piece is added."""
        self.translated: float | None = None
        """When the last piece's text was ready."""
        self.last_added = False
        self.ended = False
        self._changed = asyncio.Event()

    def add(self, piece: Speech, last: bool = False) -> None:
        if not self.ended:
            self.pieces.append(piece)
            self.last_added = self.ended = last
            self._wake()

    def end(self) -> None:
        """No more pieces: the last was added, or the utterance was lost (no last piece).
        Each piece is ended by its own synthesis."""
        if not self.ended:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self) -> AsyncIterator[Chunk]:
        index = p = 0
        rate_hz = self.rate_hz  # the chunks' own once there are some (0 asks tts_svc's default)
        closed = False
        while True:
            if p < len(self.pieces):
                last = self.last_added and p == len(self.pieces) - 1
                try:
                    async for c in self.pieces[p].follow():
                        closed = last and c.is_last
                        yield Chunk(c.audio, c.sample_rate_hertz, index, closed, c.text, p + 1,
                                    c.source_text, after_final=last, duration_s=c.duration_s,
                                    ready=c.ready)
                        index, rate_hz = index + 1, c.sample_rate_hertz
                except DragomanError:
                    if last:
                        raise
                p += 1
            elif self.ended:
                if not closed:  # an empty last piece keeps its number; a lost final takes the next
                    yield Chunk(b"", rate_hz, index, True, "", p if self.last_added else p + 1,
                                after_final=self.last_added)
                return
            else:
                await self._changed.wait()


@dataclass(frozen=True, slots=True)
class Heard:
    """How one delivery went for its listener (times are `time.monotonic()`)."""

    first_audio: float | None
    """When the first chunk went into the listener's event log; None: they heard nothing."""
    delivered: float | None
    """When their stream handed that chunk to gRPC; None: not known."""
    failed: bool
    """The synthesis failed part way (what came before it was sent)."""


@dataclass
class Delivery:
    """One utterance for one listener: `speech` (None: nothing to hear) sent as SpeechAudio
    with `utterance_id` and its speaker's identity; `done` is called once, when it is over."""

    utterance_id: str
    speaker: Member
    speech: Speech | Pieces | None
    done: Callable[[Heard], None]
    delivered: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    first_index: int | None = None
    """chunk_index of its first chunk after the final (`Chunk.after_final`), once sent."""


class Outbox:
    """The utterances waiting for one listener, delivered whole and in the order they came."""

    def __init__(self, listener: Member) -> None:
        self.listener = listener
        self.backlog = Backlog()
        """Of the speech sent to the listener (session_svc.catchup)."""
        self._queue: deque[Delivery] = deque()
        self._current: Delivery | None = None
        self._task: asyncio.Task[None] | None = None

    def put(self, delivery: Delivery) -> None:
        self._queue.append(delivery)
        if self._task is None:
            self._task = asyncio.create_task(
                self._drain(), name=f"outbox-{self.listener.participant_id}")

    def mark_delivered(self, utterance_id: str, chunk_index: int) -> None:
        """The listener's stream handed a chunk of `utterance_id` to gRPC."""
        current = self._current
        if current is not None and current.utterance_id == utterance_id and (
                current.first_index == chunk_index and not current.delivered.done()):
            current.delivered.set_result(time.monotonic())

    async def _drain(self) -> None:
        try:
            while self._queue:
                delivery = self._queue.popleft()
                self._current = delivery
                heard = Heard(None, None, False)
                try:
                    heard = await self._deliver(delivery)
                except Exception:  # noqa: BLE001 - one utterance's fault must not stop the rest
                    log.exception("delivering %s failed", delivery.utterance_id)
                    heard = Heard(None, None, True)
                finally:
                    self._current = None
                    delivery.done(heard)
        finally:
            self._task = None  # no await since the queue was found empty: a put starts a new one
            self.backlog.idle()
            while self._queue:  # cancelled: nobody hears the rest
                self._queue.popleft().done(Heard(None, None, False))

    async def _deliver(self, delivery: Delivery) -> Heard:
        listener, speaker, speech = self.listener, delivery.speaker, delivery.speech
        first_audio: float | None = None
        failed = False
        if speech is not None and listener.present:
            try:
                async for chunk in speech.follow():
                    if not listener.present:  # left or removed: nothing more for them
                        break
                    if first_audio is None and chunk.after_final:
                        first_audio = time.monotonic()
                        delivery.first_index = chunk.chunk_index
                    listener.log.append(speech_audio=pb.SpeechAudio(
                        utterance_id=delivery.utterance_id, data=chunk.audio,
                        sample_rate_hertz=chunk.sample_rate_hertz, chunk_index=chunk.chunk_index,
                        is_last=chunk.is_last, text=chunk.text, piece_index=chunk.piece_index,
                        source_text=chunk.source_text,
                        speaker_participant_id=speaker.participant_id,
                        speaker_display_name=speaker.display_name,
                    ))
                    self.backlog.sent(chunk.duration_s, chunk.ready)
            except DragomanError:
                failed = True  # the speaker was told; the next utterance goes on
        if first_audio is not None and not failed and listener.connection is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(delivery.delivered), DELIVERY_WAIT_S)
        delivered = delivery.delivered.result() if delivery.delivered.done() else None
        return Heard(first_audio, delivered, failed)


def of(listener: Member) -> Outbox:
    """The listener's outbox, made on first use."""
    if listener.outbox is None:
        listener.outbox = Outbox(listener)
    return listener.outbox


def mark_delivered(listener: Member, utterance_id: str, chunk_index: int) -> None:
    """Called by the listener's stream when it hands an audio chunk to gRPC."""
    if listener.outbox is not None:
        listener.outbox.mark_delivered(utterance_id, chunk_index)
