"""Language-pair routing to engines, pivoting through English, and running a route.

Engines are ranked: the configured ones in settings order (`preference`),
then any other installed engine in the order given, then every other known
engine. For a pair
(source, target) the candidates are the best engine that translates it
directly and, when neither end is English, source -> English with one
engine and English -> target with another ("apertium>bergamot"); each hop
is the best installed engine for it or a better-ranked one that could be
installed. An installed route beats one that is not; then the route whose
worst engine ranks best; then the one with fewer hops. So a pivot through two preferred
models (OPUS-MT fr->en, en->es) beats a direct route through a less
preferred one (Apertium fr->es), and a direct route wins a tie.
Pairs with no installed route are still described (`plan`): which engines
would serve them and what to install, so a caller gets FAILED_PRECONDITION
naming the missing piece instead of silence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dragoman.errors import FailedPrecondition
from dragoman.languages import ENGLISH
from mt_svc.engines.base import MtEngine, Offer, Scored, ScoringEngine, TranslationBatch

IDENTITY = "identity"


@dataclass(frozen=True, slots=True)
class Hop:
    """One engine translating one pair; `install` is how to get it when it is missing."""

    engine: str
    source: str
    target: str
    license: str
    rank: int
    install: str = ""
    version: str = ""

    @property
    def installed(self) -> bool:
        return not self.install


@dataclass(frozen=True, slots=True)
class Route:
    """How a pair is (or would be) served: no hops when no known engine can."""

    source: str
    target: str
    hops: tuple[Hop, ...]

    @property
    def engine(self) -> str:
        return ">".join(h.engine for h in self.hops)

    @property
    def pivoted(self) -> bool:
        return len(self.hops) > 1

    @property
    def installed(self) -> bool:
        return bool(self.hops) and all(h.installed for h in self.hops)

    @property
    def license(self) -> str:
        return " AND ".join(dict.fromkeys(h.license for h in self.hops))

    @property
    def version(self) -> str:
        """The engines and their versions: what a cached translation depends on."""
        return ">".join(f"{h.engine}@{h.version}" for h in self.hops)

    @property
    def install(self) -> str:
        """What to do to install the missing hops ("" when installed)."""
        return "; ".join(dict.fromkeys(h.install for h in self.hops if h.install))


def _cost(hops: tuple[Hop, ...]) -> tuple[bool, int, int]:
    return (not all(h.installed for h in hops), max(h.rank for h in hops), len(hops))


class Router:
    """Routes pairs to the installed engines and runs the routes."""

    def __init__(
        self,
        engines: Sequence[MtEngine],
        offers: Mapping[str, Offer],
        preference: Sequence[str] = (),
    ) -> None:
        """`engines`: installed, in preference order. `offers`: every known engine,
        for describing what is missing. `preference`: the configured engines, best
        first; they rank before the others."""
        self._engines = {e.capabilities.name: e for e in engines}
        self._installed = [e.capabilities for e in engines]
        order = list(dict.fromkeys([*preference, *self._engines, *offers]))
        self._rank = {name: i for i, name in enumerate(order)}
        self._offers = [offers[n] for n in order if n in offers]
        self._preference = set(preference)

    @property
    def engines(self) -> list[MtEngine]:
        return list(self._engines.values())

    def plan(self, source: str, target: str) -> Route:
        """The route for a pair of two different product languages, installed or not."""
        candidates: list[tuple[Hop, ...]] = [(h,) for h in self._hops(source, target)]
        if ENGLISH not in (source, target):
            candidates += [
                (first, second)
                for first in self._hops(source, ENGLISH) for second in self._hops(ENGLISH, target)
            ]
        return Route(source, target, min(candidates, key=_cost, default=()))

    def route(self, source: str, target: str) -> Route:
        """The installed route for a pair, or FAILED_PRECONDITION saying what is missing."""
        route = self.plan(source, target)
        if route.installed:
            return route
        pair = f"{source}->{target}"
        if not route.hops:
            served = sorted(f"{s}->{t}" for c in self._installed for s, t in c.pairs)
            shown = ", ".join(served[:20]) + (f" and {len(served) - 20} more" if len(served) > 20 else "")
            raise FailedPrecondition(
                f"no engine installed for {pair}: no known engine translates it, directly or "
                f"through English (installed here: {shown or 'none'})"
            )
        missing = "; ".join(
            f"{h.engine} {h.source}->{h.target}: {h.install}" for h in route.hops if not h.installed
        )
        via = f" (via English: {route.engine})" if route.pivoted else ""
        raise FailedPrecondition(f"no engine installed for {pair}{via}; install {missing}")

    async def run(self, route: Route, texts: Sequence[str]) -> list[str]:
        """Translates non-empty, stripped texts along an installed route, one batch per hop."""
        return [t.text for t in await self.run_scored(route, texts)]

    async def run_scored(self, route: Route, texts: Sequence[str]) -> list[Scored]:
        """`run` with each text's confidence: the product of its hops' (a pivot is as
        sure as both its engines), None when an engine on the route gives no score."""
        out = [Scored(t, 1.0) for t in texts]
        for hop in route.hops:
            if not out:
                break
            batch = TranslationBatch(hop.source, hop.target, tuple(t.text for t in out))
            engine = self._engines[hop.engine]
            result = (await engine.translate_scored(batch) if isinstance(engine, ScoringEngine)
                      else [Scored(t) for t in await engine.translate(batch)])
            if len(result) != len(out):
                raise RuntimeError(f"{hop.engine} returned {len(result)} texts for {len(out)}")
            out = [Scored(r.text, _times(before.confidence, r.confidence))
                   for before, r in zip(out, result, strict=True)]
        return out

    async def close(self) -> None:
        """Closes every engine."""
        for engine in self._engines.values():
            await engine.close()

    def _hops(self, source: str, target: str) -> list[Hop]:
        """The best installed engine for a pair, and a better-ranked one that could be installed."""
        pair = (source, target)
        hops = [
            Hop(caps.name, source, target, caps.license, self._rank[caps.name], version=caps.version)
            for caps in self._installed if pair in caps.pairs
        ][:1]
        for offer in self._offers:
            if pair in offer.install and (not hops or self._rank[offer.name] < hops[0].rank):
                hint = f"run `{offer.install[pair]}`"
                if offer.name not in self._preference:
                    setting = offer.setting or offer.name
                    hint = f"add {setting} to settings mt.engines (DRAGOMAN_MT_ENGINES) and {hint}"
                hops.append(Hop(offer.name, source, target, offer.license, self._rank[offer.name], hint))
                break
        return hops


def _times(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a * b
