"""A vocabulary in a real conversation: Whisper hears the names it holds, and Bergamot's
translation takes its fixed translation (the plumbing with fake engines:
tests/gateway/test_vocabularies.py)."""

from __future__ import annotations

import re
import wave
from pathlib import Path

from dragoman import rpc
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from dragoman.v1 import vocabulary_pb2 as vpb
from tests.mesh import MeshAddresses, one_way

# bench/vocabulary.py's sentence that Whisper gets wrong on both names without the
# vocabulary and right with it (bench/results/vocabulary.md)
SENTENCE = "Wojciech will present the Zylofex roadmap tomorrow."
NAMES = ("Wojciech", "Zylofex")
RATE_HZ = 16_000


async def _spoken(mesh: MeshAddresses, path: Path) -> Path:
    """SENTENCE read by the mesh's Kokoro voice, as a WAV file."""
    async with rpc.channel(mesh.tts) as channel:
        chunks = [r.audio async for r in tts_pb2_grpc.TextToSpeechServiceStub(channel).Synthesize(
            tts_pb2.SynthesizeRequest(text=SENTENCE, language_code="en", voice="af_heart",
                                      sample_rate_hertz=RATE_HZ,
                                      encoding=tts_pb2.AUDIO_ENCODING_LINEAR16))]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(b"".join(chunks))
    return path


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.casefold())


async def test_a_vocabulary_fixes_names_and_translations(mesh: MeshAddresses, tmp_path: Path) -> None:
    clip = await _spoken(mesh, tmp_path / "names.wav")
    without = await one_way(mesh, clip, "en", "pt-BR")
    with_it = await one_way(mesh, clip, "en", "pt-BR", vocabulary=vpb.Vocabulary(
        display_name="work", terms=list(NAMES), translations=[vpb.FixedTranslation(
            source_language_code="en", target_language_code="pt", source="roadmap",
            target="plano de voo")]))

    def heard(talk: object) -> tuple[str, str]:
        finals = [t for t in talk.heard("transcription") if t.is_final]  # type: ignore[attr-defined]
        translations = [t for t in talk.heard("translation") if t.is_final]  # type: ignore[attr-defined]
        return " ".join(t.text for t in finals), " ".join(t.text for t in translations)

    plain_text, plain_translation = heard(without)
    text, translation = heard(with_it)
    assert not all(n.casefold() in _words(plain_text) for n in NAMES), plain_text
    assert all(n.casefold() in _words(text) for n in NAMES), text
    # Bergamot translated the rest; the fixed translation stands where "roadmap" was
    assert "plano de voo" in translation.lower(), translation
    assert "plano de voo" not in plain_translation.lower(), plain_translation
    assert "Zylofex" in translation and "amanhã" in translation.lower(), translation
