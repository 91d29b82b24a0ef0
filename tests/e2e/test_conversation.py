"""End to end: real speech in one side, translated speech out the other.

Everything is real: gateway, session, STT (Whisper), MT (Bergamot), TTS
(Kokoro) over gRPC on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from dragoman import audio, rpc
from dragoman.client import join_request, speak
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.v1 import conversation_pb2 as pb
from tests.e2e.conftest import MeshAddresses, new_client
from tests.helpers import wer

WER_BOUND = 0.35


async def _queue_stream(queue: asyncio.Queue[pb.ConverseRequest | None]) -> AsyncIterator[pb.ConverseRequest]:
    while (item := await queue.get()) is not None:
        yield item


async def _transcribe(address: str, pcm16: bytes, rate_hz: int, language: str) -> str:
    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
            language_code=language, encoding=stt_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=rate_hz))
        for chunk in audio.chunks(pcm16, rate_hz, 100):
            yield stt_pb2.StreamingRecognizeRequest(audio=chunk)
        silence = audio.float_to_pcm16(np.zeros(rate_hz, np.float32))
        yield stt_pb2.StreamingRecognizeRequest(audio=silence)

    finals = []
    async with rpc.channel(address) as ch:
        async for r in stt_pb2_grpc.SpeechToTextServiceStub(ch).StreamingRecognize(requests()):
            if r.HasField("result") and r.result.is_final:
                finals.append(r.result.transcript)
    return " ".join(finals)


async def test_english_speech_reaches_partner_as_portuguese_speech(mesh: MeshAddresses, fleurs: Path) -> None:
    clip = fleurs / "fleurs-en-001.ogg"
    reference = (fleurs / "fleurs-en-001.txt").read_text()
    alice = await new_client(mesh.gateway, "en")
    bruno = await new_client(mesh.gateway, "pt")
    session = await alice.create_session("en")
    await bruno.join_session(session.code, "pt-BR")

    queues: dict[str, asyncio.Queue[pb.ConverseRequest | None]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
    for q in queues.values():
        await q.put(join_request(session.session_id, 16000, output_rate_hz=24000))
    alice_call = alice.converse(_queue_stream(queues["a"]))
    bruno_call = bruno.converse(_queue_stream(queues["b"]))

    samples = audio.decode_file(clip, 16000)
    pcm = audio.float_to_pcm16(np.concatenate([samples, np.zeros(24000, np.float32)]))
    async for request in speak(pcm, 16000, realtime=False):
        await queues["a"].put(request)

    bruno_events: list[pb.ConversationEvent] = []
    alice_events: list[pb.ConversationEvent] = []

    async def collect(call, sink: list[pb.ConversationEvent]) -> None:  # type: ignore[no-untyped-def]
        async for response in call:
            sink.append(response.event)
            if response.event.WhichOneof("kind") == "processing_ended":
                return

    await asyncio.wait_for(asyncio.gather(collect(bruno_call, bruno_events),
                                          collect(alice_call, alice_events)), timeout=120)
    for q in queues.values():
        await q.put(pb.ConverseRequest(leave=pb.LeaveConversation()))
        await q.put(None)

    kinds = [e.WhichOneof("kind") for e in bruno_events]
    sequences = [e.sequence for e in bruno_events if e.WhichOneof("kind") != "heartbeat"]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap or duplicate"
    assert all(e.session_id == session.session_id and e.time.seconds > 0 for e in bruno_events)

    final = next(e.transcription for e in bruno_events
                 if e.WhichOneof("kind") == "transcription" and e.transcription.is_final)
    assert final.speaker == pb.SPEAKER_PARTNER
    assert wer(reference, final.text) <= WER_BOUND, final.text

    translation = next(e.translation for e in bruno_events if e.WhichOneof("kind") == "translation")
    assert translation.source_language_code == "en" and translation.target_language_code == "pt-BR"
    assert translation.text and translation.text != translation.source_text

    i_final = kinds.index("transcription", max(i for i, k in enumerate(kinds) if k == "processing_started"))
    i_translation = kinds.index("translation")
    i_audio, i_end = kinds.index("speech_audio"), kinds.index("processing_ended")
    assert i_final < i_translation < i_audio < i_end, kinds

    chunks = [e.speech_audio for e in bruno_events if e.WhichOneof("kind") == "speech_audio"]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks))) and chunks[-1].is_last
    assert {c.sample_rate_hertz for c in chunks} == {24000}
    heard = b"".join(c.data for c in chunks)
    back = await _transcribe(mesh.stt, heard, 24000, "pt")
    assert wer(translation.text, back) <= WER_BOUND, (translation.text, back)

    ended = next(e.processing_ended for e in bruno_events if e.WhichOneof("kind") == "processing_ended")
    total = ended.latency.total.ToMilliseconds()
    parts = sum(getattr(ended.latency, s).ToMilliseconds() for s in (
        "endpointing", "recognition", "translation", "synthesis_first_chunk", "delivery"))
    assert total > 0 and abs(total - parts) <= 5

    alice_final = [e.transcription for e in alice_events
                   if e.WhichOneof("kind") == "transcription" and e.transcription.is_final]
    assert alice_final and alice_final[0].speaker == pb.SPEAKER_SELF
    assert not any(e.WhichOneof("kind") == "speech_audio" for e in alice_events)
    await alice.end_session(session.session_id)
