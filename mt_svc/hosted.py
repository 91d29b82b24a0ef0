"""What mt_svc offers a Triton host: each MT engine as a batch callable (dragoman.hosting)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from dragoman import config, errors
from dragoman.hosting import HostedModel, Rows, error_row, json_bytes, mt_spec, rows_of, without_triton
from dragoman.triton_client import LoopThread, bytes_rows
from mt_svc import engines as registry
from mt_svc.engines.base import TranslationBatch
from mt_svc.server import warm_up


def mt_model(engine: Any, loop: LoopThread) -> HostedModel:
    """An MtEngine (running on `loop`): the rows of each language pair of a batch in one engine call."""
    async def translate_all(rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in rows]
        by_pair: dict[str, list[int]] = {}
        for i, (_, pair) in enumerate(rows):
            by_pair.setdefault(pair, []).append(i)

        async def one_pair(pair: str, indices: list[int]) -> None:
            try:
                source, _, target = pair.partition("-")
                if (source, target) not in engine.capabilities.pairs:
                    raise errors.InvalidArgument(f"{engine.capabilities.name} does not translate {pair}")
                texts = tuple(rows[i][0] for i in indices)
                done = await engine.translate(TranslationBatch(source, target, texts))
                for i, text in zip(indices, done, strict=True):
                    out[i] = {"text": text}
            except Exception as e:  # noqa: BLE001 - that pair's rows get the error
                for i in indices:
                    out[i] = error_row(e)

        await asyncio.gather(*(one_pair(p, ix) for p, ix in by_pair.items()))
        return out

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        rows = [
            (t.decode(), p.decode())
            for r in requests
            for t, p in zip(rows_of(r, "TEXT"), rows_of(r, "PAIR"), strict=True)
        ]
        results = iter(loop.run(translate_all(rows)))
        return [
            {"RESULT": bytes_rows(json_bytes(next(results)) for _ in range(len(rows_of(r, "TEXT"))))}
            for r in requests
        ]

    caps = engine.capabilities
    record = {
        **{f.name: getattr(caps, f.name) for f in dataclasses.fields(caps) if f.name != "pairs"},
        "pairs": sorted(list(p) for p in caps.pairs),
    }
    return HostedModel(mt_spec(caps.name), record, infer)


def in_process(settings: config.Settings) -> config.Settings:
    """`settings` without the triton engine (the host runs the real ones)."""
    mt = dataclasses.replace(settings.mt, engines=without_triton(settings.mt.engines, "bergamot"))
    return dataclasses.replace(settings, mt=mt)


def only(settings: config.Settings, engine: str) -> config.Settings:
    """`settings` that load only `engine` ("bergamot"), for one Python-backend instance."""
    return dataclasses.replace(settings, mt=dataclasses.replace(settings.mt, engines=engine))


def load(settings: config.Settings) -> list[HostedModel]:
    """The configured engines, loaded, warmed up and wrapped, each on one loop thread. Blocking."""
    loop = LoopThread("triton-mt")
    return [mt_model(e, loop) for e in loop.run(_engines(settings))]


async def _engines(settings: config.Settings) -> list[Any]:
    """The configured engines, loaded and warmed up on the loop that will run them."""
    names = registry.configured(settings.mt.engines)
    engines = await asyncio.to_thread(registry.load, names, settings.models_dir)
    await warm_up(engines)
    return engines
