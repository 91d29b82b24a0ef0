"""Unit tests of the small pure parts: language tags, the voice catalog, silence trimming."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dragoman.errors import InvalidArgument, NotFound
from tts_svc.engines.fake import FakeEngine
from tts_svc.pipeline import TRIM_MARGIN_MS, trim_silence
from tts_svc.voices import VoiceCatalog, primary_language


@pytest.mark.parametrize(
    ("code", "primary"),
    [("en", "en"), ("EN-us", "en"), ("pt_BR", "pt"), ("es-419", "es"), (" zh-Hant-TW ", "zh")],
)
def test_primary_language(code: str, primary: str) -> None:
    assert primary_language(code) == primary


@pytest.mark.parametrize("code", ["e", "english", "en-", "en--US", "12", "en-US-toolongsubtag"])
def test_malformed_language_tags_are_invalid(code: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a BCP-47 language tag"):
        primary_language(code)


def test_catalog_defaults_prefer_the_named_voice_else_the_first() -> None:
    first = FakeEngine(languages=("en-US", "es"))
    second = FakeEngine(languages=("pt-BR",))
    catalog = VoiceCatalog([first, second], defaults={"pt": "fake-pt", "en": "missing-voice"})
    assert catalog.languages == ["en", "es", "pt"]
    assert [catalog.default(lang).name for lang in catalog.languages] == ["fake-en", "fake-es", "fake-pt"]
    assert catalog.choose("en-GB").voice.name == "fake-en"
    assert catalog.choose("pt", "fake-pt").engine is second
    with pytest.raises(NotFound, match="voices for es: fake-es"):
        catalog.choose("es", "fake-xx")


def test_trim_silence_keeps_the_sound_and_a_margin() -> None:
    rate = 16_000
    tone = 0.5 * np.sin(np.arange(rate // 2) * 0.1).astype(np.float32)
    padded = np.concatenate([np.zeros(rate, np.float32), tone, np.zeros(rate, np.float32)])
    trimmed = trim_silence(padded, rate)
    margin = rate * TRIM_MARGIN_MS // 1000
    assert tone.size <= trimmed.size <= tone.size + 2 * margin + 2 * rate // 100
    assert trim_silence(np.zeros(rate, np.float32), rate).size == 0
    assert trim_silence(np.zeros(0, np.float32), rate).size == 0


def test_catalog_defaults_prefer_a_neural_voice_whatever_the_engine_order(models_dir: Path) -> None:
    """espeak-ng named first in tts.engines still loses to Kokoro where both speak."""
    from dragoman.devices import Device
    from tts_svc.engines.espeak import EspeakEngine
    from tts_svc.engines.kokoro import KokoroEngine

    with ThreadPoolExecutor(1) as executor:
        espeak = EspeakEngine.load(executor)
        kokoro = KokoroEngine.load(models_dir, 1, executor, Device("cpu"))
        catalog = VoiceCatalog([espeak, kokoro], defaults={})
        assert catalog.default("es").engine == "kokoro" and catalog.default("es").quality == "neural"
        assert catalog.default("de").engine == "espeak"  # no neural voice speaks German here
        assert catalog.choose("es").engine is kokoro
