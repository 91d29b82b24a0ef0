"""A deterministic engine for plumbing tests: it tags text instead of translating it.

"Hello." from en to pt becomes "Hello. [fake:en>pt]"; through a pivot the tags
pile up in route order. Never a substitute for a real engine in quality tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from mt_svc.engines.base import Capabilities, Offer, Pair, Scored, TranslationBatch

NAME = "fake"
LICENSE = "CC0-1.0"
DEFAULT_PAIRS: frozenset[Pair] = frozenset({("en", "pt"), ("pt", "en"), ("en", "es"), ("es", "en")})
OFFER = Offer(name=NAME, license=LICENSE, install={})  # nothing to install, never suggested


def tagged(text: str, source: str, target: str, name: str = NAME) -> str:
    """What the fake engine called `name` returns for `text`."""
    return f"{text} [{name}:{source}>{target}]"


class FakeEngine:
    """Tags each text with the engine name and pair.

    `gate`, when given, holds every call until it is set (to test queueing and
    cancellation without timing); `fail_with` makes every call raise it;
    `rewrite` changes each text before it is tagged (e.g. to lose a glossary
    placeholder the way a real model might); `confidence` is what it says of
    each translation (None: no score, like Bergamot).
    """

    def __init__(
        self,
        pairs: Iterable[Pair] = DEFAULT_PAIRS,
        name: str = NAME,
        license: str = LICENSE,
        gate: asyncio.Event | None = None,
        fail_with: Exception | None = None,
        rewrite: Callable[[str], str] | None = None,
        confidence: float | None = None,
    ) -> None:
        self._capabilities = Capabilities(name, "1", license, frozenset(pairs))
        self.gate = gate
        self.fail_with = fail_with
        self.rewrite = rewrite
        self.confidence = confidence
        self.calls: list[TranslationBatch] = []
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def translate(self, batch: TranslationBatch) -> list[str]:
        self.calls.append(batch)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        name = self._capabilities.name
        rewrite = self.rewrite or (lambda t: t)
        return [tagged(rewrite(t), batch.source, batch.target, name) for t in batch.texts]

    async def translate_scored(self, batch: TranslationBatch) -> list[Scored]:
        return [Scored(t, self.confidence) for t in await self.translate(batch)]

    async def close(self) -> None:
        self.closed = True
