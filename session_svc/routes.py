"""What the mesh can serve, and how each utterance is translated along its route.

The routes come from `dragoman.coverage` over the model services' own lists
(mt_svc ListLanguagePairs, stt_svc ListModels, tts_svc ListVoices), asked
at most every INVENTORY_TTL_S. Sessions check them before anyone speaks
(CreateSession, JoinSession, ListLanguages), and each speaker's pipeline
follows its direction's route: the cascade through mt_svc, or, where no text
route leaves the speaker's language, Whisper's speech translation into
English (then mt_svc English -> the listener's language when needed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dragoman import coverage
from dragoman.coverage import Conversation, Inventory, Path, Route
from dragoman.errors import DragomanError, FailedPrecondition, Unavailable
from dragoman.languages import ENGLISH, LANGUAGES, SUPPORTED
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc.downstream import Downstream
from session_svc.lexicon import EMPTY, Lexicon

log = logging.getLogger(__name__)

INVENTORY_TTL_S = 30.0
"""How long the services' lists are trusted: models and voices change only on installs."""


class Coverage:
    """The mesh's inventory, asked of the model services and cached for `ttl_s`."""

    def __init__(
        self, down: Downstream, ttl_s: float = INVENTORY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._down, self._ttl_s, self._clock = down, ttl_s, clock
        self._cached: Inventory | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def inventory(self) -> Inventory:
        """The current inventory; the last one known while a service does not answer."""
        if self._cached is not None and self._clock() - self._at < self._ttl_s:
            return self._cached
        async with self._lock:  # one refresh at a time; the others take its result
            if self._cached is not None and self._clock() - self._at < self._ttl_s:
                return self._cached
            try:
                replies = await asyncio.gather(
                    self._down.list_pairs(), self._down.list_models(), self._down.list_voices())
            except DragomanError as e:
                if self._cached is None:
                    raise Unavailable(
                        f"cannot tell which languages this deployment serves: {e.message}") from None
                log.warning("keeping the last language inventory: %s", e.message)
                return self._cached
            self._cached, self._at = Inventory.from_replies(*replies), self._clock()
            return self._cached


def _named(language: str) -> str:
    return f"{language} ({LANGUAGES[language]})"


def check_speaker(inventory: Inventory, language: str) -> None:
    """A session's creator: their language must at least be recognised or spoken here."""
    if not inventory.recognises(language) and not inventory.speaks(language):
        raise FailedPrecondition(
            f"{_named(language)} can be neither recognised nor spoken here: "
            f"run `dragoman languages install {language}`")


def check_pair(inventory: Inventory, first: str, second: str, allow_one_way: bool) -> Conversation:
    """Both directions between a creator of `first` and a joiner of `second`;
    FAILED_PRECONDITION naming what is missing when a direction is not served
    (one of them is, with `allow_one_way`)."""
    pair = coverage.conversation(inventory, first, second)
    if pair.two_way or (pair.one_way and allow_one_way):
        return pair
    if pair.one_way:
        works = pair.there if pair.there.available else pair.back
        raise FailedPrecondition(
            f"{pair.problem}; only {works.source} -> {works.target} is translated here "
            f"({works.path.value}): set allow_one_way to join a one-way session")
    raise FailedPrecondition(pair.problem)


def path_proto(route: Route) -> cpb.TranslationPath.ValueType:
    return {
        Path.DIRECT: cpb.TRANSLATION_PATH_CASCADE,
        Path.PIVOT: cpb.TRANSLATION_PATH_PIVOT,
        Path.SPEECH: (cpb.TRANSLATION_PATH_SPEECH_TRANSLATION_CASCADE if route.then_text
                      else cpb.TRANSLATION_PATH_SPEECH_TRANSLATION),
        Path.NONE: cpb.TRANSLATION_PATH_UNSPECIFIED,
    }[route.path]


def route_proto(route: Route) -> spb.LanguageRoute:
    return spb.LanguageRoute(
        source_language_code=route.source, target_language_code=route.target,
        available=route.available, path=path_proto(route), engines=list(route.engines),
        missing=list(route.missing), install=route.install,
    )


def languages_proto(inventory: Inventory) -> spb.ListLanguagesResponse:
    routes = coverage.matrix(inventory)
    conversable = {
        s for (s, t), r in routes.items() if r.available and routes[t, s].available
    }
    return spb.ListLanguagesResponse(
        languages=[spb.LanguageSupport(
            language_code=code, display_name=LANGUAGES[code],
            recognized=inventory.recognises(code), spoken=inventory.speaks(code),
            conversable=code in conversable) for code in SUPPORTED],
        routes=[route_proto(r) for r in routes.values()],
    )


def speech_translates(route: Route | None) -> bool:
    """Whether the speaker's recognition stream translates into English."""
    return route is not None and route.path is Path.SPEECH


@dataclass(frozen=True, slots=True)
class Translated:
    """An utterance's translation and how it was made."""

    text: str
    engine: str
    path: cpb.TranslationPath.ValueType
    confidence: float = 0.0
    """The text engines' (mt_svc Translation.confidence); 0 when not given."""


async def translate(
    down: Downstream, route: Route | None, source: str, target: str, text: str,
    lexicon: Lexicon = EMPTY,
) -> Translated:
    """Translates a final along `route`: `text` is a transcript in `source`, or (speech
    translation) already English. With no route known (audio before pairing), the cascade.
    `lexicon`'s glossary of the pair mt_svc translates is applied there."""
    if speech_translates(route):
        assert route is not None
        if target == ENGLISH:
            return Translated(text, route.engines[0], cpb.TRANSLATION_PATH_SPEECH_TRANSLATION)
        onward = await down.translate(ENGLISH, target, text, lexicon.glossary(ENGLISH, target))
        # Whisper gives no score for its half, so neither does the whole
        return Translated(onward.text, f"{route.engines[0]}>{onward.engine}",
                          cpb.TRANSLATION_PATH_SPEECH_TRANSLATION_CASCADE)
    done = await down.translate(source, target, text, lexicon.glossary(source, target))
    path = cpb.TRANSLATION_PATH_PIVOT if done.pivoted else cpb.TRANSLATION_PATH_CASCADE
    return Translated(done.text, done.engine, path, done.confidence)
