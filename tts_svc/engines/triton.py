"""Speech synthesis on a Triton server (`triton` in settings.tts.engines).

Each hosted `tts-<engine>` (Piper, Kokoro; see dragoman.hosting)
becomes one engine with the hosted engine's name and voices. One piece of
text is one request; Triton returns all of its audio with the length of
each chunk the engine produced, and the chunks are yielded as the engine
in process yields them (Piper: one per sentence).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from dragoman.errors import FailedPrecondition
from dragoman.triton_client import INFO_MODEL, TritonClient, bytes_rows, row_results
from tts_svc.engines.base import AudioChunk, Capabilities, Gender, SynthesisRequest, Voice

NAME = "triton"


class TritonTtsEngine:
    """One TTS engine hosted on Triton."""

    def __init__(self, client: TritonClient, model: str, capabilities: Capabilities) -> None:
        self._client = client
        self.model = model
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        out = await self._client.infer(
            self.model,
            {"TEXT": bytes_rows([request.text]), "VOICE": bytes_rows([request.voice])},
            ["RESULT", "AUDIO"],
        )
        meta = row_results(out["RESULT"])[0]
        samples = np.frombuffer(bytes(out["AUDIO"].reshape(-1)[0]), dtype="<f4").astype(np.float32)
        start = 0
        for length in meta["lengths"]:
            yield AudioChunk(samples[start : start + length], int(meta["rate_hz"]))
            start += length

    async def not_ready(self) -> str | None:
        return await self._client.not_ready([self.model])

    async def close(self) -> None:
        await self._client.close()


def _voice(record: dict[str, object]) -> Voice:
    return Voice(**{**record, "gender": Gender[str(record["gender"])]})  # type: ignore[arg-type]


async def load(client: TritonClient, timeout_s: float = 60.0) -> list[TritonTtsEngine]:
    """One engine per TTS engine the Triton server hosts (waits up to `timeout_s` for Triton)."""
    await client.wait_ready([INFO_MODEL], timeout_s)
    hosted = await client.hosted("tts")
    if not hosted:
        raise FailedPrecondition(f"Triton at {client.options.url} hosts no speech synthesis engine")
    await client.wait_ready([h.model for h in hosted], timeout_s)
    return [
        TritonTtsEngine(
            client,
            h.model,
            Capabilities(**{
                **h.capabilities,
                "version": f"{h.capabilities['version']} on Triton",
                "speeds": False,  # the hosted model's inputs are text and voice only
                "voices": tuple(_voice(v) for v in h.capabilities["voices"]),
            }),
        )
        for h in hosted
    ]
