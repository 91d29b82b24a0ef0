"""Kokoro-82M (int8 ONNX via kokoro-onnx): many languages and voices, 24 kHz.

Needs `<models_dir>/kokoro/kokoro-v1.0.int8.onnx` and `voices-v1.0.bin`.
A voice name's first letter is its language (a/b = en-US/en-GB, e = es,
f = fr, i = it, p = pt-BR, h = hi), its second letter its gender (f/m).
Japanese and Chinese voices need a g2p that kokoro-onnx does not bundle, so
they are not offered. espeak-ng reads numbers out in each language.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from dragoman import logs
from dragoman.errors import FailedPrecondition
from tts_svc.engines.base import AudioChunk, Capabilities, Gender, SynthesisRequest, Voice
from tts_svc.engines.onnx_session import session

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

    from dragoman.devices import Device

log = logging.getLogger(__name__)

NAME = "kokoro"
MODEL_FILE = "kokoro/kokoro-v1.0.int8.onnx"
VOICES_FILE = "kokoro/voices-v1.0.bin"
SAMPLE_RATE_HZ = 24_000
FIRST_PIECE_WORDS = 3
"""Kokoro's time grows with the text (2 words: ~0.3 s, 6 words: ~0.7 s on two idle
cores), so the first piece is kept to about 3 words for a quick first chunk."""
# voice-name prefix -> (BCP-47 tag, kokoro/espeak language)
LANGUAGES = {
    "a": ("en-US", "en-us"),
    "b": ("en-GB", "en-gb"),
    "e": ("es", "es"),
    "f": ("fr", "fr-fr"),
    "i": ("it", "it"),
    "p": ("pt-BR", "pt-br"),
    "h": ("hi", "hi"),
}
_GENDERS = {"f": Gender.FEMALE, "m": Gender.MALE}


def _voice(name: str) -> Voice | None:
    language = LANGUAGES.get(name[:1])
    if language is None or len(name) < 3 or name[2] != "_":
        return None
    return Voice(
        name=name,
        language_code=language[0],
        sample_rate_hz=SAMPLE_RATE_HZ,
        gender=_GENDERS.get(name[1], Gender.UNSPECIFIED),
        quality="neural",
        engine=NAME,
    )


class KokoroEngine:
    """The Kokoro model with every voice of a supported language."""

    def __init__(self, model: Kokoro, executor: Executor) -> None:
        self._model = model
        self._executor = executor
        voices = [v for v in map(_voice, model.get_voices()) if v is not None]
        self._capabilities = Capabilities(
            name=NAME,
            version=f"kokoro-onnx {importlib.metadata.version('kokoro-onnx')} {MODEL_FILE}",
            voices=tuple(voices),
            first_piece_words=FIRST_PIECE_WORDS,
            speeds=True,
        )
        self._language = {v.name: LANGUAGES[v.name[0]][1] for v in voices}

    @classmethod
    def load(cls, models_dir: Path, cpu_threads: int, executor: Executor, device: Device) -> KokoroEngine:
        """Loads the model and voices (blocking: about 1 s)."""
        model_path, voices_path = models_dir / MODEL_FILE, models_dir / VOICES_FILE
        for path in (model_path, voices_path):
            if not path.exists():
                raise FailedPrecondition(f"Kokoro file missing: {path}: run `dragoman models install`")
        from kokoro_onnx import Kokoro

        model = Kokoro.from_session(session(model_path, cpu_threads, device), str(voices_path))
        # The phonemizer starts an espeak-ng backend per language on first use (about
        # 20 ms, more under load): start them all now, not in a user's first request.
        for _, language in LANGUAGES.values():
            model.tokenizer.phonemize("a", language)
        engine = cls(model, executor)
        log.info("kokoro loaded", extra={"voices": len(engine.capabilities.voices)})
        return engine

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        create = functools.partial(
            self._model.create,
            request.text,
            voice=request.voice,
            speed=request.speed,
            lang=self._language[request.voice],
        )
        try:
            samples, rate_hz = await asyncio.get_running_loop().run_in_executor(self._executor, create)
        except ValueError:
            # kokoro-onnx raises ValueError for text with no pronounceable phonemes
            # (e.g. only symbols); that piece is silent, the rest of the text is not.
            # (Its message quotes the text, so it is not logged.)
            log.warning("kokoro found nothing to pronounce", extra={"text": logs.redact(request.text)})
            return
        yield AudioChunk(samples, rate_hz)

    async def close(self) -> None:
        self._language.clear()
