"""Which route serves an ordered pair of product languages, given what the mesh has installed.

A conversation from a speaker of `source` to a listener of `target` needs
three things: speech recognition of `source`, a translation into `target`,
and a voice that speaks `target`. The translation is, best first:

- `direct`: one installed MT engine translates source -> target;
- `pivot`: mt_svc goes through English with two installed engines;
- `speech`: a multilingual Whisper model turns `source` speech straight into
  English text (speech translation), followed by MT English -> target when
  the target is not English;
- `none`: nothing serves it; `missing` says what is lacking and `install`
  what to run.

Text routes win over speech translation: the cascade keeps a transcript for
the speaker and (for Bergamot and OPUS-MT) translates better than Whisper
base does. Everything here is pure: callers (session_svc, `dragoman
languages`) turn the services' List* replies into `Inventory`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dragoman.languages import ENGLISH, LANGUAGES, SUPPORTED, primary_subtag
from dragoman.mt.v1 import mt_pb2
from dragoman.stt.v1 import stt_pb2
from dragoman.tts.v1 import tts_pb2

IDENTITY = "identity"
"""mt_svc's engine for a pair of the same language."""
ANY_LANGUAGE = "*"
"""What stt_svc lists for a multilingual Whisper model: every Whisper language."""


def install_command(source: str, target: str) -> str:
    """The command that installs what a pair lacks (engines, models, voices)."""
    return f"dragoman languages install {source} {target}"


class Path(enum.Enum):
    """How an ordered pair is translated."""

    DIRECT = "direct"
    PIVOT = "pivot"
    SPEECH = "speech"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TextRoute:
    """One mt_svc LanguagePair: the route it would take and whether it is installed."""

    source: str
    target: str
    engines: tuple[str, ...]
    pivot: bool = False
    installed: bool = True
    install: str = ""
    """mt_svc's hint for the missing engines ("" when installed)."""


@dataclass(frozen=True, slots=True)
class Recognizer:
    """One stt_svc model."""

    name: str
    languages: frozenset[str]
    """Base language codes, or {"*"} for every Whisper language."""
    translates: bool = False
    """Whether it turns speech into English text (multilingual Whisper)."""

    def recognises(self, language: str) -> bool:
        return ANY_LANGUAGE in self.languages or language in self.languages


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the mesh has: MT routes by ordered pair, STT models, voices by language."""

    text: Mapping[tuple[str, str], TextRoute] = field(default_factory=dict)
    recognizers: tuple[Recognizer, ...] = ()
    voices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, text: Iterable[TextRoute], recognizers: Iterable[Recognizer],
        voices: Iterable[tuple[str, str]],
    ) -> Inventory:
        """From flat lists; `voices` as (language, voice name), languages as base codes."""
        by_language: dict[str, list[str]] = {}
        for language, name in voices:
            by_language.setdefault(language, []).append(name)
        return cls(
            {(r.source, r.target): r for r in text}, tuple(recognizers),
            {k: tuple(v) for k, v in by_language.items()},
        )

    @classmethod
    def from_replies(
        cls, pairs: mt_pb2.ListLanguagePairsResponse, models: stt_pb2.ListModelsResponse,
        voices: tts_pb2.ListVoicesResponse,
    ) -> Inventory:
        """From the live services' answers (mt_svc, stt_svc, tts_svc List* RPCs)."""
        return cls.of(
            (TextRoute(primary_subtag(p.source_language_code) or p.source_language_code,
                       primary_subtag(p.target_language_code) or p.target_language_code,
                       tuple(p.engines), p.pivot, p.installed, p.install) for p in pairs.pairs),
            (Recognizer(m.name, frozenset(primary_subtag(c) or c for c in m.language_codes),
                        m.translates_to_english) for m in models.models),
            ((primary_subtag(v.language_code) or v.language_code, v.name) for v in voices.voices),
        )

    def recognises(self, language: str) -> bool:
        return any(r.recognises(language) for r in self.recognizers)

    def speaks(self, language: str) -> bool:
        return bool(self.voices.get(language))

    def speech_translator(self, language: str) -> Recognizer | None:
        """The model that translates `language` speech into English, if any."""
        if language == ENGLISH:
            return None
        return next((r for r in self.recognizers if r.translates and r.recognises(language)), None)

    def text_route(self, source: str, target: str) -> TextRoute | None:
        """The installed MT route for a pair, if any."""
        route = self.text.get((source, target))
        return route if route is not None and route.installed and route.engines else None


