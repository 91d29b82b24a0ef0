"""End to end: real speech in one side, translated speech out the other.

Everything is real: gateway, session, STT (Whisper), MT (Bergamot), TTS
(Kokoro) over gRPC on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from dragoman import audio, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.v1 import conversation_pb2 as pb
from tests.helpers import wer
from tests.mesh import MeshAddresses, one_way

WER_BOUND = 0.35
STAGE_EVENTS = ("transcription", "translation", "speech_audio", "processing_ended")


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
    reference = (fleurs / "fleurs-en-001.txt").read_text()
    talk = await one_way(mesh, fleurs / "fleurs-en-001.ogg", "en", "pt-BR")
    alice_events, bruno_events, session_id = talk.speaker_events, talk.listener_events, talk.session_id
    spoken = [e for e in alice_events if e.WhichOneof("kind") == "processing_started"]
    assert spoken and all(e.processing_started.speaker == pb.SPEAKER_SELF for e in spoken)
    of = talk.heard

    sequences = [e.sequence for e in bruno_events if e.WhichOneof("kind") != "heartbeat"]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap or duplicate"
    assert all(e.session_id == session_id and e.time.seconds > 0 for e in bruno_events)

    finals = [t for t in of("transcription") if t.is_final]
    assert all(t.speaker == pb.SPEAKER_PARTNER for t in finals)
    heard_text = " ".join(t.text for t in finals)
    assert wer(reference, heard_text) <= WER_BOUND, heard_text

    translations = [t for t in of("translation") if t.is_final]  # partials caption meanwhile
    assert len(translations) == len(finals) and all(t.stability == 1.0 for t in translations)
    for tr in translations:
        assert tr.source_language_code == "en" and tr.target_language_code == "pt-BR"
        assert tr.text and tr.text != tr.source_text

    # per utterance: final transcript, then translation, then audio, then the end
    for utt in {t.utterance_id for t in finals}:
        order = [e.WhichOneof("kind") for e in bruno_events
                 if utt in (getattr(getattr(e, e.WhichOneof("kind")), "utterance_id", None),)
                 and e.WhichOneof("kind") in STAGE_EVENTS
                 and not (e.WhichOneof("kind") == "translation" and not e.translation.is_final)]
        last_final = max(i for i, k in enumerate(order) if k == "transcription")
        assert order.index("translation") == last_final + 1, order
        assert order.index("speech_audio") > order.index("translation"), order
        assert order[-1] == "processing_ended", order

    chunks = of("speech_audio")
    for utt in {c.utterance_id for c in chunks}:
        mine = [c for c in chunks if c.utterance_id == utt]
        assert [c.chunk_index for c in mine] == list(range(len(mine))) and mine[-1].is_last
    assert {c.sample_rate_hertz for c in chunks} == {24000}
    heard = b"".join(c.data for c in chunks)
    back = await _transcribe(mesh.stt, heard, 24000, "pt")
    said = " ".join(t.text for t in translations)
    assert wer(said, back) <= WER_BOUND, (said, back)

    for ended in of("processing_ended"):
        total = ended.latency.total.ToMilliseconds()
        parts = sum(getattr(ended.latency, s).ToMilliseconds() for s in (
            "endpointing", "recognition", "translation", "synthesis_first_chunk", "delivery"))
        assert total > 0 and abs(total - parts) <= 5

    own = [e.transcription for e in alice_events if e.WhichOneof("kind") == "transcription"]
    assert own and all(t.speaker == pb.SPEAKER_SELF for t in own)
    assert not any(e.WhichOneof("kind") == "speech_audio" for e in alice_events)
    await talk.speaker.end_session(session_id)
