"""tts_svc over real gRPC with the real engines (Piper for English, Kokoro for the rest)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest

from dragoman import config
from dragoman.tts.v1 import tts_pb2
from tests.helpers import wer
from tests.tts_svc.conftest import collect, rms, rpc_error, samples

if TYPE_CHECKING:
    from dragoman.tts.v1.tts_pb2_grpc import TextToSpeechServiceAsyncStub as Stub

MIN_RMS = 0.02
"""Each chunk must be speech, not silence: RMS above -34 dBFS (this speech is -24 to -16)."""
MAX_WER = 0.35
"""Round-trip bound: Whisper base on our synthetic speech, after `tests.helpers.normalise`."""

MULTI_SENTENCE = {
    "en": (
        "Good morning, I would like a table for two people. Is that possible? Thank you.",
        "en_US-joe-medium",
        22_050,
    ),
    "es": (
        "Buenos días, quisiera una mesa para dos personas. ¿Es posible? Gracias.",
        "ef_dora",
        24_000,
    ),
    "pt": (
        "Bom dia, eu queria uma mesa para duas pessoas. É possível? Obrigado.",
        "pf_dora",
        24_000,
    ),
}


@pytest.mark.parametrize("language", sorted(MULTI_SENTENCE))
async def test_multi_sentence_text_streams_several_chunks(tts: Stub, language: str) -> None:
    text, voice, rate_hz = MULTI_SENTENCE[language]
    arrivals: list[float] = []
    responses = []
    async for r in tts.Synthesize(tts_pb2.SynthesizeRequest(text=text, language_code=language)):
        arrivals.append(time.monotonic())
        responses.append(r)

    # "Good morning," | rest of sentence 1 | sentence 2 | sentence 3
    assert len(responses) == 4
    assert [r.chunk_index for r in responses] == list(range(len(responses)))
    assert [r.is_last for r in responses] == [False] * (len(responses) - 1) + [True]
    assert arrivals[0] < arrivals[-1]
    assert len(responses[0].text.split()) <= 6
    assert " ".join(r.text for r in responses) == text
    for r in responses:
        assert r.voice == voice
        assert r.sample_rate_hertz == rate_hz
        assert rms(r.audio) > MIN_RMS, f"chunk {r.chunk_index} is silent"
        assert r.audio_duration.ToNanoseconds() == pytest.approx(len(r.audio) / 2 / rate_hz * 1e9, abs=1e3)


def transcribe(whisper: Any, responses: list[tts_pb2.SynthesizeResponse], language: str) -> str:
    assert {r.sample_rate_hertz for r in responses} == {16_000}
    segments, _ = whisper.transcribe(
        samples(responses), language=language, beam_size=1, without_timestamps=True
    )
    return " ".join(s.text.strip() for s in segments)


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "The weather is lovely today, so we are going for a walk in the park."),
        ("es", "Buenos días, me gustaría reservar una mesa para dos personas esta noche."),
        ("pt", "Onde fica a estação de trem mais próxima?"),
    ],
)
async def test_round_trip_through_whisper(tts: Stub, whisper: Any, language: str, text: str) -> None:
    responses = await collect(tts, text=text, language_code=language, sample_rate_hertz=16_000)
    heard = transcribe(whisper, responses, language)
    assert wer(text, heard) <= MAX_WER, heard


@pytest.mark.parametrize(("language", "native_hz"), [("en", 22_050), ("es", 24_000)])
@pytest.mark.parametrize("rate_hz", [16_000, 48_000])
async def test_resampling_scales_the_sample_count(
    tts: Stub, language: str, native_hz: int, rate_hz: int
) -> None:
    text = {"en": "See you tomorrow. Bye.", "es": "Hasta mañana. Adiós."}[language]
    native = await collect(tts, text=text, language_code=language)
    resampled = await collect(tts, text=text, language_code=language, sample_rate_hertz=rate_hz)
    assert {r.sample_rate_hertz for r in native} == {native_hz}
    assert {r.sample_rate_hertz for r in resampled} == {rate_hz}
    assert len(resampled) == len(native)
    ratio = samples(resampled).size / samples(native).size
    assert ratio == pytest.approx(rate_hz / native_hz, rel=0.005)
    assert rms(b"".join(r.audio for r in resampled)) > MIN_RMS


@pytest.mark.parametrize(
    ("code", "language", "voice"),
    [
        ("en", "en", "en_US-joe-medium"),
        ("EN-us", "en", "en_US-joe-medium"),
        ("en_GB", "en", "en_US-joe-medium"),
        ("pt-BR", "pt", "pf_dora"),
        ("PT", "pt", "pf_dora"),
        ("es-419", "es", "ef_dora"),
        ("es", "es", "ef_dora"),
        ("fr-FR", "fr", "ff_siwis"),
        ("it", "it", "if_sara"),
        ("hi-IN", "hi", "hf_alpha"),
    ],
)
async def test_language_codes_are_bcp47_and_case_insensitive(
    tts: Stub, code: str, language: str, voice: str
) -> None:
    word = {"en": "Yes.", "pt": "Sim.", "es": "Sí.", "fr": "Oui.", "it": "Sì.", "hi": "हाँ।"}[language]
    responses = await collect(tts, text=word, language_code=code)
    assert [r.voice for r in responses] == [voice]
    assert responses[-1].is_last


async def test_a_request_may_pick_any_voice_of_its_language(tts: Stub) -> None:
    responses = await collect(tts, text="Hola.", language_code="es-MX", voice="em_alex")
    assert {r.voice for r in responses} == {"em_alex"}
    responses = await collect(tts, text="Hello.", language_code="en", voice="bf_emma")
    assert {r.voice for r in responses} == {"bf_emma"}
    assert {r.sample_rate_hertz for r in responses} == {24_000}


def _bad_inputs(max_chars: int) -> list[tuple[dict[str, Any], grpc.StatusCode, str]]:
    rates = "use 0 (the voice's own rate) or one of 16000, 22050, 24000, 48000"
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return [
        ({"text": "", "language_code": "en"}, invalid, "text is empty"),
        ({"text": " \n\t ", "language_code": "en"}, invalid, "text is empty"),
        (
            {"text": "a" * (max_chars + 1), "language_code": "en"},
            invalid,
            f"text has {max_chars + 1} characters; the limit is {max_chars}",
        ),
        (
            {"text": "... !!!", "language_code": "en"},
            invalid,
            "text has nothing to speak (no letters or digits)",
        ),
        (
            {"text": "Hallo.", "language_code": "de"},
            invalid,
            "language 'de' is not supported; supported languages: en, es, fr, hi, it, pt",
        ),
        ({"text": "Hello.", "language_code": ""}, invalid, 'language_code is required, e.g. "en" or "pt-BR"'),
        (
            {"text": "Hello.", "language_code": "english!"},
            invalid,
            'language_code \'english!\' is not a BCP-47 language tag (e.g. "en", "pt-BR")',
        ),
        (
            {"text": "Hola.", "language_code": "es", "voice": "nobody"},
            grpc.StatusCode.NOT_FOUND,
            "voice 'nobody' not found; voices for es: ef_dora, em_alex, em_santa",
        ),
        (
            {"text": "Hola.", "language_code": "es", "voice": "af_heart"},
            invalid,
            "voice 'af_heart' speaks en-US, not es; voices for es: ef_dora, em_alex, em_santa",
        ),
        (
            {"text": "Hello.", "language_code": "en", "sample_rate_hertz": 44_100},
            invalid,
            f"sample_rate_hertz 44100 is not supported; {rates}",
        ),
        (
            {"text": "Hello.", "language_code": "en", "sample_rate_hertz": -1},
            invalid,
            f"sample_rate_hertz -1 is not supported; {rates}",
        ),
        (
            {"text": "Hello.", "language_code": "en", "encoding": 7},
            invalid,
            "encoding 7 is not supported; use AUDIO_ENCODING_LINEAR16",
        ),
    ]


async def test_each_bad_input_has_its_status_and_message(tts: Stub, tts_settings: config.Settings) -> None:
    for request, code, message in _bad_inputs(tts_settings.tts.max_text_chars):
        err = await rpc_error(tts.Synthesize(tts_pb2.SynthesizeRequest(**request)))
        assert (err.code(), err.details()) == (code, message), request
    # ...and the server goes on serving.
    responses = await collect(tts, text="Still here.", language_code="en")
    assert responses[-1].is_last and rms(responses[0].audio) > MIN_RMS


async def test_list_voices_has_one_default_per_language(tts: Stub) -> None:
    voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest())).voices
    defaults = {v.language_code.split("-")[0]: v.name for v in voices if v.is_default}
    assert defaults == {
        "en": "en_US-joe-medium",
        "es": "ef_dora",
        "pt": "pf_dora",
        "fr": "ff_siwis",
        "it": "if_sara",
        "hi": "hf_alpha",
    }
    by_name = {v.name: v for v in voices}
    joe, dora = by_name["en_US-joe-medium"], by_name["ef_dora"]
    assert (joe.engine, joe.language_code, joe.natural_sample_rate_hertz, joe.gender) == (
        "piper",
        "en-US",
        22_050,
        tts_pb2.VOICE_GENDER_MALE,
    )
    assert (dora.engine, dora.language_code, dora.natural_sample_rate_hertz, dora.gender) == (
        "kokoro",
        "es",
        24_000,
        tts_pb2.VOICE_GENDER_FEMALE,
    )
    assert {v.quality for v in voices} == {"neural"}
    assert not any(v.name[0] in "jz" for v in voices)  # no Japanese or Chinese g2p here


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("pt-BR", ["pf_dora", "pm_alex", "pm_santa"]),
        ("ES-419", ["ef_dora", "em_alex", "em_santa"]),
        ("de", []),
    ],
)
async def test_list_voices_filters_by_language(tts: Stub, code: str, names: list[str]) -> None:
    voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest(language_code=code))).voices
    assert [v.name for v in voices] == names
    assert sum(v.is_default for v in voices) == (1 if names else 0)


async def test_list_voices_rejects_a_malformed_language(tts: Stub) -> None:
    err = await rpc_error(tts.ListVoices(tts_pb2.ListVoicesRequest(language_code="??")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == 'language_code \'??\' is not a BCP-47 language tag (e.g. "en", "pt-BR")'


async def test_numbers_are_spoken(tts: Stub, whisper: Any) -> None:
    responses = await collect(tts, text="Tengo 25 años.", language_code="es", sample_rate_hertz=16_000)
    heard = transcribe(whisper, responses, "es")
    assert "25" in heard or "veinticinco" in heard.lower(), heard
    assert float(np.abs(samples(responses)).max()) > 0.1
