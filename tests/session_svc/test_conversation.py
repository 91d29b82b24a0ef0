"""Pairing, event fan-out, resumption and stream rules, over real gRPC (fake engines)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from dragoman import config, mux
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from session_svc.records import STAGES
from tests.session_svc.conftest import Caller, kinds, utterance
from tests.session_svc.stack import Stack, session_stack

_n = 0


async def pair(address: str, a_lang: str = "en", b_lang: str = "pt",
               trunk: bool = False) -> tuple[Caller, Caller, str]:
    global _n
    _n += 1
    a, b = Caller(address, f"alice{_n}", trunk), Caller(address, f"bruno{_n}", trunk)
    session = await a.create(a_lang)
    assert len(session.code) == 6 and session.code.isdigit()
    assert session.status == sessions_pb2.SESSION_STATUS_WAITING
    joined = await b.join(session.code, b_lang)
    # the code stays valid for up to 8 participants (issue 19), so it is still shown
    assert joined.status == sessions_pb2.SESSION_STATUS_ACTIVE and joined.code == session.code
    assert [p.user_id for p in joined.participants] == [f"alice{_n}", f"bruno{_n}"]
    return a, b, session.session_id


@pytest.mark.parametrize(("trunk", "linger_ms"), [(True, 5.0), (True, 0.0), (False, 5.0)],
                         ids=["trunks", "trunks-without-linger", "streams"])
async def test_a_conversation_over_trunks_or_streams(
        settings: config.Settings, fleurs: Path, trunk: bool, linger_ms: float) -> None:
    """Converse calls to session_svc and its recognition streams to stt_svc on
    trunks (the default, DRAGOMAN_TRUNK; audio lingering DRAGOMAN_TRUNK_LINGER_MS
    for company or not at all) or each on a gRPC stream of its own."""
    frames = REGISTRY.get_sample_value("dragoman_trunk_frames_total", {"direction": "sent"}) or 0
    async with session_stack(dataclasses.replace(
            settings, trunk=trunk, trunk_linger_ms=linger_ms)) as stack:
        a, b, sid = await pair(stack.session, trunk=trunk)
        a_call, b_call = a.converse(sid), b.converse(sid)
        assert isinstance(a_call, mux.TrunkCall) is trunk
        await a.say(utterance(fleurs))
        b_kinds = kinds(await b.collect(b_call, "processing_ended"))
        assert "translation" in b_kinds and "speech_audio" in b_kinds
        await a.close()
        await b.close()
    carried = (REGISTRY.get_sample_value(
        "dragoman_trunk_frames_total", {"direction": "sent"}) or 0) - frames
    assert (carried > 100) is trunk  # the chunks went as frames, or not at all


async def test_speech_fans_out_to_both_in_order(plumbing: Stack, fleurs: Path) -> None:
    a, b, sid = await pair(plumbing.session)
    a_call, b_call = a.converse(sid), b.converse(sid)
    await a.say(utterance(fleurs))
    b_events, a_events = await asyncio.gather(
        b.collect(b_call, "processing_ended"), a.collect(a_call, "processing_ended"))

    b_kinds = kinds(b_events)
    assert b_kinds[0] == "session_paired" and "partner_connected" in b_kinds
    assert b_events[0].session_paired.partner_language_code == "en"
    work = [k for k in b_kinds if k not in ("session_paired", "partner_connected", "roster_changed")]
    assert work[0] == "processing_started" and work[-1] == "processing_ended"
    i_tr = work.index("translation")
    assert work[i_tr - 1] == "transcription" and "speech_audio" in work[i_tr:]
    seqs = [e.sequence for e in b_events if e.WhichOneof("kind") != "heartbeat"]
    assert seqs == list(range(1, len(seqs) + 1))

    final = [e.transcription for e in b_events if e.WhichOneof("kind") == "transcription"][-1]
    assert final.is_final and final.speaker == pb.SPEAKER_PARTNER and final.text.startswith("alpha")
    # the final translation: under load translated partials (is_final false) may come first
    tr = next(e.translation for e in b_events
              if e.WhichOneof("kind") == "translation" and e.translation.is_final)
    assert tr.text == f"{final.text} [fake:en>pt]"
    ended = next(e.processing_ended for e in b_events if e.WhichOneof("kind") == "processing_ended")
    assert ended.latency.total.ToNanoseconds() > 0

    assert "speech_audio" not in kinds(a_events)  # the speaker does not hear themself
    own = [e.transcription for e in a_events if e.WhichOneof("kind") == "transcription"]
    assert own[-1].speaker == pb.SPEAKER_SELF and own[-1].is_final
    for c in (a, b):
        await c.close()


async def test_reconnect_resumes_without_gaps_or_duplicates(plumbing: Stack, fleurs: Path) -> None:
    a, b, sid = await pair(plumbing.session)
    a_call = a.converse(sid)
    b_call = b.converse(sid)
    await b.collect(b_call, "partner_connected")
    b_call.cancel()  # Bruno's network drops
    last_seen = b.events[-1].sequence
    await a.say(utterance(fleurs))
    await a.collect(a_call, "processing_ended")
    b.events = []
    resumed = b.converse(sid, resume_after=last_seen)
    events = await b.collect(resumed, "processing_ended")
    seqs = [e.sequence for e in events if e.WhichOneof("kind") != "heartbeat"]
    assert seqs[0] == last_seen + 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert "speech_audio" in kinds(events) and "translation" in kinds(events)
    for c in (a, b):
        await c.close()


async def test_what_was_said_reaches_the_listener_when_the_speakers_stream_drops(
        plumbing: Stack, fleurs: Path) -> None:
    """The speaker's stream breaks (their gateway died) once their utterance started:
    it is still translated and spoken to the listener, not cancelled unheard."""
    a, b, sid = await pair(plumbing.session)
    a_call, b_call = a.converse(sid), b.converse(sid)
    await b.collect(b_call, "partner_connected")
    await a.say(utterance(fleurs))
    await a.collect(a_call, "processing_started")
    a_call.cancel()  # type: ignore[attr-defined]
    events = await b.collect(b_call, "processing_ended")
    assert "speech_audio" in kinds(events) and "translation" in kinds(events)
    for c in (a, b):
        await c.close()


async def test_a_second_stream_replaces_the_first(plumbing: Stack) -> None:
    a, _b, sid = await pair(plumbing.session)
    first = a.converse(sid)
    await a.collect(first, "session_paired")
    second = Caller(plumbing.session, a.user_id)
    second_call = second.converse(sid)
    await second.collect(second_call, "session_paired")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in first:  # type: ignore[attr-defined]
            pass
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert "replaced by a newer stream" in info.value.details()
    await second.close()
    await a.close()


async def test_listen_and_send_audio_for_web_clients(plumbing: Stack, fleurs: Path) -> None:
    a, b, sid = await pair(plumbing.session)
    request = pb.SendAudioRequest(session_id=sid, audio=pb.AudioChunk(data=b"\0\0" * 1600, sequence=1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.conversation.SendAudio(request, metadata=a.metadata)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "call Listen first" in info.value.details()

    listen = a.conversation.Listen(pb.ListenRequest(join=pb.JoinConversation(
        session_id=sid, encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)), metadata=a.metadata)
    b_call = b.converse(sid)
    await a.collect(listen, "session_paired")
    pcm = utterance(fleurs)
    for i, start in enumerate(range(0, len(pcm), 3200), 1):
        chunk = pb.AudioChunk(data=pcm[start:start + 3200], sequence=i)
        reply = await a.conversation.SendAudio(
            pb.SendAudioRequest(session_id=sid, audio=chunk), metadata=a.metadata)
        assert reply.sequence == i
    events = await b.collect(b_call, "processing_ended")
    assert "speech_audio" in kinds(events)
    listen.cancel()
    for c in (a, b):
        await c.close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_end_session_gives_metrics_and_tells_both(plumbing: Stack, fleurs: Path) -> None:
    live, stages = _sample("dragoman_sessions_active"), {
        stage: _sample("dragoman_utterance_stage_seconds_count", stage=stage) for stage in STAGES}
    ended = _sample("dragoman_session_duration_seconds_count")
    a, b, sid = await pair(plumbing.session)
    assert _sample("dragoman_sessions_active") == live + 1
    streams = _sample("dragoman_conversation_streams_active")
    a_call, b_call = a.converse(sid), b.converse(sid)
    await a.say(utterance(fleurs))
    await b.collect(b_call, "processing_ended")
    assert _sample("dragoman_conversation_streams_active") == streams + 2
    reply = await a.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id=sid), metadata=a.metadata)
    assert reply.session.status == sessions_pb2.SESSION_STATUS_ENDED
    assert reply.metrics.utterance_count == 1 and reply.metrics.mean_latency_ms > 0
    assert reply.metrics.duration_seconds > 0
    # the Prometheus side of the same: one utterance in every stage, one session fewer
    assert _sample("dragoman_sessions_active") == live
    assert _sample("dragoman_session_duration_seconds_count") == ended + 1
    for stage in STAGES:
        assert _sample("dragoman_utterance_stage_seconds_count", stage=stage) == stages[stage] + 1
    events = await b.collect(b_call, "session_ended")
    assert events[-1].session_ended.reason == "ended by participant"
    await a.collect(a_call, "session_ended")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in b.converse(sid):  # type: ignore[attr-defined]
            pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for c in (a, b):
        await c.close()


async def test_translation_failure_is_reported_and_the_stream_goes_on(
    plumbing: Stack, fleurs: Path
) -> None:
    a, b, sid = await pair(plumbing.session)
    a_call, b_call = a.converse(sid), b.converse(sid)
    failed = _sample("dragoman_pipeline_errors_total", stage="translation")
    plumbing.mt.fail_with = RuntimeError("engine exploded")
    try:
        await a.say(utterance(fleurs))
        events = await a.collect(a_call, "processing_ended")
    finally:
        plumbing.mt.fail_with = None
    assert _sample("dragoman_pipeline_errors_total", stage="translation") == failed + 1
    errors = [e.error for e in events if e.WhichOneof("kind") == "error"]
    assert errors and errors[0].code == pb.ERROR_CODE_TRANSLATION_FAILED
    assert "internal error" in errors[0].message
    # the next utterance goes through
    await a.say(utterance(fleurs), first_sequence=10_000)
    b_events = await b.collect(b_call, "processing_ended", count=2)
    assert "speech_audio" in kinds(b_events)
    for c in (a, b):
        await c.close()


async def test_identity_rules(plumbing: Stack) -> None:
    a, _b, sid = await pair(plumbing.session)
    stranger = Caller(plumbing.session, "mallory")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=sid), metadata=stranger.metadata)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=sid))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.join("12ab56", "en")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    own = await a.create("en")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.join(own.code, "en")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    got = await a.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=sid), metadata=a.metadata)
    assert got.session.session_id == sid
    for c in (a, stranger):
        await c.close()



async def test_the_mt_engines_confidence_reaches_the_listener(plumbing: Stack, fleurs: Path) -> None:
    def finals(events: list[pb.ConversationEvent]) -> list[float]:
        return [e.translation.confidence for e in events
                if e.WhichOneof("kind") == "translation" and e.translation.is_final]

    a, b, sid = await pair(plumbing.session)
    a.converse(sid)
    b_call = b.converse(sid)
    plumbing.mt.confidence = 0.42
    try:
        await a.say(utterance(fleurs))
        first = list(await b.collect(b_call, "processing_ended"))
    finally:
        plumbing.mt.confidence = None
    assert finals(first) and finals(first) == pytest.approx([0.42] * len(finals(first)))
    # an engine with no score (Bergamot's kind): 0, not given
    await a.say(utterance(fleurs), first_sequence=10_000)
    second = (await b.collect(b_call, "processing_ended"))[len(first):]
    assert finals(second) and set(finals(second)) == {0.0}
    for c in (a, b):
        await c.close()
