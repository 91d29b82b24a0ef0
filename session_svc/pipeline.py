"""The per-speaker pipeline: audio -> STT -> MT -> TTS -> partner.

One `SpeakerPipeline` runs while a participant streams audio. A recognition
stream to stt_svc runs for its whole life; partial and final transcripts go
to both participants as they come. Each final is translated at once and its
speech synthesised while the utterance before it may still be speaking:
up to LOOKAHEAD utterances are prepared behind the one being delivered,
their audio held until its turn, so the partner hears utterances in the
order they were spoken, and the next one's first audio is ready when the
previous one's last chunk goes out. Translations (captions) go out as soon
as they exist. Every stage's time is recorded per utterance
(`UtteranceLatency`); an utterance's `synthesis_first_chunk` includes any
wait for the one before it to finish. A final that does not end a sentence
may wait for the rest of it (session_svc.sentences): the group is then
translated as one text and delivered as its last utterance, and the
Translation lists the utterances it covers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from dataclasses import dataclass, field

from dragoman import logs, metrics, rpc
from dragoman.errors import DragomanError, InvalidArgument, ResourceExhausted
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2
from dragoman.v1 import conversation_pb2 as pb
from session_svc import routes, sentences
from session_svc.downstream import Downstream, error_code
from session_svc.sessions import Member, Session

log = logging.getLogger(__name__)

AUDIO_QUEUE_CHUNKS = 100  # 10 s of 100 ms chunks
MAX_STT_MESSAGE_BYTES = 48 * 1024  # under stt_svc's 64 KiB per message
DELIVERY_WAIT_S = 2.0
LOOKAHEAD = 1
"""Utterances translated and being synthesised behind the one being delivered."""


@dataclass
class Utterance:
    """One phrase of the speaker and the wall-clock time of each stage."""

    utterance_id: str
    speech_end_arrival: float | None = None
    end_of_speech: float | None = None
    final: float | None = None
    translated: float | None = None
    first_audio: float | None = None
    delivered: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    text: str = ""
    language_code: str = ""
    translation: str = ""

    def latency(self) -> pb.UtteranceLatency | None:
        if None in (self.end_of_speech, self.final, self.translated, self.first_audio):
            return None
        assert self.end_of_speech and self.final and self.translated and self.first_audio
        delivered = self.delivered.result() if self.delivered.done() else self.first_audio
        speech_end = self.speech_end_arrival or self.end_of_speech
        return pb.UtteranceLatency(
            endpointing=rpc.duration(self.end_of_speech - speech_end),
            recognition=rpc.duration(self.final - self.end_of_speech),
            translation=rpc.duration(self.translated - self.final),
            synthesis_first_chunk=rpc.duration(self.first_audio - self.translated),
            delivery=rpc.duration(delivered - self.first_audio),
            total=rpc.duration(delivered - speech_end),
        )


@dataclass
class _Prepared:
    """An utterance's translation and speech, made ahead of its turn to be delivered.

    `group`: the utterances of a sentence translated as one, in spoken order, ending
    with `utt` (which carries the translation and speech); [utt] when alone."""

    utt: Utterance
    group: list[Utterance]
    chunks: asyncio.Queue[tts_pb2.SynthesizeResponse | DragomanError | None] = field(
        default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


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
    """Recognises one speaker's audio and delivers translations to the partner."""

    def __init__(
        self, session: Session, speaker: Member, downstream: Downstream,
        encoding: int, rate_hz: int, sentence_wait_s: float = 0.0,
        sentence_max_hold_s: float = 0.0,
    ) -> None:
        self.session = session
        self.speaker = speaker
        self.down = downstream
        self.encoding = encoding
        self.clock = ArrivalClock(rate_hz)
        # The route is fixed when pairing; speech translation makes the finals English text.
        self.route = session.route_from(speaker)
        self._speech_translates = routes.speech_translates(self.route)
        # On a trunk (the default) each chunk goes straight on to stt_svc as it is fed.
        self._audio: rpc.Feed[stt_pb2.StreamingRecognizeRequest] = rpc.Feed(
            AUDIO_QUEUE_CHUNKS + 1, merge=_merge_audio)
        self._audio.put(stt_pb2.StreamingRecognizeRequest(
            config=stt_pb2.StreamingRecognitionConfig(
                language_code=speaker.language_code,
                encoding=encoding,  # type: ignore[arg-type]  # same numbering as dragoman.v1
                sample_rate_hertz=rate_hz,
                interim_results=True,
                task=(stt_pb2.RECOGNITION_TASK_TRANSLATE_TO_ENGLISH if self._speech_translates
                      else stt_pb2.RECOGNITION_TASK_TRANSCRIBE),
            )
        ))
        self._finals: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self._utterances: dict[int, Utterance] = {}
        self._sentences = sentences.Sentences(
            self._finals, sentence_wait_s, sentence_max_hold_s,
            speaking=lambda: bool(self._utterances))
        self._delivering: Utterance | None = None
        self._prefix = f"{session.members.index(speaker) + 1}"
        self.task = asyncio.create_task(self._run(), name=f"pipeline-{speaker.user_id}")

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

    def _both(self, **kinds: object) -> None:
        """Emits an event about the speaker to both: SELF to them, PARTNER to the other."""
        partner = self.session.partner(self.speaker)
        for member, who in ((self.speaker, pb.SPEAKER_SELF), (partner, pb.SPEAKER_PARTNER)):
            if member is None:
                continue
            for name, make in kinds.items():
                member.log.append(**{name: make(who)})  # type: ignore[operator]

    def _utterance(self, index: int) -> Utterance:
        utt = self._utterances.get(index)
        if utt is None:
            self.speaker.utterance_count += 1
            utt = Utterance(f"{self._prefix}-{self.speaker.utterance_count}")
            self._utterances[index] = utt
            self._both(processing_started=lambda who: pb.ProcessingStarted(
                speaker=who, utterance_id=utt.utterance_id))
        return utt

    async def _run(self) -> None:
        worker = asyncio.create_task(self._deliver_all(), name="deliver")
        try:
            async for response in self.down.recognize(self._audio):
                self._on_recognition(response)
        except DragomanError as e:
            if isinstance(e, InvalidArgument):
                raise
            self.session.errors += 1
            metrics.PIPELINE_ERRORS.labels("recognition").inc()
            # utterances heard in part are lost: named, and ended (the next audio starts anew)
            lost, code = [*self._utterances.values()], error_code(e, pb.ERROR_CODE_RECOGNITION_FAILED)
            self._utterances.clear()
            for utterance_id in [u.utterance_id for u in lost] or [""]:
                self.speaker.log.append(error=pb.ConversationError(
                    code=code, message=e.message, utterance_id=utterance_id))
            for utt in lost:
                self._both(processing_ended=lambda who, u=utt: pb.ProcessingEnded(
                    speaker=who, utterance_id=u.utterance_id))
        finally:
            self._finals.put_nowait(None)
            await worker

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
        self._both(transcription=lambda who: pb.Transcription(
            speaker=who, utterance_id=utt.utterance_id, text=text, is_final=result.is_final,
            stability=result.stability, language_code=result.language_code,
            translated_to_english=self._speech_translates,
        ))
        if result.is_final:
            utt.final = time.monotonic()
            utt.end_of_speech = utt.end_of_speech or utt.final
            utt.text, utt.language_code = text, result.language_code or self.speaker.language_code
            del self._utterances[result.utterance_index]
            self._finals.put_nowait(utt)

    async def _deliver_all(self) -> None:
        """Prepares finals as they come (LOOKAHEAD ahead) and delivers them in order."""
        ready: asyncio.Queue[_Prepared | None] = asyncio.Queue()
        slots = asyncio.Semaphore(1 + LOOKAHEAD)
        preparing: list[_Prepared] = []

        async def prepare_all() -> None:
            while (group := await self._sentences.next()) is not None:
                await slots.acquire()
                prepared = _Prepared(group[-1], group)
                prepared.task = asyncio.create_task(self._prepare(prepared), name="prepare")
                preparing.append(prepared)
                ready.put_nowait(prepared)
            ready.put_nowait(None)

        feeder = asyncio.create_task(prepare_all(), name="prepare-all")
        try:
            while (prepared := await ready.get()) is not None:
                utt = prepared.utt
                self._delivering = utt
                try:
                    await self._deliver(prepared)
                except DragomanError as e:
                    self.session.errors += 1
                    log.info("utterance %s failed: %s", utt.utterance_id, e.message)
                finally:
                    preparing.remove(prepared)
                    slots.release()
                for held in prepared.group:
                    self._both(processing_ended=lambda who, u=held: pb.ProcessingEnded(
                        speaker=who, utterance_id=u.utterance_id, latency=u.latency()))
        finally:
            feeder.cancel()
            for prepared in preparing:
                if prepared.task is not None:
                    prepared.task.cancel()
            await asyncio.gather(feeder, *(p.task for p in preparing if p.task), return_exceptions=True)

    async def _prepare(self, prepared: _Prepared) -> None:
        """Translates the utterance (the translation goes out at once) and synthesises it into
        `prepared.chunks`, ending with None, or with the error that stopped it."""
        utt = prepared.utt
        partner = self.session.partner(self.speaker)
        text = sentences.join([u.text for u in prepared.group], utt.language_code)
        try:
            if not text or partner is None:
                return
            try:
                translation = await routes.translate(
                    self.down, self.route, self.speaker.language_code, partner.language_code,
                    text)
            except DragomanError as e:
                metrics.PIPELINE_ERRORS.labels("translation").inc()
                self.speaker.log.append(error=pb.ConversationError(
                    code=error_code(e, pb.ERROR_CODE_TRANSLATION_FAILED), message=e.message,
                    utterance_id=utt.utterance_id))
                prepared.chunks.put_nowait(e)
                return
            utt.translated = time.monotonic()
            utt.translation = translation.text
            for held in prepared.group:
                held.translated = utt.translated
            covers = [u.utterance_id for u in prepared.group] if len(prepared.group) > 1 else []
            self._both(translation=lambda who: pb.Translation(
                speaker=who, utterance_id=utt.utterance_id, source_text=text,
                text=translation.text, source_language_code=self.speaker.language_code,
                target_language_code=partner.language_code, is_final=True,
                path=translation.path, engine=translation.engine,
                covers_utterance_ids=covers,
            ))
            log.info("translated %s", utt.utterance_id, extra={
                "engine": translation.engine, "text": logs.redact(translation.text)})
            if not translation.text.strip():
                return
            try:
                async for chunk in self.down.synthesize(
                    translation.text, partner.language_code, partner.voice, partner.output_rate_hz
                ):
                    prepared.chunks.put_nowait(chunk)
            except DragomanError as e:
                metrics.PIPELINE_ERRORS.labels("synthesis").inc()
                self.speaker.log.append(error=pb.ConversationError(
                    code=error_code(e, pb.ERROR_CODE_SYNTHESIS_FAILED), message=e.message,
                    utterance_id=utt.utterance_id))
                prepared.chunks.put_nowait(e)
        finally:
            prepared.chunks.put_nowait(None)

    async def _deliver(self, prepared: _Prepared) -> None:
        """Sends the utterance's audio to the partner as its chunks come; then records it."""
        utt = prepared.utt
        while (chunk := await prepared.chunks.get()) is not None:
            if isinstance(chunk, DragomanError):
                raise chunk
            partner = self.session.partner(self.speaker)
            if partner is None:
                continue
            if utt.first_audio is None:
                utt.first_audio = time.monotonic()
                for held in prepared.group:  # their speech is the last one's
                    held.first_audio = utt.first_audio
            partner.log.append(speech_audio=pb.SpeechAudio(
                utterance_id=utt.utterance_id, data=chunk.audio,
                sample_rate_hertz=chunk.sample_rate_hertz, chunk_index=chunk.chunk_index,
                is_last=chunk.is_last, text=chunk.text,
            ))
        partner = self.session.partner(self.speaker)
        if partner is None or utt.first_audio is None:
            return
        if partner.connection is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(utt.delivered), DELIVERY_WAIT_S)
        for held in prepared.group[:-1]:
            if utt.delivered.done() and not held.delivered.done():
                held.delivered.set_result(utt.delivered.result())
        latency = utt.latency()
        if latency is not None:
            text = sentences.join([u.text for u in prepared.group], utt.language_code)
            self.session.record_utterance(
                self.speaker, partner, utt.utterance_id, text, utt.translation, latency)

    def mark_delivered(self, utterance_id: str) -> None:
        """Called by the partner's stream when it hands the first audio chunk to gRPC."""
        utt = self._delivering
        if utt is not None and utt.utterance_id == utterance_id and not utt.delivered.done():
            utt.delivered.set_result(time.monotonic())
