"""What a participant's vocabularies ask of the engines: hotwords and a glossary.

A user's vocabularies (`session_svc.vocabularies`) are loaded when they create or
join a session and kept on their `Member` as one `Lexicon`. The speaker's terms
and do-not-translate words become the STT hotwords of their stream; every
participant's fixed translations of a pair and do-not-translate words become the
MT glossary of that pair (mt_svc masks them with placeholders for every engine,
mt_svc.glossary). What overflows the engines' per-call limits is dropped, the
speaker's own entries and earlier vocabularies first to stay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dragoman import languages

MAX_HOTWORDS = 100
MAX_HOTWORD_CHARS = 500
"""stt_svc's limits on StreamingRecognitionConfig.hotwords (stt_svc.server)."""
MAX_GLOSSARY_TERMS = 256
"""mt_svc's default limit on glossary + do_not_translate entries (settings mt.max_terms)."""


@dataclass(frozen=True, slots=True)
class FixedTranslation:
    """`source`, said in `source_language`, is translated as `target` into `target_language`
    (product languages: "pt", not "pt-BR")."""

    source_language: str
    target_language: str
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Glossary:
    """The MT glossary of one pair: (source term, target term) pairs and words to keep."""

    translations: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Entries of one or more vocabularies, in order (earlier ones win a conflict)."""

    terms: tuple[str, ...] = ()
    translations: tuple[FixedTranslation, ...] = ()
    do_not_translate: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms or self.translations or self.do_not_translate)

    @staticmethod
    def merged(lexicons: Iterable[Lexicon]) -> Lexicon:
        all_ = list(lexicons)
        return Lexicon(
            terms=tuple(t for lx in all_ for t in lx.terms),
            translations=tuple(t for lx in all_ for t in lx.translations),
            do_not_translate=tuple(w for lx in all_ for w in lx.do_not_translate))

    def hotwords(self) -> tuple[str, ...]:
        """Terms, then do-not-translate words (names the recogniser should spell right),
        each once, within stt_svc's limits."""
        out: list[str] = []
        seen: set[str] = set()
        chars = 0
        for word in (*self.terms, *self.do_not_translate):
            if word.casefold() in seen:
                continue
            if len(out) == MAX_HOTWORDS or chars + len(word) > MAX_HOTWORD_CHARS:
                break
            seen.add(word.casefold())
            out.append(word)
            chars += len(word)
        return tuple(out)

    def glossary(self, source_code: str, target_code: str) -> Glossary:
        """The glossary of a pair (BCP-47 codes as the pipeline has them): the first
        translation of each source term, and every word to keep, within mt_svc's limit."""
        source, target = languages.normalise(source_code), languages.normalise(target_code)
        translations: dict[str, str] = {}
        keep: dict[str, None] = {}
        for t in self.translations:
            if (t.source_language, t.target_language) == (source, target):
                translations.setdefault(t.source, t.target)
        for word in self.do_not_translate:
            if word not in translations:
                keep.setdefault(word, None)
        pairs = list(translations.items())[:MAX_GLOSSARY_TERMS]
        return Glossary(tuple(pairs), tuple(keep)[:MAX_GLOSSARY_TERMS - len(pairs)])


EMPTY = Lexicon()
NO_GLOSSARY = Glossary()
