"""Live conversation streams: Converse (bidi) and Listen + SendAudio (gRPC-Web)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from dragoman import audio, logs, metrics, ogg, rpc
from dragoman.config import SessionSettings
from dragoman.errors import (
    Aborted,
    DragomanError,
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
)
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import conversation_pb2_grpc as pb_grpc
from dragoman.v1 import sessions_pb2 as spb
from session_svc import outbox
from session_svc.catchup import CatchUp
from session_svc.downstream import Downstream
from session_svc.identity import Callers
from session_svc.pipeline import SpeakerPipeline
from session_svc.records import PARTICIPANT_KEYED
from session_svc.sessions import Member, Session, SessionRegistry

log = logging.getLogger(__name__)

_FINISHING: set[asyncio.Task[None]] = set()
"""Pipelines of dropped streams finishing what was said (see `Connection.release`)."""

MAX_CHUNK_BYTES = 64 * 1024


class AudioBudget:
    """How much audio one stream may send: `speed` seconds of it per second of wall
    time after a burst of `burst_s` (a GCRA over seconds of audio, not chunks)."""

    def __init__(self, speed: float, burst_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.speed, self.burst_s, self._clock = speed, burst_s, clock
        self._paid = clock()  # when the audio taken so far is within the speed

    def take(self, audio_s: float) -> None:
        now = self._clock()
        paid = max(self._paid, now) + audio_s / self.speed
        ahead_s = (paid - now) * self.speed  # audio sent beyond the speed
        if ahead_s > self.burst_s:
            retry_s = (ahead_s - self.burst_s) / self.speed
            raise ResourceExhausted(
                f"audio arrives faster than {self.speed:g}x real time (beyond a burst of "
                f"{self.burst_s:g} s of audio); send it as it is captured", retry_after_s=retry_s)
        self._paid = paid


class Connection:
    """One participant's live stream: their audio in, their events out."""

    def __init__(
        self, session: Session, member: Member, join: pb.JoinConversation,
        downstream: Downstream, settings: SessionSettings,
    ) -> None:
        self.session, self.member, self.join = session, member, join
        self.down, self.settings = downstream, settings
        self.stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pipeline: SpeakerPipeline | None = None
        self._retired: dict[SpeakerPipeline, asyncio.Task[None]] = {}
        """Pipelines replaced on pairing, finishing their utterances."""
        self._last_chunk = 0
        self._budget = AudioBudget(settings.max_audio_speed, settings.audio_burst_s)
        self._opus: ogg.OpusDuration | None = None

    def events(self) -> AsyncIterator[pb.ConversationEvent]:
        return self.member.log.follow(
            self.join.resume_after_sequence, self.stop, self.settings.heartbeat_interval_s
        )

    def on_sent(self, event: pb.ConversationEvent) -> None:
        """Tells this listener's outbox when an utterance's audio reached the stream."""
        if event.WhichOneof("kind") == "speech_audio":
            outbox.mark_delivered(
                self.member, event.speech_audio.utterance_id, event.speech_audio.chunk_index)

    def audio(self, chunk: pb.AudioChunk, retry: bool = False) -> None:
        """Takes one chunk. `retry`: a repeat of the last accepted sequence is a
        retried SendAudio, acknowledged and not fed again (AudioChunk.sequence)."""
        if self.session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition("the session has ended")
        if self.stop.done():
            raise FailedPrecondition("the conversation stream is closed")
        if chunk.sequence and chunk.sequence <= self._last_chunk:
            if retry and chunk.sequence == self._last_chunk:
                return
            raise InvalidArgument(
                f"audio chunk sequence {chunk.sequence} is not above the last one accepted on "
                f"this stream, {self._last_chunk}: number chunks 1, 2, 3, ... (0: unnumbered)")
        if len(chunk.data) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"audio chunk {chunk.sequence} has {len(chunk.data)} bytes; the limit is "
                f"{MAX_CHUNK_BYTES}")
        if self.join.encoding == pb.AUDIO_ENCODING_LINEAR16 and len(chunk.data) % 2:
            raise InvalidArgument(
                f"audio chunk {chunk.sequence} has an odd number of bytes ({len(chunk.data)}); "
                "LINEAR16 audio is whole 16-bit samples")
        if self._budget.speed:
            self._take_budget(chunk.data)
        self._last_chunk = chunk.sequence or self._last_chunk
        if not chunk.data:
            return
        if self.pipeline is not None and self._outdated(self.pipeline):
            old = self.pipeline
            self._retired[old] = asyncio.create_task(old.finish(self.settings.downstream_timeout_s))
            self._retired[old].add_done_callback(lambda _: self._retired.pop(old, None))
            self.pipeline = None
        if self.pipeline is None or self.pipeline.task.done():
            self.pipeline = SpeakerPipeline(
                self.session, self.member, self.down, self.join.encoding,
                self.join.sample_rate_hertz, self.settings.sentence_wait_ms / 1000,
                self.settings.sentence_max_hold_ms / 1000, self.settings.same_language_audio,
                mode=self.settings.mode,
                partial_interval_s=self.settings.partial_translation_interval_ms / 1000,
                piece_min_words=self.settings.piece_min_words,
                piece_max_words=self.settings.piece_max_words,
                piece_behind_s=self.settings.piece_behind_ms / 1000,
                piece_max_words_behind=self.settings.piece_max_words_behind,
                catchup=CatchUp(self.settings.catchup_backlog_ms / 1000,
                                self.settings.catchup_max_speed))
            self.pipeline.task.add_done_callback(self._pipeline_done)
        self.pipeline.feed(chunk.data)

    def _outdated(self, pipeline: SpeakerPipeline) -> bool:
        """Whether a listener now needs speech translation, or none does any more (e.g. the
        speaker started before anyone joined): the recognition stream's task is set at its start."""
        return pipeline.outdated()

    def _take_budget(self, data: bytes) -> None:
        if self.join.encoding == pb.AUDIO_ENCODING_LINEAR16:
            self._budget.take(len(data) / (2 * self.join.sample_rate_hertz))
            return
        if self._opus is None:
            self._opus = ogg.OpusDuration()
        try:
            self._budget.take(self._opus.feed(data))
        except ResourceExhausted as e:
            self.fail(e)  # its bytes are parsed: the Ogg stream cannot go on without them
            raise

    def _pipeline_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and isinstance(task.exception(), InvalidArgument):
            self.fail(task.exception())  # type: ignore[arg-type]

    async def leave(self) -> None:
        """No more audio: finish the utterance in progress, then end the stream."""
        if self.pipeline is not None:
            await self.pipeline.finish(self.settings.downstream_timeout_s)
        if not self.stop.done():
            self.stop.set_result(None)

    def close(self) -> None:
        """Ends the stream (OK) after the events already kept: the participant left."""
        if not self.stop.done():
            self.stop.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.stop.done():
            self.stop.set_exception(exc)
            self.stop.exception()  # mark retrieved: the stream re-raises it

    async def release(self) -> None:
        staying = self.session.status != spb.SESSION_STATUS_ENDED and self.member.present
        finishing = None
        if self.pipeline is not None and not self.pipeline.task.done():
            if staying:  # the stream dropped (a gateway died): what was said still reaches
                # the listeners, within downstream_timeout_s (bench/results/chaos.md)
                finishing = self.pipeline
            else:
                await self.pipeline.cancel()
        for retired in list(self._retired):
            if not staying:
                await retired.cancel()  # else already finishing, within the same bound
        tell = False
        if self.member.connection is self:
            self.member.connection = None
            self.session.attended_s = time.time()
            # who left or was removed: the others were told (RosterChanged)
            tell = staying
        if finishing is not None:
            task = asyncio.create_task(self._finish(finishing, tell))
            _FINISHING.add(task)
            task.add_done_callback(_FINISHING.discard)
        elif tell:
            self._disconnected()

    async def _finish(self, pipeline: SpeakerPipeline, tell: bool) -> None:
        """Finishes a dropped stream's pipeline, then tells the others it disconnected
        (after its last words, as when the stream dropped between utterances), unless it
        is back meanwhile."""
        await pipeline.finish(self.settings.downstream_timeout_s)
        if (tell and self.member.connection is None and self.member.present
                and self.session.status != spb.SESSION_STATUS_ENDED):
            self._disconnected()

    def _disconnected(self) -> None:
        for other in self.session.listeners(self.member):
            other.log.append(partner_disconnected=pb.PartnerDisconnected(
                partner_user_id=self.member.user_id, reason="left"))
        self.session.announce(pb.ROSTER_CHANGE_DISCONNECTED, self.member, tell_about=False)