@dataclass(frozen=True, slots=True)
class Route:
    """How speech in `source` reaches a listener of `target`."""

    source: str
    target: str
    path: Path
    engines: tuple[str, ...] = ()
    """What translates, in order: MT engines, or the speech model then any MT engines."""
    speech_model: str = ""
    """The Whisper model that speech-translates (path SPEECH)."""
    missing: tuple[str, ...] = ()
    """What is lacking, in words (path NONE), e.g. "a voice for ja"."""
    install: str = ""
    """The command that installs what is missing (path NONE)."""

    @property
    def available(self) -> bool:
        return self.path is not Path.NONE

    @property
    def then_text(self) -> bool:
        """Speech translation into English followed by MT English -> target."""
        return self.path is Path.SPEECH and self.target != ENGLISH

    @property
    def problem(self) -> str:
        """One sentence for people: what is missing and what to run ("" when available)."""
        if self.available:
            return ""
        return f"{'; '.join(self.missing)}: run `{self.install}`"


def _name(language: str) -> str:
    return LANGUAGES.get(language, language)


def route(inventory: Inventory, source: str, target: str) -> Route:
    """The route for speech in `source` to a listener of `target` (base codes; the same
    language twice needs no translation: mt_svc passes it through)."""
    missing: list[str] = []
    if not inventory.recognises(source):
        missing.append(f"no speech recognition for {source} ({_name(source)})")
    if not inventory.speaks(target):
        missing.append(f"no voice for {target} ({_name(target)})")
    text = (TextRoute(source, target, (IDENTITY,)) if source == target
            else inventory.text_route(source, target))
    translation: Route | None = None
    if text is not None:
        path = Path.PIVOT if text.pivot else Path.DIRECT
        translation = Route(source, target, path, text.engines)
    elif (model := inventory.speech_translator(source)) is not None:
        onward = inventory.text_route(ENGLISH, target) if target != ENGLISH else None
        if target == ENGLISH or onward is not None:
            engines = (f"{model.name}:translate", *(onward.engines if onward else ()))
            translation = Route(source, target, Path.SPEECH, engines, speech_model=model.name)
    if translation is None:
        missing.append(f"no translation from {source} to {target}")
    if missing:
        return Route(source, target, Path.NONE, missing=tuple(missing),
                     install=install_command(source, target))
    assert translation is not None
    return translation


def matrix(inventory: Inventory, languages: Iterable[str] = SUPPORTED) -> dict[tuple[str, str], Route]:
    """The route of every ordered pair of `languages`."""
    codes = list(languages)
    return {(s, t): route(inventory, s, t) for s in codes for t in codes if s != t}


@dataclass(frozen=True, slots=True)
class Conversation:
    """Both directions of a conversation between two languages."""

    there: Route
    """First person's speech to the second."""
    back: Route
    """Second person's speech to the first."""

    @property
    def two_way(self) -> bool:
        return self.there.available and self.back.available

    @property
    def one_way(self) -> bool:
        """Exactly one direction is served."""
        return self.there.available != self.back.available

    @property
    def problem(self) -> str:
        """What keeps the unserved direction(s) from working ("" when both work)."""
        return "; ".join(r.problem for r in (self.there, self.back) if not r.available)


def conversation(inventory: Inventory, first: str, second: str) -> Conversation:
    return Conversation(route(inventory, first, second), route(inventory, second, first))
