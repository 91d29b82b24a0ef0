"""The engines mt_svc knows, what each could serve, and loading the configured ones."""

from __future__ import annotations

import logging
from collections.abc import Callable

from dragoman.errors import DragomanError, InvalidArgument
from mt_svc.engines import apertium, bergamot, fake
from mt_svc.engines.base import MtEngine, Offer

log = logging.getLogger("mt_svc.engines")

OFFERS: dict[str, Offer] = {o.name: o for o in (bergamot.OFFER, apertium.OFFER, fake.OFFER)}
"""Every known engine and the pairs it can serve once installed."""

_FACTORIES: dict[str, Callable[[], MtEngine]] = {
    bergamot.NAME: bergamot.BergamotEngine,
    apertium.NAME: apertium.ApertiumEngine,
    fake.NAME: fake.FakeEngine,
}


def configured(engines: str) -> list[str]:
    """The engine names of `settings.mt.engines` ("bergamot,apertium"), in order."""
    names = [n.strip().lower() for n in engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in OFFERS]
    if unknown:
        raise InvalidArgument(
            f"setting mt.engines: unknown engine(s) {', '.join(unknown)}; "
            f"known: {', '.join(OFFERS)}"
        )
    return list(dict.fromkeys(names))


def load(names: list[str]) -> list[MtEngine]:
    """Builds each named engine that is installed here; logs why the others are not.

    Blocking (loads models, starts nothing yet): call it off the event loop.
    """
    loaded: list[MtEngine] = []
    for name in names:
        try:
            engine = _FACTORIES[name]()
        except DragomanError as e:
            log.warning("engine %s not available: %s", name, e.message)
            continue
        caps = engine.capabilities
        log.info(
            "engine %s loaded", name,
            extra={"version": caps.version, "pairs": sorted(f"{s}-{t}" for s, t in caps.pairs)},
        )
        loaded.append(engine)
    return loaded
