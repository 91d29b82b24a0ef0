"""espeak-ng (formant synthesis): a voice for every product language, at once.

The fallback that guarantees each of the 15 languages speaks: robotic but
intelligible, and about 2 ms per sentence. It runs libespeak-ng from the
`espeakng-loader` wheel (pulled in by kokoro-onnx) through ctypes, so no
system package is needed. The library keeps global state and is not thread
safe: one process-wide instance, every call under one lock.

(kokoro-onnx's phonemizer loads its own copy of the library and Piper links
its own espeak-ng, so neither shares this instance's state.)

espeak-ng reads Japanese kana but not kanji (it says "Chinese letter" for
each), so Japanese text has its kanji turned into hiragana first with
pykakasi, when installed (without it a warning is logged at load).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from dragoman.errors import FailedPrecondition
from tts_svc.engines.base import AudioChunk, Capabilities, Gender, SynthesisRequest, Voice

log = logging.getLogger(__name__)

NAME = "espeak"
LOADER = "espeakng-loader"
# BCP-47 tag -> espeak-ng voice, for the 15 product languages.
LANGUAGES = {
    "en-US": "en-us",
    "es": "es",
    "fr": "fr",
    "de": "de",
    "it": "it",
    "pt-BR": "pt-br",
    "ru": "ru",
    "ar": "ar",
    "zh": "cmn",
    "ja": "ja",
    "ko": "ko",
    "hi": "hi",
    "tr": "tr",
    "nl": "nl",
    "pl": "pl",
}
RATE_WPM = 150
"""Speaking rate. espeak-ng's default (175) is harder to follow: Whisper's word error rate on
15 Tatoeba sentences went from 19 to 14 % in English and 53 to 45 % in German at 150."""
MIN_RATE_WPM = 80
"""espeak-ng's slowest rate."""
FIRST_PIECE_WORDS = 10
"""espeak-ng synthesises a sentence in milliseconds: splitting it would only hurt prosody."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETER_RATE = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


_KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々]")


def kanji_reader() -> Callable[[str], str] | None:
    """A function writing the kanji of Japanese text in hiragana; None without pykakasi.

    Loading its dictionary takes about a second.
    """
    try:
        import pykakasi
    except ImportError:
        return None
    kakasi = pykakasi.kakasi()
    lock = threading.Lock()  # pykakasi does not say it is thread safe

    def read(text: str) -> str:
        if not _KANJI.search(text):
            return text
        with lock:
            parts = kakasi.convert(text)
        return "".join(p["hira"] if _KANJI.search(p["orig"]) else p["orig"] for p in parts)

    return read


def voice_name(language_code: str) -> str:
    """The name of the voice for a tag of `LANGUAGES`: "pt-BR" -> "espeak-pt"."""
    return f"espeak-{language_code.split('-')[0].lower()}"


class _Library:
    """The process-wide libespeak-ng, initialised once; `synthesize` is serialised."""

    _instance: _Library | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise FailedPrecondition(
                "espeak-ng is not installed: pip install espeakng-loader (a dependency of kokoro-onnx)"
            ) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        data = espeakng_loader.get_data_path().encode()
        rate_hz = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate_hz <= 0:
            raise FailedPrecondition(f"espeak-ng failed to start (data in {data.decode()})")
        self.sample_rate_hz = rate_hz
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._lib = lib
        self._parts: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced while the library lives
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_SetParameter(_PARAMETER_RATE, RATE_WPM, 0)
        self._lock = threading.Lock()

    @classmethod
    def get(cls) -> _Library:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self._parts.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768.0)
        return 0  # go on

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
        """All the samples of `text` in `voice` at `speed` times `RATE_WPM` (blocking; a few
        ms per sentence)."""
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            self._parts = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(_PARAMETER_RATE, max(MIN_RATE_WPM, round(RATE_WPM * speed)), 0)
            status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            parts, self._parts = self._parts, []
        if status != 0:
            raise RuntimeError(f"espeak-ng synthesis failed with status {status}")
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class EspeakEngine:
    """One espeak-ng voice per product language, e.g. "espeak-de", "espeak-zh"."""

    def __init__(
        self, library: _Library, executor: Executor, read_kanji: Callable[[str], str] | None = None
    ) -> None:
        self._library = library
        self._executor = executor
        self._read_kanji = read_kanji
        voices = tuple(
            Voice(
                name=voice_name(code),
                language_code=code,
                sample_rate_hz=library.sample_rate_hz,
                gender=Gender.MALE,  # espeak-ng's default variant
                quality="formant",
                engine=NAME,
            )
            for code in LANGUAGES
        )
        self._espeak_voice = {voice_name(code): espeak for code, espeak in LANGUAGES.items()}
        self._capabilities = Capabilities(
            name=NAME,
            version=f"espeak-ng {library.version} espeakng-loader {importlib.metadata.version(LOADER)}",
            voices=voices,
            first_piece_words=FIRST_PIECE_WORDS,
            speeds=True,
        )

    @classmethod
    def load(cls, executor: Executor) -> EspeakEngine:
        """Starts libespeak-ng (once per process; milliseconds) and pykakasi (about 1 s)."""
        read_kanji = kanji_reader()
        if read_kanji is None:
            log.warning("pykakasi is not installed: Japanese kanji will be read as 'Chinese letter'")
        engine = cls(_Library.get(), executor, read_kanji)
        log.info("espeak-ng loaded", extra={"version": engine.capabilities.version})
        return engine

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        voice = self._espeak_voice[request.voice]
        samples = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._speak, request.text, voice, request.speed
        )
        yield AudioChunk(samples, self._library.sample_rate_hz)

    def _speak(self, text: str, voice: str, speed: float) -> np.ndarray:
        if voice == "ja" and self._read_kanji is not None:
            text = self._read_kanji(text)
        return self._library.synthesize(text, voice, speed)

    async def close(self) -> None:
        return None  # the library is shared by the process and lives as long as it