def _check_join(join: pb.JoinConversation) -> None:
    if not join.session_id:
        raise InvalidArgument("join.session_id is required")
    if join.encoding == pb.AUDIO_ENCODING_UNSPECIFIED:
        raise InvalidArgument(
            "join.encoding is required: AUDIO_ENCODING_LINEAR16 or AUDIO_ENCODING_OGG_OPUS")
    if join.encoding == pb.AUDIO_ENCODING_LINEAR16:
        audio.check_rate(join.sample_rate_hertz, "join.sample_rate_hertz")
    rate = join.output_sample_rate_hertz
    if rate and rate not in audio.OUTPUT_RATES_HZ:
        raise InvalidArgument(
            f"join.output_sample_rate_hertz must be 0 or one of "
            f"{', '.join(map(str, audio.OUTPUT_RATES_HZ))}; got {rate}")


class _Leave(Exception):
    """The participant sent `leave`: no more requests are read."""


class ConversationServicer(pb_grpc.ConversationServiceServicer):
    def __init__(
        self, registry: SessionRegistry, downstream: Downstream, settings: SessionSettings,
        callers: Callers,
    ) -> None:
        self.registry, self.down, self.settings = registry, downstream, settings
        self.callers = callers

    def _connect(self, context: grpc.aio.ServicerContext, join: pb.JoinConversation) -> Connection:
        _check_join(join)
        session, member = self.registry.get(self.callers(context), join.session_id)
        if session.status == spb.SESSION_STATUS_ENDED:
            raise FailedPrecondition(f"session {session.session_id} has ended")
        if member.state == spb.PARTICIPANT_STATE_REMOVED:
            raise PermissionDenied(f"removed from session {session.session_id} by its creator")
        if not member.present:
            raise FailedPrecondition(
                f"you left session {session.session_id}: join it again with its code first")
        if join.resume_after_sequence > member.log.last_sequence:
            raise OutOfRange(
                f"join.resume_after_sequence {join.resume_after_sequence} is past the last event "
                f"of this stream, {member.log.last_sequence}")
        if session.privacy_mode == PARTICIPANT_KEYED:
            if not join.history_key:
                raise InvalidArgument(
                    "this session is participant-keyed: join.history_key (your 32-byte key) is "
                    "required; without the key your history here stays unreadable, and "
                    "nothing said is kept for you")
            member.check_history_key(join.history_key)
        elif join.history_key:
            raise InvalidArgument(
                "join.history_key is only for participant-keyed sessions; this one's "
                f"privacy mode is {session.privacy_mode}")
        logs.session_id.set(session.session_id)
        conn = Connection(session, member, join, self.down, self.settings)
        if member.connection is not None:
            member.connection.fail(Aborted("replaced by a newer stream of the same participant"))
        member.connection = conn
        member.output_rate_hz = join.output_sample_rate_hertz
        for other in session.listeners(member):
            other.log.append(partner_connected=pb.PartnerConnected(partner_user_id=member.user_id))
        session.announce(pb.ROSTER_CHANGE_CONNECTED, member, tell_about=False)
        return conn

    async def _stream(self, conn: Connection) -> AsyncIterator[pb.ConversationEvent]:
        metrics.STREAMS_ACTIVE.inc()
        try:
            async for event in conn.events():
                yield event
                conn.on_sent(event)
        finally:
            metrics.STREAMS_ACTIVE.dec()
            await conn.release()

    async def Converse(
        self, request_iterator: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ConverseResponse]:
        first = await rpc.first_request(request_iterator, self.settings.join_timeout_s)
        if first is None:
            return
        kind = first.WhichOneof("request")
        if kind != "join":
            raise FailedPrecondition(f"the first message must be `join`, got `{kind}`")
        conn = self._connect(context, first.join)
        reader = asyncio.create_task(self._read(request_iterator, conn))
        try:
            async for event in self._stream(conn):
                yield pb.ConverseResponse(event=event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, requests: AsyncIterator[pb.ConverseRequest], conn: Connection) -> None:
        def take(request: pb.ConverseRequest) -> None:
            kind = request.WhichOneof("request")
            if kind == "audio":
                conn.audio(request.audio)
            elif kind == "leave":
                raise _Leave
            elif kind == "join":
                raise InvalidArgument("`join` may only be the first message")

        try:
            # on a trunk, each chunk is taken as its frame arrives: no task switch
            with contextlib.suppress(_Leave):
                await rpc.each(requests, take)
            await conn.leave()
        except asyncio.CancelledError:
            raise
        except DragomanError as e:
            conn.fail(e)
        except grpc.aio.AioRpcError as e:  # the client went away mid-read
            log.info("client stream ended: %s", e.code().name)
            conn.fail(Aborted("client stream ended"))

    async def Listen(
        self, request: pb.ListenRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ListenResponse]:
        conn = self._connect(context, request.join)
        async for event in self._stream(conn):
            yield pb.ListenResponse(event=event)

    async def SendAudio(
        self, request: pb.SendAudioRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendAudioResponse:
        _, member = self.registry.get(self.callers(context), request.session_id)
        if member.connection is None:
            raise FailedPrecondition("not listening to this session: call Listen first")
        member.connection.audio(request.audio, retry=True)
        return pb.SendAudioResponse(sequence=request.audio.sequence)
