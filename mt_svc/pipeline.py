"""One Translate request from segments to translations.

For a batch of segments on one installed route:

1. each segment is framed (its leading and trailing whitespace kept aside)
   and its glossary / do-not-translate terms are masked by placeholders;
2. the masked text is split into sentences, each normalised (NFC, single
   spaces); the batch's distinct sentences are looked up in the phrase cache;
3. the misses go along the route as one batch per hop. A sentence whose
   translation lost a number (models do: "Is room 214 free?" -> "O quarto é
   gratuito?") is translated again with its numbers masked like terms; one
   that lost a placeholder is translated in pieces around its terms and
   numbers, which then stay where they were. So no term or number is ever
   dropped;
4. the new translations are cached, the sentences joined with their
   original separators, the placeholders replaced by the terms, and the
   whitespace framing put back.

A segment is `cached` when every one of its sentences came from the cache.
Its confidence is that of its least sure sentence, where the engines gave
one for each (the cache keeps it with the translation): a repaired sentence
has none.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mt_svc import cache as phrase_cache
from mt_svc.glossary import Masker, Term, mask_numbers, numbers, placeholders, split_at_placeholders
from mt_svc.router import IDENTITY, Route, Router
from mt_svc.text import Framed, normalise, sentences

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """Translations of a batch, in order, whether each came from the cache, the route, and
    each translation's confidence (None: not given)."""

    texts: list[str]
    cached: list[bool]
    engine: str
    pivoted: bool
    confidence: list[float | None]


class Pipeline:
    """Translates batches along the router's routes, through the phrase cache."""

    def __init__(self, router: Router, cache: phrase_cache.PhraseCache) -> None:
        self.router = router
        self.cache = cache

    async def translate(
        self, source: str, target: str, segments: Sequence[str], terms: Sequence[Term] = ()
    ) -> Result:
        """Translates `segments` (product language codes); same source and target returns
        them unchanged (engine "identity"). FAILED_PRECONDITION when no route is installed."""
        if source == target:
            return Result(list(segments), [False] * len(segments), IDENTITY, False,
                          [None] * len(segments))
        route = self.router.route(source, target)
        masker = Masker(terms)
        framed = [Framed.of(s) for s in segments]
        masked = [masker.mask(f.core) for f in framed]
        split = [
            [(normalise(s), sep) for s, sep in sentences(m.text)] if m.text else [] for m in masked
        ]
        unique = list(dict.fromkeys(s for parts in split for s, _ in parts))
        done, hits, sure = await self._sentences(route, unique)
        texts: list[str] = []
        cached: list[bool] = []
        confidence: list[float | None] = []
        for f, m, parts in zip(framed, masked, split, strict=True):
            if not parts:
                texts.append(f.lead)  # whitespace only: nothing to translate
                cached.append(False)
                confidence.append(None)
                continue
            joined = "".join(f"{done[s]}{sep}" for s, sep in parts)
            restored = m.restore(joined)
            if restored is None:  # cannot happen: _sentences repairs every sentence
                raise RuntimeError("a placeholder went missing after the repair")
            texts.append(f.wrap(restored))
            cached.append(all(s in hits for s, _ in parts))
            known = [c for s, _ in parts if (c := sure.get(s)) is not None]
            confidence.append(min(known) if len(known) == len(parts) else None)
        return Result(texts, cached, route.engine, route.pivoted, confidence)

    async def _sentences(
        self, route: Route, unique: list[str]
    ) -> tuple[dict[str, str], set[str], dict[str, float | None]]:
        """Translations of distinct normalised sentences, the ones the cache had, and each
        one's confidence (None for a repaired one, or where an engine gave none)."""
        keys = {s: phrase_cache.key(route.version, route.source, route.target, s) for s in unique}
        found = await self.cache.get_many(list(keys.values())) if unique else []
        done: dict[str, str] = {}
        sure: dict[str, float | None] = {}
        for s, stored in zip(unique, found, strict=True):
            if stored is not None:
                done[s], sure[s] = phrase_cache.read(stored)
        hits = set(done)
        misses = [s for s in unique if s not in done]
        if misses:
            for s, scored in zip(misses, await self.router.run_scored(route, misses), strict=True):
                done[s], sure[s] = scored.text, scored.confidence
            damaged = [s for s in misses if not _kept(s, done[s])]
            sure.update(dict.fromkeys(damaged))
            if damaged:
                log.info("%s dropped a term or a number in %d sentence(s); repairing",
                         route.engine, len(damaged))
                done.update(await self._repair(route, damaged))
            await self.cache.put_many({keys[s]: phrase_cache.value(done[s], sure[s]) for s in misses})
        return done, hits, sure

    async def _repair(self, route: Route, damaged: list[str]) -> dict[str, str]:
        """Translations that keep every term and number: numbers masked like terms and the
        sentence translated again, and if a placeholder is still lost, in pieces around them."""
        masks = {s: mask_numbers(s) for s in damaged}
        retry = [s for s in damaged if masks[s].slots]
        out = dict(zip(retry, await self.router.run(route, [masks[s].text for s in retry]), strict=True))
        lost = [masks[s].text for s in damaged if s not in out or not _intact(masks[s].text, out[s])]
        around = await self._around_terms(route, lost) if lost else {}
        repaired = {}
        for s in damaged:
            translation = around.get(masks[s].text) or out[s]
            restored = masks[s].restore(translation)
            if restored is None:  # cannot happen: pieces around the placeholders keep them
                raise RuntimeError("a placeholder went missing after the repair")
            repaired[s] = restored
        return repaired

    async def _around_terms(self, route: Route, texts: list[str]) -> dict[str, str]:
        """Each text translated in pieces between its placeholders, which stay in place."""
        parts = {s: split_at_placeholders(s) for s in texts}
        plain = list(dict.fromkeys(
            core for pieces in parts.values() for p in pieces[0::2] if (core := Framed.of(p).core)
        ))
        done, _, _ = await self._sentences(route, plain)  # no placeholders or numbers: no recursion
        return {
            s: "".join(p if i % 2 else Framed.of(p).wrap(done.get(Framed.of(p).core, ""))
                       for i, p in enumerate(pieces)).strip()
            for s, pieces in parts.items()
        }


def _intact(source: str, translation: str) -> bool:
    """Every placeholder of `source` is in `translation` exactly as often."""
    return Counter(placeholders(source)) == Counter(placeholders(translation))


def _kept(source: str, translation: str) -> bool:
    """`translation` keeps the placeholders and the numbers of `source`."""
    return _intact(source, translation) and numbers(source) == numbers(translation)
