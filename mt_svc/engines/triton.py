"""Text translation on a Triton server (`triton` in settings.mt.engines).

Each hosted `mt-<engine>` (Bergamot, CT2 models; see dragoman.hosting)
becomes one engine with the hosted engine's name and pairs, so routes,
`Translation.engine` and the cache behave as with the engine in process. A
batch goes to Triton as one request of n rows; Triton's dynamic batcher
joins it with concurrent requests of the same model.
"""

from __future__ import annotations

import asyncio

from dragoman.errors import FailedPrecondition
from dragoman.triton_client import INFO_MODEL, TritonClient, bytes_rows, row_results
from mt_svc.engines.base import Capabilities, TranslationBatch

NAME = "triton"
MAX_ROWS = 32
"""Rows per request: the hosted models' max_batch_size (dragoman.hosting.MAX_BATCH_SIZE)."""


class TritonMtEngine:
    """One MT engine hosted on Triton."""

    def __init__(self, client: TritonClient, model: str, capabilities: Capabilities) -> None:
        self._client = client
        self.model = model
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def translate(self, batch: TranslationBatch) -> list[str]:
        """The texts in requests of at most MAX_ROWS rows (the model's max_batch_size), concurrently."""
        parts = [batch.texts[i:i + MAX_ROWS] for i in range(0, len(batch.texts), MAX_ROWS)]
        done = await asyncio.gather(*(self._translate(batch.source, batch.target, p) for p in parts))
        return [text for part in done for text in part]

    async def _translate(self, source: str, target: str, texts: tuple[str, ...]) -> list[str]:
        out = await self._client.infer(
            self.model,
            {"TEXT": bytes_rows(texts), "PAIR": bytes_rows([f"{source}-{target}"] * len(texts))},
            ["RESULT"],
        )
        return [r["text"] for r in row_results(out["RESULT"])]

    async def not_ready(self) -> str | None:
        return await self._client.not_ready([self.model])

    async def close(self) -> None:
        await self._client.close()


async def load(client: TritonClient, timeout_s: float = 60.0) -> list[TritonMtEngine]:
    """One engine per MT engine the Triton server hosts (waits up to `timeout_s` for Triton)."""
    await client.wait_ready([INFO_MODEL], timeout_s)
    hosted = await client.hosted("mt")
    if not hosted:
        raise FailedPrecondition(f"Triton at {client.options.url} hosts no translation engine")
    await client.wait_ready([h.model for h in hosted], timeout_s)
    return [
        TritonMtEngine(client, h.model, Capabilities(**{
            **h.capabilities,
            "version": f"{h.capabilities['version']} on Triton",
            "pairs": frozenset((s, t) for s, t in h.capabilities["pairs"]),
        }))
        for h in hosted
    ]


def load_blocking(client: TritonClient, timeout_s: float = 60.0) -> list[TritonMtEngine]:
    """`load` for the blocking registry (run off the event loop): the channel of the discovery
    loop is closed again; each engine opens one on the service's loop at its first call."""

    async def discover() -> list[TritonMtEngine]:
        try:
            return await load(client, timeout_s)
        finally:
            await client.close()

    return asyncio.run(discover())
