"""Language-pair routing to engines, pivoting through English, and running a route.

For a pair (source, target) the route is the first installed engine, in
preference order, that translates it directly; failing that, source -> English
with one engine and English -> target with another ("apertium>bergamot").
Pairs with no installed route are still described (`plan`): which engines would
serve them and what to install, so a caller gets FAILED_PRECONDITION naming
the missing piece instead of silence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dragoman.errors import FailedPrecondition
from mt_svc.engines.base import MtEngine, Offer, TranslationBatch
from mt_svc.languages import ENGLISH
from mt_svc.text import Framed

IDENTITY = "identity"


@dataclass(frozen=True, slots=True)
class Hop:
    """One engine translating one pair; `install` is how to get it when it is missing."""

    engine: str
    source: str
    target: str
    license: str
    install: str = ""

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


@dataclass(frozen=True, slots=True)
class Result:
    """Translations of a batch, in order, and the route that made them."""

    texts: list[str]
    engine: str
    pivoted: bool


class Router:
    """Routes pairs to the installed engines and runs the routes."""

    def __init__(
        self,
        engines: Sequence[MtEngine],
        offers: Mapping[str, Offer],
        preference: Sequence[str] = (),
    ) -> None:
        """`engines`: installed, in preference order. `offers`: every known engine,
        for describing what is missing; engines named in `preference` (the
        configured ones) are suggested before the others."""
        self._engines = {e.capabilities.name: e for e in engines}
        self._installed = [e.capabilities for e in engines]
        names = [*self._engines, *preference, *offers]
        self._offers = [offers[n] for n in dict.fromkeys(names) if n in offers]
        self._preference = list(preference)

    @property
    def engines(self) -> list[MtEngine]:
        return list(self._engines.values())

    def plan(self, source: str, target: str) -> Route:
        """The route for a pair of two different product languages, installed or not."""
        candidates = [h for h in (self._direct(source, target), self._pivot(source, target)) if h]
        installed = [hops for hops in candidates if all(h.installed for h in hops)]
        return Route(source, target, next(iter(installed or candidates), ()))

    def route(self, source: str, target: str) -> Route:
        """The installed route for a pair, or FAILED_PRECONDITION saying what is missing."""
        route = self.plan(source, target)
        if route.installed:
            return route
        pair = f"{source}->{target}"
        if not route.hops:
            served = sorted(f"{s}->{t}" for c in self._installed for s, t in c.pairs)
            raise FailedPrecondition(
                f"no engine installed for {pair}: no known engine translates it, directly or "
                f"through English (installed here: {', '.join(served) or 'none'})"
            )
        missing = "; ".join(
            f"{h.engine} {h.source}->{h.target}: {h.install}" for h in route.hops if not h.installed
        )
        via = f" (via English: {route.engine})" if route.pivoted else ""
        raise FailedPrecondition(f"no engine installed for {pair}{via}; install {missing}")

    async def translate(self, source: str, target: str, segments: Sequence[str]) -> Result:
        """Translates segments, keeping each one's leading and trailing whitespace.

        Whitespace-only segments come back unchanged; same source and target
        returns the segments as they are (engine "identity").
        """
        if source == target:
            return Result(list(segments), IDENTITY, False)
        route = self.route(source, target)
        framed = [Framed.of(s) for s in segments]
        cores = tuple(f.core for f in framed if f.core)
        for hop in route.hops:
            if cores:
                batch = TranslationBatch(hop.source, hop.target, cores)
                out = await self._engines[hop.engine].translate(batch)
                if len(out) != len(cores):
                    raise RuntimeError(f"{hop.engine} returned {len(out)} texts for {len(cores)}")
                cores = tuple(out)
        done = iter(cores)
        texts = [f.wrap(next(done)) if f.core else f.lead for f in framed]
        return Result(texts, route.engine, route.pivoted)

    async def close(self) -> None:
        """Closes every engine."""
        for engine in self._engines.values():
            await engine.close()

    def _direct(self, source: str, target: str) -> tuple[Hop, ...]:
        hop = self._hop(source, target)
        return (hop,) if hop else ()

    def _pivot(self, source: str, target: str) -> tuple[Hop, ...]:
        if ENGLISH in (source, target):
            return ()
        first, second = self._hop(source, ENGLISH), self._hop(ENGLISH, target)
        if first is None or second is None:
            return ()
        return first, second

    def _hop(self, source: str, target: str) -> Hop | None:
        """The installed engine for a pair, else the first known engine that offers it."""
        pair = (source, target)
        for caps in self._installed:
            if pair in caps.pairs:
                return Hop(caps.name, source, target, caps.license)
        for offer in self._offers:
            if pair in offer.install:
                hint = offer.install[pair]
                if offer.name not in self._preference:
                    hint = f"add {offer.name} to settings mt.engines (DRAGOMAN_MT_ENGINES) and {hint}"
                return Hop(offer.name, source, target, offer.license, hint)
        return None
