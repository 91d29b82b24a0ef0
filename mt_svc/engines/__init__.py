"""The engines mt_svc knows, what each could serve, and loading the configured ones.

settings.mt.engines names engines in order of preference; `ct2` stands for
every model pulled with `dragoman models pull`, each its own engine (named
after the model), in the catalogue's order (OPUS-MT, then M2M-100, then
MADLAD-400, then NLLB-200).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from dragoman import config
from dragoman.errors import DragomanError, InvalidArgument
from mt_svc.engines import apertium, bergamot, ct2, fake
from mt_svc.engines.base import MtEngine, Offer

log = logging.getLogger(__name__)

OFFERS: dict[str, Offer] = {
    **{o.name: o for o in (bergamot.OFFER, apertium.OFFER, fake.OFFER)},
    **ct2.offers(),
}
"""Every known engine and the pairs it can serve once installed."""

_FACTORIES: dict[str, Callable[[], MtEngine]] = {
    bergamot.NAME: bergamot.BergamotEngine,
    apertium.NAME: apertium.ApertiumEngine,
    fake.NAME: fake.FakeEngine,
}
KNOWN = (*_FACTORIES, ct2.GROUP, "triton")
"""The names settings.mt.engines accepts."""


def configured(engines: str) -> list[str]:
    """The engine names of `settings.mt.engines` ("bergamot,ct2,apertium"), in order."""
    names = [n.strip().lower() for n in engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise InvalidArgument(
            f"setting mt.engines: unknown engine(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}"
        )
    return list(dict.fromkeys(names))


def preference(names: Sequence[str]) -> list[str]:
    """Configured names with `ct2` expanded into the catalogue's models, for ranking routes."""
    return [n for name in names for n in (ct2.names() if name == ct2.GROUP else [name])]


def load(
    names: Sequence[str],
    models_dir: str | os.PathLike[str] | None = None,
    decode: ct2.DecodeOptions | None = None,
    triton: config.TritonSettings | None = None,
    tls: config.TlsSettings | None = None,
) -> list[MtEngine]:
    """Builds each named engine that is installed here; logs why the others are not.
    `triton` and `tls` say how to reach the Triton server of engine `triton`.

    `ct2` loads every usable model pulled into `models_dir`. Blocking (loads
    models, starts nothing yet): call it off the event loop.
    """
    loaded: list[MtEngine] = []
    for name in names:
        if name == "triton":  # the engines hosted by a Triton server, under their own names
            from dragoman.triton_client import TritonClient
            from mt_svc.engines import triton as on_triton

            triton = triton or config.TritonSettings()
            loaded.extend(on_triton.load_blocking(TritonClient(triton, tls), triton.ready_timeout_s))
            continue
        if name == ct2.GROUP:
            group = ct2.load_installed(models_dir, decode) if models_dir is not None else []
            if not group:
                log.warning("engine group ct2: no usable model pulled into %s "
                            "(run `dragoman models pull NAME`)", models_dir)
            loaded.extend(group)
            continue
        try:
            loaded.append(_FACTORIES[name]())
        except DragomanError as e:
            log.warning("engine %s not available: %s", name, e.message)
    for engine in loaded:
        caps = engine.capabilities
        log.info(
            "engine %s loaded", caps.name,
            extra={"version": caps.version, "pairs": len(caps.pairs)},
        )
    return loaded
