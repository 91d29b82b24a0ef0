"""The installed voices of every engine, by language, and choosing one for a request.

Languages match on their primary subtag, case-insensitively: a request for
"en", "en-GB" or "EN_us" may use any English voice; "es-419" any Spanish
one. Each language has a default voice: the one named in `DEFAULT_VOICES`
when installed (chosen for speed first), else the first neural voice of the
language in engine order (a pulled Piper voice, Kokoro), and a formant voice
(espeak-ng) only where no neural voice speaks the language, whatever the
order of `tts.engines`. A request (e.g. a session participant's choice) may
name any voice of its language.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dragoman.errors import InvalidArgument, NotFound, shown
from dragoman.languages import primary_subtag
from tts_svc.engines.base import TtsEngine, Voice

log = logging.getLogger(__name__)

NEURAL = "neural"

DEFAULT_VOICES: Mapping[str, str] = {
    "en": "en_US-joe-medium",  # Piper: about 0.1 s per short sentence
    "es": "ef_dora",
    "pt": "pf_dora",
    "fr": "ff_siwis",
    "it": "if_sara",
    "hi": "hf_alpha",
}



def primary_language(code: str) -> str:
    """The lower-case primary subtag of a BCP-47 tag ("pt-BR" -> "pt").

    An empty or malformed tag is INVALID_ARGUMENT.
    """
    if not code.strip():
        raise InvalidArgument('language_code is required, e.g. "en" or "pt-BR"')
    primary = primary_subtag(code)
    if primary is None:
        raise InvalidArgument(
            f'language_code {shown(code)} is not a BCP-47 language tag (e.g. "en", "pt-BR")')
    return primary


@dataclass(frozen=True, slots=True)
class Choice:
    """A voice chosen for a request, and the engine that runs it."""

    voice: Voice
    engine: TtsEngine


class VoiceCatalog:
    """Every voice of the given engines; engines earlier in the list come first."""

    def __init__(self, engines: Sequence[TtsEngine], defaults: Mapping[str, str] = DEFAULT_VOICES) -> None:
        self._by_name: dict[str, Choice] = {}
        self._by_language: dict[str, list[Voice]] = {}
        for engine in engines:
            for voice in engine.capabilities.voices:
                if voice.name in self._by_name:
                    log.warning("voice %s offered twice; keeping the first", voice.name)
                    continue
                self._by_name[voice.name] = Choice(voice, engine)
                self._by_language.setdefault(primary_language(voice.language_code), []).append(voice)
        self._defaults: dict[str, Voice] = {}
        for language, voices in self._by_language.items():
            preferred = self._by_name.get(defaults.get(language, ""))
            neural = [v for v in voices if v.quality == NEURAL]
            self._defaults[language] = preferred.voice if preferred else (neural or voices)[0]

    @property
    def languages(self) -> list[str]:
        """Primary subtags of the languages with at least one voice, sorted."""
        return sorted(self._by_language)

    def default(self, language: str) -> Voice:
        """The default voice of a supported primary language."""
        return self._defaults[language]

    def voices(self, language_code: str = "") -> list[Voice]:
        """All voices, or those of one language (none for an unsupported one)."""
        if not language_code.strip():
            return [c.voice for c in self._by_name.values()]
        return list(self._by_language.get(primary_language(language_code), []))

    def is_default(self, voice: Voice) -> bool:
        return self._defaults.get(primary_language(voice.language_code)) == voice

    def choose(self, language_code: str, voice_name: str = "") -> Choice:
        """The voice for a request: `voice_name`, or the language's default.

        Unsupported language -> INVALID_ARGUMENT listing the supported ones;
        unknown voice -> NOT_FOUND listing the language's voices; a voice of
        another language -> INVALID_ARGUMENT.
        """
        language = primary_language(language_code)
        if language not in self._by_language:
            raise InvalidArgument(
                f"language {shown(language_code)} is not supported; supported languages: "
                f"{', '.join(self.languages)}"
            )
        if not voice_name.strip():
            voice = self._defaults[language]
            return self._by_name[voice.name]
        names = ", ".join(v.name for v in self._by_language[language])
        choice = self._by_name.get(voice_name.strip())
        if choice is None:
            raise NotFound(f"voice {shown(voice_name)} not found; voices for {language}: {names}")
        if primary_language(choice.voice.language_code) != language:
            raise InvalidArgument(
                f"voice {shown(voice_name)} speaks {choice.voice.language_code}, not "
                f"{shown(language_code, quote=False)}; voices for {language}: {names}"
            )
        return choice
