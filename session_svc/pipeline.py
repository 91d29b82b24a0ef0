"""The per-speaker pipeline: audio -> STT -> MT -> TTS -> every listener.

One `SpeakerPipeline` runs while a participant streams audio. A recognition
stream to stt_svc runs for its whole life; partial and final transcripts go
to the speaker and every listener as they come. When a final comes, it is
put in the outbox of each listener present (session_svc.outbox), which
delivers whole utterances in the order their finals came, across speakers.
It is translated once per listeners' language and synthesised once per
(language, voice, output rate), while the utterance before it may still be
speaking: up to LOOKAHEAD utterances are prepared behind the one being
delivered, so the next one's first audio is ready when the previous one's
last chunk goes out. Translations (captions) go out as soon as they exist,
to the speaker (one per language) and that language's listeners. Listeners
of the speaker's own language get the transcript and no audio, unless
`same_language_audio` (then the transcript is spoken in their voice). Every
stage's time is recorded per utterance and listener (`UtteranceLatency`);
`synthesis_first_chunk` includes any wait for the utterance before it in
that listener's outbox. A final that does not end a sentence may wait for
the rest of it (session_svc.sentences): the group is then translated as one
text and delivered as its last utterance, and the Translation lists the
utterances it covers.

While the speaker talks, the stable prefix of each partial transcript is
translated for each listeners' language as it grows (session_svc.partials),
as Translation events with is_final false. In simultaneous mode it is also cut
into pieces (session_svc.pieces) that are translated and spoken at once: the
utterance goes into the outboxes of the listeners who hear it at its first
piece, as one `outbox.Pieces` per language, voice and rate, and its final adds
a last piece with the words after those already spoken (the final Translation
still translates the whole final transcript). An utterance that never reaches
a piece goes exactly as in utterance mode.

When the route to any listener is speech translation, the recognition
stream translates into English: every transcript is then English
(`translated_to_english`), listeners of the speaker's language read that
English text and hear nothing, and the other languages are translated from
the English.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from functools import partial

from google.protobuf.duration_pb2 import Duration

from dragoman import logs, metrics, rpc
from dragoman.coverage import Route
from dragoman.errors import DragomanError, InvalidArgument, ResourceExhausted
from dragoman.languages import ENGLISH
from dragoman.stt.v1 import stt_pb2
from dragoman.v1 import conversation_pb2 as pb
from session_svc import outbox, pieces, routes, sentences
from session_svc.catchup import CatchUp
from session_svc.downstream import Downstream, error_code
from session_svc.lexicon import Lexicon
from session_svc.outbox import Delivery, Heard, Pieces, Speech
from session_svc.partials import Partial, Partials
from session_svc.recordings import RECORDING, VoiceTape
from session_svc.sessions import Member, Session

log = logging.getLogger(__name__)

AUDIO_QUEUE_CHUNKS = 100  # 10 s of 100 ms chunks
MAX_STT_MESSAGE_BYTES = 48 * 1024  # under stt_svc's 64 KiB per message
LOOKAHEAD = 1
"""Utterances translated and being synthesised behind the one being delivered."""


@dataclass
class Utterance:
    """One phrase of the speaker and the wall-clock time of its stages up to the final."""

    utterance_id: str
    speech_end_arrival: float | None = None
    end_of_speech: float | None = None
    final: float | None = None
    text: str = ""
    language_code: str = ""
    spoken_s: tuple[float, float] | None = None
    """Wall-clock times its first and last audio arrived (the final's offsets)."""
    pieced: _Pieced | None = None
    """Simultaneous mode: its pieces, once the first was committed."""
    voice: bytes = b""
    """The speaker's own audio of it (PCM16), only while their voice is recorded."""

    def latency(self, translated: float | None, first_audio: float | None,
                delivered: float | None) -> pb.UtteranceLatency | None:
        """Its stages as one listener had them; None when they heard none of it."""
        if self.end_of_speech is None or self.final is None or translated is None or (
                first_audio is None):
            return None
        delivered = delivered or first_audio
        speech_end = self.speech_end_arrival or self.end_of_speech
        return pb.UtteranceLatency(
            endpointing=rpc.duration(self.end_of_speech - speech_end),
            recognition=rpc.duration(self.final - self.end_of_speech),
            translation=rpc.duration(translated - self.final),
            synthesis_first_chunk=rpc.duration(first_audio - translated),
            delivery=rpc.duration(delivered - first_audio),
            total=rpc.duration(delivered - speech_end),
        )


@dataclass
class _Target:
    """The listeners of one language and what they get: a translation (`translate`) or the
    transcript, and one synthesis per (voice, output rate); none: they hear nothing."""

    language: str
    language_code: str
    """As the first of them gave it: asked of mt_svc and tts_svc."""
    translate: bool
    route: Route | None
    listeners: list[Member] = field(default_factory=list)
    speeches: dict[tuple[str, int], Speech | Pieces] = field(default_factory=dict)


@dataclass
class _Prepared:
    """An utterance's translations and speech, made ahead of its turn in the outboxes.

    `group`: the utterances of a sentence translated as one, in spoken order, ending
    with `utt` (whose id the translation and speech carry); [utt] when alone."""

    utt: Utterance
    group: list[Utterance]
    text: str
    targets: list[_Target]
    pending: int
    """Listeners whose outbox has not finished it."""
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    latencies: list[pb.UtteranceLatency | None] | None = None
    """Of the group, as the last listener who heard it had them."""
    task: asyncio.Task[None] | None = None
    final_planned: bool = True
    """False while an utterance in pieces waits for its final: it cannot finish before."""
    lost: bool = False
    """Its final never came (recognition failed): its listeners were told already."""


@dataclass
class _Pieced:
    """An utterance being spoken in pieces: `prepared` is in its listeners' outboxes."""

    prepared: _Prepared
    committed: int = 0
    """Stable words committed to pieces (pieces.split)."""
    listeners: set[str] = field(default_factory=set)
    """participant_id of those who have it in their outbox."""


def _spoken(group: list[Utterance]) -> tuple[float, float] | None:
    """When a sentence of utterances was spoken: its first's start to its last's end."""
    first, last = group[0].spoken_s, group[-1].spoken_s
    return None if first is None or last is None else (first[0], last[1])


class ArrivalClock:
    """Maps a position in the speaker's audio to the wall time it arrived."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self._ends: list[int] = []  # cumulative samples at the end of each chunk
        self._times: list[float] = []
        self.samples = 0

    def add(self, n_samples: int) -> None:
        self.samples += n_samples
        self._ends.append(self.samples)
        self._times.append(time.monotonic())
        if len(self._ends) > 2000:  # keep ~3 minutes of 100 ms chunks
            del self._ends[:1000], self._times[:1000]

    def arrival(self, offset_s: float) -> float | None:
        i = bisect.bisect_left(self._ends, int(offset_s * self.rate_hz))
        return self._times[i] if i < len(self._times) else None

    def span(self, start: Duration, end: Duration) -> tuple[float, float] | None:
        """The wall-clock times the audio from `start` to `end` began and finished arriving."""
        began, ended = (self.arrival(d.ToTimedelta().total_seconds()) for d in (start, end))
        if began is None:
            return None
        ended = ended or self._times[-1]
        to_wall = time.time() - time.monotonic()
        return began + to_wall, ended + to_wall


def _merge_audio(
    a: stt_pb2.StreamingRecognizeRequest, b: stt_pb2.StreamingRecognizeRequest
) -> stt_pb2.StreamingRecognizeRequest | None:
    """Audio that queued up while a gRPC stream to stt_svc fell behind goes as one
    message: fewer writes, no added latency while it keeps up."""
    if a.WhichOneof("streaming_request") != "audio" or (
            len(a.audio) + len(b.audio) > MAX_STT_MESSAGE_BYTES):
        return None
    return stt_pb2.StreamingRecognizeRequest(audio=a.audio + b.audio)


class SpeakerPipeline:
    """Recognises one speaker's audio and delivers translations to every listener."""

    def __init__(
        self, session: Session, speaker: Member, downstream: Downstream,
        encoding: int, rate_hz: int, sentence_wait_s: float = 0.0,
        sentence_max_hold_s: float = 0.0, same_language_audio: bool = False,
        mode: str = "utterance", partial_interval_s: float = 0.0, piece_min_words: int = 2,
        piece_max_words: int = 4, catchup: CatchUp | None = None,
        piece_behind_s: float = 0.0, piece_max_words_behind: int = 12,
    ) -> None:
        self.session = session
        self.speaker = speaker
        self.down = downstream
        self.encoding = encoding
        self.same_language_audio = same_language_audio
        self.simultaneous = mode == "simultaneous"
        if self.simultaneous:  # holding finals for a sentence defeats speaking before the end
            sentence_wait_s = 0.0
        self.partial_interval_s = partial_interval_s
        self.piece_min_words, self.piece_max_words = piece_min_words, piece_max_words
        self.piece_behind_s, self.piece_max_words_behind = piece_behind_s, piece_max_words_behind
        self.catchup = catchup
        self._partials: dict[str, Partials[routes.Translated]] = {}
        """Per listeners' language."""
        self._piece_tasks: set[asyncio.Task[None]] = set()
        self.clock = ArrivalClock(rate_hz)
        self.tape = VoiceTape(rate_hz)
        """The speaker's LINEAR16 audio while their session records their voice (Opus input
        would need decoding here, so it is not kept)."""
        # The recognition task is fixed at the start; speech translation makes the finals English.
        found = self._routes()
        speech = [r for r in found if routes.speech_translates(r)]
        self._speech_translates = bool(speech)
        self.route: Route | None = speech[0] if speech else next(
            (r for r in found if r is not None), None)
        """The speech translation route every final takes, if any; else the first listener's."""
        # On a trunk (the default) each chunk goes straight on to stt_svc as it is fed.
        self._audio: rpc.Feed[stt_pb2.StreamingRecognizeRequest] = rpc.Feed(
            AUDIO_QUEUE_CHUNKS + 1, merge=_merge_audio)
        self._audio.put(stt_pb2.StreamingRecognizeRequest(
            config=stt_pb2.StreamingRecognitionConfig(
                language_code=speaker.language_code,
                encoding=encoding,  # type: ignore[arg-type]  # same numbering as dragoman.v1
                sample_rate_hertz=rate_hz,
                interim_results=True,
                hotwords=speaker.lexicon.hotwords(),
                task=(stt_pb2.RECOGNITION_TASK_TRANSLATE_TO_ENGLISH if self._speech_translates
                      else stt_pb2.RECOGNITION_TASK_TRANSCRIBE),
                # pieces wait on stable words (bench/results/simultaneous.md)
                partial_mode=(stt_pb2.PARTIAL_MODE_EARLY if self.simultaneous
                              else stt_pb2.PARTIAL_MODE_STEADY),
            )
        ))
        self._finals: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self._planned: asyncio.Queue[_Prepared | None] = asyncio.Queue()
        self._inflight: list[_Prepared] = []
        """Planned and not yet done with by every listener."""
        self._utterances: dict[int, Utterance] = {}
        self._sentences = sentences.Sentences(
            self._finals, sentence_wait_s, sentence_max_hold_s,
            speaking=lambda: bool(self._utterances))
        self._prefix = f"{session.members.index(speaker) + 1}"
        self.task = asyncio.create_task(self._run(), name=f"pipeline-{speaker.user_id}")

    @property
    def lexicon(self) -> Lexicon:
        """The vocabularies of the session's participants, the speaker's first (they win a
        conflict), as the pipeline translates now: who joins later brings theirs along."""
        return Lexicon.merged([self.speaker.lexicon, *(
            m.lexicon for m in self.session.members if m is not self.speaker and m.present)])

    def _routes(self) -> list[Route | None]:
        return [self.session.route_between(self.speaker, m)
                for m in self.session.listeners(self.speaker)]

    def outdated(self) -> bool:
        """Whether the recognition stream's task (set at its start) no longer fits the routes to
        the listeners present: one now needs speech translation, or none does any more."""
        current = self._routes()
        return bool(current) and not self.task.done() and self._speech_translates != any(
            routes.speech_translates(r) for r in current)

    def _route_to(self, listener: Member) -> Route | None:
        """The route a final takes to `listener`: what the recognition stream made of it decides."""
        if self._speech_translates:
            return self.route
        route = self.session.route_between(self.speaker, listener)
        return None if routes.speech_translates(route) else route  # the final is not English

    # -- input ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        try:
            self._audio.put(stt_pb2.StreamingRecognizeRequest(audio=data))
        except asyncio.QueueFull:
            raise ResourceExhausted(
                "audio arrives faster than it can be recognised; slow down to real time",
                retry_after_s=1.0,
            ) from None
        if self.encoding == pb.AUDIO_ENCODING_LINEAR16:  # Opus bytes say nothing of duration
            self.clock.add(len(data) // 2)
            rec = self.session.recording
            self.tape.add(data, rec is not None and rec.state == RECORDING and rec.original_voice)

    async def finish(self, timeout_s: float) -> None:
        """No more audio: flush the utterance in progress and deliver it."""
        self._audio.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        except TimeoutError:
            log.warning("pipeline did not finish in %.1f s; cancelling", timeout_s)
            await self.cancel()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self.task.cancelled() or (current is not None and current.cancelling()):
                raise
            # the pipeline was cancelled meanwhile (its stream closed): nothing to finish
        except DragomanError:
            pass  # the pipeline reported it to the participant

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DragomanError):
            await self.task

    # -- output --------------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        return {"speaker_participant_id": self.speaker.participant_id,
                "speaker_display_name": self.speaker.display_name}

    def _all(self, name: str, make: Callable[..., object], but: Set[str] = frozenset()) -> None:
        """Emits an event about the speaker to them (SELF) and to every listener (PARTNER)
        whose participant_id is not in `but`; `make(speaker=..., **ids)` builds it."""
        self.speaker.log.append(**{name: make(speaker=pb.SPEAKER_SELF, **self._ids())})
        listeners = [m for m in self.session.listeners(self.speaker)
                     if m.participant_id not in but]
        if listeners:
            theirs = make(speaker=pb.SPEAKER_PARTNER, **self._ids())
            for listener in listeners:
                listener.log.append(**{name: theirs})

    def _utterance(self, index: int) -> Utterance:
        utt = self._utterances.get(index)
        if utt is None:
            self.speaker.utterance_count += 1
            utt = Utterance(f"{self._prefix}-{self.speaker.utterance_count}")
            self._utterances[index] = utt
            self._all("processing_started", partial(pb.ProcessingStarted, utterance_id=utt.utterance_id))
        return utt

    async def _run(self) -> None:
        worker = asyncio.create_task(self._deliver_all(), name="deliver")
        try:
            async for response in self.down.recognize(self._audio):
                self._on_recognition(response)
        except DragomanError as e:
            if isinstance(e, InvalidArgument):
                raise
            self.session.record_error(self.speaker)
            metrics.PIPELINE_ERRORS.labels("recognition").inc()
            # utterances heard in part are lost: named, and ended (the next audio starts anew)
            lost, code = [*self._utterances.values()], error_code(e, pb.ERROR_CODE_RECOGNITION_FAILED)
            self._utterances.clear()
            for utterance_id in [u.utterance_id for u in lost] or [""]:
                self.speaker.log.append(error=pb.ConversationError(
                    code=code, message=e.message, utterance_id=utterance_id))
            self._abandon(lost)
        finally:
            lost = [*self._utterances.values()]  # cancelled: the stream closed
            self._utterances.clear()
            self._abandon(lost)
            self._finals.put_nowait(None)
            try:
                await worker
            finally:
                for task in list(self._piece_tasks):
                    task.cancel()
                await asyncio.gather(*self._piece_tasks, *(
                    p.aclose() for p in self._partials.values()), return_exceptions=True)

    def _abandon(self, lost: list[Utterance]) -> None:
        """Utterances whose final will not come end for everyone (ProcessingEnded, no latency).
        Their pieces end where they are: a listener who has them in their outbox gets one empty
        `is_last` chunk after the pieces already made (outbox.Pieces), then the end (`_heard`)."""
        for utt in lost:
            holders: set[str] = set()
            if utt.pieced is not None:
                utt.pieced.prepared.lost, holders = True, utt.pieced.listeners
                for target in utt.pieced.prepared.targets:
                    for speech in target.speeches.values():
                        speech.end()
            self._all("processing_ended",
                      partial(pb.ProcessingEnded, utterance_id=utt.utterance_id), holders)

    def _on_recognition(self, response: stt_pb2.StreamingRecognizeResponse) -> None:
        if response.HasField("speech_event"):
            ev = response.speech_event
            utt = self._utterance(ev.utterance_index)
            if ev.type == stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH:
                utt.end_of_speech = time.monotonic()
                offset_s = ev.audio_offset.ToTimedelta().total_seconds()
                utt.speech_end_arrival = self.clock.arrival(offset_s)
            return
        result = response.result
        utt = self._utterance(result.utterance_index)
        text = result.transcript.strip()
        self._all("transcription", partial(
            pb.Transcription, utterance_id=utt.utterance_id, text=text, is_final=result.is_final,
            stability=result.stability, language_code=result.language_code,
            translated_to_english=self._speech_translates, confidence=result.confidence,
            low_confidence=result.low_confidence,
        ))
        if not result.is_final:
            stable = result.stable_prefix.strip()
            if stable:
                self._on_stable(result.utterance_index, utt, stable, result.stability,
                                result.language_code or self.speaker.language_code)
            return
        for partials in self._partials.values():
            partials.close(result.utterance_index)
        if text:
            self.session.record_transcript(result.low_confidence)
        utt.final = time.monotonic()
        utt.end_of_speech = utt.end_of_speech or utt.final
        utt.text, utt.language_code = text, result.language_code or self.speaker.language_code
        utt.spoken_s = self.clock.span(result.start_offset, result.end_offset)
        utt.voice = self.tape.cut(result.start_offset.ToTimedelta().total_seconds(),
                                  result.end_offset.ToTimedelta().total_seconds())
        del self._utterances[result.utterance_index]
        if self.simultaneous:  # planned at once: a next utterance's pieces must come after
            self._schedule(self._plan([utt]))
        else:
            self._finals.put_nowait(utt)

    async def _deliver_all(self) -> None:
        """Puts each final (or sentence) in its listeners' outboxes as it comes, and prepares
        them in order, 1 + LOOKAHEAD at a time, until each is delivered."""
        slots = asyncio.Semaphore(1 + LOOKAHEAD)
        planned, inflight = self._planned, self._inflight

        async def prepare_all() -> None:
            while (prepared := await planned.get()) is not None:
                await slots.acquire()
                prepared.done.add_done_callback(lambda _: slots.release())
                if not prepared.done.done():  # else all its listeners went meanwhile
                    prepared.task = asyncio.create_task(self._prepare(prepared), name="prepare")

        feeder = asyncio.create_task(prepare_all(), name="prepare-all")
        try:
            while (group := await self._sentences.next()) is not None:
                self._schedule(self._plan(group))
            planned.put_nowait(None)
            await feeder
            if inflight:  # wait, not gather: cancelling this must not cancel their futures
                await asyncio.wait([p.done for p in inflight])
        finally:
            feeder.cancel()
            tasks = [p.task for p in inflight if p.task is not None]
            for prepared in list(inflight):
                if prepared.task is not None:
                    prepared.task.cancel()
                for target in prepared.targets:  # the outboxes waiting on them move on
                    for speech in target.speeches.values():
                        speech.end()
            await asyncio.gather(feeder, *tasks, return_exceptions=True)

    def _schedule(self, prepared: _Prepared) -> None:
        """A planned utterance waits its turn to be prepared (`_deliver_all`)."""
        if not prepared.done.done():
            self._inflight.append(prepared)
            prepared.done.add_done_callback(lambda _: self._inflight.remove(prepared))
        self._planned.put_nowait(prepared)

    def _target(self, targets: dict[str, _Target], listener: Member) -> _Target:
        """The listener's language group in `targets` (added if new), listener not added."""
        target = targets.get(listener.language)
        if target is None:
            same = listener.language == self.speaker.language
            target = targets[listener.language] = _Target(
                listener.language, listener.language_code, not same, self._route_to(listener))
        return target

    def _voice(self, target: _Target, listener: Member) -> tuple[str, int] | None:
        """The synthesis the listener hears, None: they hear nothing (the transcript is theirs)."""
        if target.translate or (self.same_language_audio and not self._speech_translates):
            return listener.voice, listener.output_rate_hz
        return None

    def _put(self, prepared: _Prepared, listener: Member, speech: Speech | Pieces | None) -> None:
        outbox.of(listener).put(Delivery(
            prepared.utt.utterance_id, self.speaker, speech,
            partial(self._heard, prepared, listener, speech)))

    def _plan(self, group: list[Utterance]) -> _Prepared:
        """Groups the listeners present by language and voice and puts the utterance in
        their outboxes; it is prepared later (`_prepare`)."""
        utt = group[-1]
        if utt.pieced is not None:
            return self._plan_pieced(utt.pieced)
        text = sentences.join([u.text for u in group], utt.language_code)
        targets: dict[str, _Target] = {}
        deliveries: list[tuple[Member, Speech | Pieces | None]] = []
        for listener in self.session.listeners(self.speaker):
            if not text:
                deliveries.append((listener, None))
                continue
            target = self._target(targets, listener)
            target.listeners.append(listener)
            key, speech = self._voice(target, listener), None
            if key is not None:
                speech = target.speeches.setdefault(key, Speech(text))
            deliveries.append((listener, speech))
        prepared = _Prepared(utt, group, text, list(targets.values()), pending=len(deliveries))
        for listener, speech in deliveries:
            self._put(prepared, listener, speech)
        if not deliveries:
            self._finished(prepared)
        return prepared

    # -- while the speaker talks: translated partials and pieces ----------------

    def _on_stable(self, index: int, utt: Utterance, stable: str, stability: float,
                   language_code: str) -> None:
        """A partial transcript whose stable prefix is `stable`."""
        language = ENGLISH if self._speech_translates else language_code
        words = pieces.split(stable, language)
        if self.partial_interval_s > 0:
            targets: dict[str, _Target] = {}
            for listener in self.session.listeners(self.speaker):
                target = self._target(targets, listener)
                if target.translate:
                    self._partials_for(target).offer(Partial(index, stable, len(words), stability))
        if self.simultaneous:
            self._commit_pieces(utt, words, language)

    def _partials_for(self, target: _Target) -> Partials[routes.Translated]:
        partials = self._partials.get(target.language)
        if partials is None:
            partials = self._partials[target.language] = Partials(
                partial(routes.translate, self.down, target.route, self.speaker.language_code,
                        target.language_code, lexicon=self.lexicon),
                partial(self._send_partial, target.language, target.language_code),
                self.partial_interval_s)
        return partials

    def _send_partial(self, language: str, language_code: str, stable: Partial,
                      translation: routes.Translated) -> None:
        utt = self._utterances.get(stable.utterance_index)
        if utt is None or not translation.text.strip():  # lost meanwhile, or nothing to show
            return
        listeners = [m for m in self.session.listeners(self.speaker) if m.language == language]
        self._send_to_language(partial(
            pb.Translation, utterance_id=utt.utterance_id, source_text=stable.text,
            text=translation.text, source_language_code=self.speaker.language_code,
            is_final=False, stability=stable.stability, path=translation.path,
            engine=translation.engine, confidence=translation.confidence,
            speaker_participant_id=self.speaker.participant_id,
            speaker_display_name=self.speaker.display_name), language_code, listeners)

    def _commit_pieces(self, utt: Utterance, words: list[str], language: str) -> None:
        """Commits the stable words that make pieces now (simultaneous mode), each spoken
        at once to the listeners who hear audio; none hear any: utterance mode."""
        state = utt.pieced
        committed = state.committed if state is not None else 0
        max_words = self.piece_max_words_behind if self._behind(utt) else self.piece_max_words
        while (end := pieces.next_piece(
                words, committed, self.piece_min_words, max_words)) > committed:
            if state is None:
                state = utt.pieced = self._start_pieces(utt)
                if state is None:
                    return
            self._add_piece(state, pieces.join(words[committed:end], language))
            committed = state.committed = end

    def _behind(self, utt: Utterance) -> bool:
        """Whether every listener who hears the utterance's pieces (or would, before the
        first) is at least `piece_behind_s` behind: its next piece may grow."""
        if self.piece_behind_s <= 0:
            return False
        if utt.pieced is not None:
            hearing = [m for m in self.session.listeners(self.speaker)
                       if m.participant_id in utt.pieced.listeners]
        else:
            hearing = [m for m, _, _ in self._hearing_audio({})]
        return bool(hearing) and min(
            m.outbox.backlog.seconds if m.outbox is not None else 0.0 for m in hearing
        ) >= self.piece_behind_s

    def _hearing_audio(
        self, targets: dict[str, _Target]
    ) -> list[tuple[Member, _Target, tuple[str, int]]]:
        """The speaker's listeners who hear audio, each with their target (made in `targets`)
        and voice key."""
        out = []
        for listener in self.session.listeners(self.speaker):
            target = self._target(targets, listener)
            key = self._voice(target, listener)
            if key is not None:
                out.append((listener, target, key))
        return out

    def _start_pieces(self, utt: Utterance) -> _Pieced | None:
        """Puts the utterance in the outbox of each listener who hears audio, as the pieces to
        come; listeners who hear none get it at the final, as in utterance mode."""
        targets: dict[str, _Target] = {}
        deliveries: list[tuple[Member, Pieces]] = []
        for listener, target, key in self._hearing_audio(targets):
            target.listeners.append(listener)
            speech = target.speeches.setdefault(key, Pieces(key[1]))
            assert isinstance(speech, Pieces)
            deliveries.append((listener, speech))
        if not deliveries:
            return None
        prepared = _Prepared(utt, [utt], "", [t for t in targets.values() if t.speeches],
                             pending=len(deliveries), final_planned=False)
        state = _Pieced(prepared, listeners={m.participant_id for m, _ in deliveries})
        for listener, speech in deliveries:
            self._put(prepared, listener, speech)
        return state

    def _add_piece(self, state: _Pieced, source_text: str) -> None:
        for target in state.prepared.targets:
            speeches = {key: Speech(source_text) for key in target.speeches}
            for key, speech in speeches.items():
                whole = target.speeches[key]
                assert isinstance(whole, Pieces)
                whole.add(speech)
            task = asyncio.create_task(
                self._speak_piece(state.prepared.utt, target, source_text, speeches), name="piece")
            self._piece_tasks.add(task)
            task.add_done_callback(self._piece_tasks.discard)

    async def _speak_piece(self, utt: Utterance, target: _Target, source_text: str,
                           speeches: dict[tuple[str, int], Speech]) -> None:
        """Translates one piece alone and synthesises it per voice."""
        try:
            spoken = source_text
            if target.translate:
                translation = await self._translate(utt, target, source_text)
                if isinstance(translation, DragomanError):
                    return
                spoken = translation.text
            for speech in speeches.values():
                speech.text, speech.translated = spoken, time.monotonic()
            if spoken.strip():
                await self._synthesize_all(target, speeches, utt)
        finally:
            for speech in speeches.values():
                speech.end()

    def _plan_pieced(self, state: _Pieced) -> _Prepared:
        """The final of an utterance in pieces: the listeners who do not have it yet get it
        (those who hear no audio, or came since: they hear the pieces of their voice, if any)."""
        prepared = state.prepared
        prepared.text, prepared.final_planned = prepared.utt.text, True
        targets = {t.language: t for t in prepared.targets}
        for listener in self.session.listeners(self.speaker):
            if listener.participant_id in state.listeners:
                continue
            target = self._target(targets, listener)
            target.listeners.append(listener)
            key = self._voice(target, listener)
            speech = target.speeches.get(key) if key is not None else None
            prepared.pending += 1
            self._put(prepared, listener, speech)
        prepared.targets = list(targets.values())
        if prepared.pending == 0:
            self._finished(prepared)
        return prepared

    async def _finish_pieces(self, prepared: _Prepared, target: _Target) -> None:
        """One language's final caption (the whole final transcript) and last piece: the final's
        words after those committed, translated alone; nothing new: one empty chunk."""
        utt = prepared.utt
        assert utt.pieced is not None
        language = ENGLISH if self._speech_translates else utt.language_code
        rest = pieces.join(pieces.split(prepared.text, language)[utt.pieced.committed:], language)
        last = {key: Speech(rest) for key in target.speeches}
        for key, speech in last.items():
            whole = target.speeches[key]
            assert isinstance(whole, Pieces)
            whole.add(speech, last=True)

        async def caption() -> None:
            translation = await self._translate(utt, target, prepared.text)
            if not isinstance(translation, DragomanError):
                self._send_translation(prepared, target, translation)

        async def speak() -> None:
            spoken = rest
            if rest and target.translate:
                translation = await self._translate(utt, target, rest)
                if isinstance(translation, DragomanError):
                    for speech in last.values():
                        speech.end(translation)
                    return
                spoken = translation.text
            translated = time.monotonic()
            for key, speech in last.items():
                speech.text, speech.translated = spoken, translated
                whole = target.speeches[key]
                assert isinstance(whole, Pieces)
                whole.translated = translated
                whole.text = pieces.join(
                    [p.text for p in whole.pieces if p.text.strip()], target.language_code)
            if spoken.strip():  # else the Pieces close with an empty last chunk
                await self._synthesize_all(target, last, utt)

        try:
            await asyncio.gather(caption() if target.translate else asyncio.sleep(0), speak())
        finally:
            for speech in last.values():
                speech.end()

    def _heard(self, prepared: _Prepared, listener: Member, speech: Speech | Pieces | None,
               heard: Heard) -> None:
        """A listener's outbox is done with the utterance: tells them, records it."""
        if prepared.lost:  # its final never came (`_abandon`)
            if listener.present:
                listener.log.append(processing_ended=pb.ProcessingEnded(
                    speaker=pb.SPEAKER_PARTNER, utterance_id=prepared.utt.utterance_id,
                    latency=None, **self._ids()))
            return
        translated = speech.translated if speech is not None else None
        latencies = [u.latency(translated, heard.first_audio, heard.delivered)
                     for u in prepared.group]
        if listener.present:
            for held, latency in zip(prepared.group, latencies, strict=True):
                listener.log.append(processing_ended=pb.ProcessingEnded(
                    speaker=pb.SPEAKER_PARTNER, utterance_id=held.utterance_id, latency=latency,
                    **self._ids()))
        if heard.first_audio is not None:
            prepared.latencies = latencies
            if speech is not None and not heard.failed and latencies[-1] is not None:
                self.session.record_utterance(
                    self.speaker, listener, prepared.utt.utterance_id, prepared.text, speech.text,
                    latencies[-1], _spoken(prepared.group), speech,
                    (b"".join(u.voice for u in prepared.group), self.tape.rate_hz))
        prepared.pending -= 1
        if prepared.pending == 0 and prepared.final_planned:
            self._finished(prepared)

    def _finished(self, prepared: _Prepared) -> None:
        """Every listener is done with the utterance: the speaker learns the last one's latency."""
        if prepared.done.done():
            return
        latencies = prepared.latencies or [None] * len(prepared.group)
        for held, latency in zip(prepared.group, latencies, strict=True):
            self.speaker.log.append(processing_ended=pb.ProcessingEnded(
                speaker=pb.SPEAKER_SELF, utterance_id=held.utterance_id, latency=latency,
                **self._ids()))
        prepared.done.set_result(None)

    async def _prepare(self, prepared: _Prepared) -> None:
        """Translates the utterance once per language and synthesises it once per voice."""
        try:
            await asyncio.gather(*(self._prepare_for(prepared, t) for t in prepared.targets))
        finally:
            for target in prepared.targets:
                for speech in target.speeches.values():
                    speech.end()

    async def _prepare_for(self, prepared: _Prepared, target: _Target) -> None:
        """One language's translation (it goes out at once) and speech; a failure here
        leaves the other languages alone."""
        utt = prepared.utt
        if utt.pieced is not None:
            await self._finish_pieces(prepared, target)
            return
        if not target.translate:
            spoken = prepared.text
        else:
            translation = await self._translate(utt, target, prepared.text)
            if isinstance(translation, DragomanError):
                return
            spoken = translation.text
            self._send_translation(prepared, target, translation)
        translated = time.monotonic()
        for speech in target.speeches.values():
            speech.text, speech.translated = spoken, translated
        if not spoken.strip():
            return
        await self._synthesize_all(target, {
            key: speech for key, speech in target.speeches.items() if isinstance(speech, Speech)}, utt)

    async def _translate(self, utt: Utterance, target: _Target,
                         text: str) -> routes.Translated | DragomanError:
        """`text` in the target's language; a failure is told to the speaker and returned."""
        try:
            return await routes.translate(
                self.down, target.route, self.speaker.language_code, target.language_code, text,
                self.lexicon)
        except DragomanError as e:
            self._failed("translation", pb.ERROR_CODE_TRANSLATION_FAILED, utt, e)
            return e

    def _send_translation(self, prepared: _Prepared, target: _Target,
                          translation: routes.Translated) -> None:
        utt = prepared.utt
        covers = [u.utterance_id for u in prepared.group] if len(prepared.group) > 1 else []
        self._send_to_language(partial(
            pb.Translation, utterance_id=utt.utterance_id, source_text=prepared.text,
            text=translation.text, source_language_code=self.speaker.language_code,
            is_final=True, stability=1.0, path=translation.path, engine=translation.engine,
            confidence=translation.confidence, covers_utterance_ids=covers,
            speaker_participant_id=self.speaker.participant_id,
            speaker_display_name=self.speaker.display_name), target.language_code,
            target.listeners)
        log.info("translated %s", utt.utterance_id, extra={
            "engine": translation.engine, "text": logs.redact(translation.text)})

    def _send_to_language(self, make: Callable[..., pb.Translation], language_code: str,
                          listeners: list[Member]) -> None:
        """A translation into one language, to the speaker and to `listeners` (of it)."""
        self.speaker.log.append(translation=make(
            speaker=pb.SPEAKER_SELF, target_language_code=language_code))
        for listener in listeners:
            if listener.present:
                listener.log.append(translation=make(
                    speaker=pb.SPEAKER_PARTNER, target_language_code=listener.language_code))

    async def _synthesize_all(self, target: _Target, speeches: dict[tuple[str, int], Speech],
                              utt: Utterance) -> None:
        """Each (voice, output rate)'s synthesis of its speech's text, at once."""
        await asyncio.gather(*(self._synthesize(target, voice, rate_hz, speech, utt)
                               for (voice, rate_hz), speech in speeches.items()))

    def _speed(self, target: _Target) -> float:
        """Catch-up: faster speech while a listener of the language is behind (session_svc.catchup)."""
        if self.catchup is None:
            return 1.0
        return self.catchup.for_listeners(
            m.outbox.backlog for m in target.listeners if m.outbox is not None)

    async def _synthesize(self, target: _Target, voice: str, rate_hz: int, speech: Speech,
                          utt: Utterance) -> None:
        speed = self._speed(target)
        if speed != 1.0:
            log.info("catching up %s", utt.utterance_id, extra={"speed": speed})
        try:
            async for chunk in self.down.synthesize(
                    speech.text, target.language_code, voice, rate_hz, speed):
                speech.add(chunk)
        except DragomanError as e:
            self._failed("synthesis", pb.ERROR_CODE_SYNTHESIS_FAILED, utt, e)
            speech.end(e)
        else:
            speech.end()

    def _failed(self, stage: str, code: pb.ErrorCode.ValueType, utt: Utterance,
                e: DragomanError) -> None:
        """Tells the speaker (with `code`, or SERVICE_UNAVAILABLE when the service was down);
        the utterance goes on in the other languages and voices."""
        metrics.PIPELINE_ERRORS.labels(stage).inc()
        self.session.record_error(self.speaker)
        self.speaker.log.append(error=pb.ConversationError(
            code=error_code(e, code), message=e.message, utterance_id=utt.utterance_id))
        log.info("utterance %s failed in %s: %s", utt.utterance_id, stage, e.message)
