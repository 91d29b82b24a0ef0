"""The engines on their own: espeak-ng (every product language), Coqui's messages, the registry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dragoman import config
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import LANGUAGES
from tts_svc import engines as registry
from tts_svc.engines.base import AudioChunk, Gender, SynthesisRequest
from tts_svc.engines.coqui import CoquiEngine, find_models
from tts_svc.engines.espeak import EspeakEngine, kanji_reader


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown()


@pytest.fixture(scope="module")
def espeak(executor: ThreadPoolExecutor) -> EspeakEngine:
    return EspeakEngine.load(executor)


async def speak(engine: EspeakEngine, text: str, voice: str) -> np.ndarray:
    chunks: list[AudioChunk] = [c async for c in engine.synthesize(SynthesisRequest(text, voice))]
    return np.concatenate([c.samples for c in chunks])


def test_espeak_has_one_formant_voice_per_product_language(espeak: EspeakEngine) -> None:
    voices = espeak.capabilities.voices
    assert sorted(v.language_code.split("-")[0] for v in voices) == sorted(LANGUAGES)
    assert {(v.engine, v.quality, v.sample_rate_hz, v.gender) for v in voices} == {
        ("espeak", "formant", 22_050, Gender.MALE)
    }
    assert {v.name for v in voices} >= {"espeak-en", "espeak-pt", "espeak-zh", "espeak-ja"}
    assert espeak.capabilities.version.startswith("espeak-ng 1.52")


async def test_espeak_serves_many_threads_at_once(espeak: EspeakEngine) -> None:
    texts = [
        ("Guten Morgen, wie geht es Ihnen heute?", "espeak-de"),
        ("Hola.", "espeak-es"),
        ("Dzień dobry, miło mi pana poznać.", "espeak-pl"),
    ]
    alone = [await speak(espeak, t, v) for t, v in texts]
    together = await asyncio.gather(*(speak(espeak, t, v) for t, v in texts * 4))
    # espeak-ng carries a little state from one utterance to the next, so the same
    # text may differ by a few ms; interleaved calls would mix texts up entirely.
    for n, samples in enumerate(together):
        assert samples.size == pytest.approx(alone[n % len(texts)].size, rel=0.05)
    assert all(0.02 < float(np.sqrt(np.mean(s**2))) for s in alone)


async def test_japanese_kanji_are_read_not_named(espeak: EspeakEngine) -> None:
    read = kanji_reader()
    assert read is not None, "pykakasi is needed for Japanese kanji: pip install pykakasi"
    assert read("東京駅はどこですか？") == "とうきょうえきはどこですか？"
    assert read("こんにちは") == "こんにちは"
    # espeak-ng says "Chinese letter" for each kanji it cannot read: the kana reading is far shorter.
    naming = EspeakEngine(espeak._library, espeak._executor)  # the same library, no kanji reader
    text = "東京駅"
    assert (await speak(espeak, text, "espeak-ja")).size < 0.5 * (await speak(naming, text, "espeak-ja")).size


def test_coqui_without_its_package_or_a_model_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition) as info:
        CoquiEngine.load(tmp_path, 2, ThreadPoolExecutor(1))
    message = info.value.message
    assert message.startswith("Coqui TTS is not installed (No module named 'TTS'): ")
    assert "install the coqui extra: pip install 'dragoman[coqui]'" in message
    assert f"no Coqui TTS model in {tmp_path}: put a model's config.json and .pth checkpoint in " in message


def test_coqui_with_a_model_but_no_package_asks_only_for_the_package(tmp_path: Path) -> None:
    model = tmp_path / "coqui-vits-de"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model_file.pth").write_bytes(b"weights")
    with pytest.raises(FailedPrecondition) as info:
        CoquiEngine.load(tmp_path, 2, ThreadPoolExecutor(1))
    assert info.value.message == (
        "Coqui TTS is not installed (No module named 'TTS'): install the coqui extra: "
        "pip install 'dragoman[coqui]'"
    )


def test_coqui_models_are_found_by_directory(tmp_path: Path) -> None:
    vits, xtts, empty = tmp_path / "coqui-vits-de", tmp_path / "coqui-xtts-v2", tmp_path / "coqui-empty-fr"
    for path in (vits, xtts, empty):
        path.mkdir()
    (vits / "config.json").write_text("{}")
    (vits / "best_model.pth").write_bytes(b"")
    (vits / "other.pth").write_bytes(b"")
    (xtts / "config.json").write_text(json.dumps({"languages": ["en", "pl", "tr"]}))
    (xtts / "model.pth").write_bytes(b"")
    (empty / "config.json").write_text("{}")
    found = {m.path.name: m for m in find_models(tmp_path)}
    assert sorted(found) == ["coqui-vits-de", "coqui-xtts-v2"]
    assert (found["coqui-vits-de"].languages, found["coqui-vits-de"].checkpoint.name) == (
        ("de",),
        "best_model.pth",
    )
    assert found["coqui-xtts-v2"].languages == ("en", "pl", "tr") and found["coqui-xtts-v2"].multilingual


@pytest.mark.parametrize(
    ("engines", "expected"),
    [
        ("piper,kokoro", ["piper", "kokoro", "espeak"]),
        ("kokoro, espeak, piper", ["kokoro", "espeak", "piper"]),
        ("fake", ["fake"]),
        ("Piper,piper", ["piper", "espeak"]),
    ],
)
def test_espeak_is_always_the_last_fallback(
    settings: config.Settings, engines: str, expected: list[str]
) -> None:
    assert registry.names(dataclasses.replace(settings.tts, engines=engines)) == expected


def test_unknown_engines_are_named(settings: config.Settings) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry.names(dataclasses.replace(settings.tts, engines="piper,festival"))
    assert info.value.message == (
        f"setting tts.engines: unknown or no engine in 'piper,festival'; known: {', '.join(registry.KNOWN)}"
    )
    assert {"piper", "kokoro", "espeak", "coqui", "fake"} <= set(registry.KNOWN)
