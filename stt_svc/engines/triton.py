"""Speech recognition on a Triton server (`settings.stt.engine = "triton"`).

Each hosted `stt-<model>` (see dragoman.hosting) becomes one engine
with the hosted model's capabilities, so stt_svc picks models per language
exactly as in process. Streaming is stateless: every decode (partial or
final) sends its whole window and forced prefix, as the in-process engine
gets them; the stream's state stays in stt_svc. `transcribe` is blocking,
like every SpeechRecognizer: it runs the async Triton call on the client's
loop thread and waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from dragoman.triton_client import LoopThread, TritonClient, bytes_rows, row_results
from stt_svc.engines.base import Capabilities, DecodeOptions, DecodeRequest, Transcription, WordTiming

NAME = "triton"


class TritonSttEngine:
    """One Whisper model hosted on Triton."""

    def __init__(
        self, client: TritonClient, loop: LoopThread, model: str, capabilities: Capabilities
    ) -> None:
        self._client = client
        self._loop = loop
        self.model = model
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        return self._loop.run(self.transcribe_async(audio, options))

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        """All of them as concurrent requests, so Triton's dynamic batcher can join them."""

        async def all_of() -> list[Transcription]:
            return list(await asyncio.gather(*(self.transcribe_async(r.audio, r.options) for r in requests)))

        return self._loop.run(all_of())

    async def transcribe_async(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        inputs = {
            "AUDIO": bytes_rows([np.asarray(audio, dtype="<f4").tobytes()]),
            "OPTIONS": bytes_rows([json.dumps(dataclasses.asdict(options))]),
        }
        out = await self._client.infer(self.model, inputs, ["RESULT"])
        return _transcription(row_results(out["RESULT"])[0])

    async def not_ready(self) -> str | None:
        return await self._client.not_ready([self.model])

    async def close(self) -> None:
        """Closes the channels (the loop thread's and the caller's) and stops the loop thread;
        the engines of one `load` share them, so the second call finds nothing left to do."""
        if self._loop.loop.is_running():
            self._loop.run(self._client.close())
            self._loop.close()
        await self._client.close()


def _transcription(record: dict[str, Any]) -> Transcription:
    words = tuple(WordTiming(**w) for w in record.pop("words", ()))
    return Transcription(**record, words=words)


def load(client: TritonClient, timeout_s: float = 60.0) -> list[TritonSttEngine]:
    """One engine per STT model the Triton server hosts (blocking; waits up to `timeout_s` for it)."""
    loop = LoopThread("stt-triton")

    async def discover() -> list[TritonSttEngine]:
        from dragoman.triton_client import INFO_MODEL

        await client.wait_ready([INFO_MODEL], timeout_s)
        hosted = await client.hosted("stt")
        await client.wait_ready([h.model for h in hosted], timeout_s)
        return [
            TritonSttEngine(client, loop, h.model, Capabilities(
                **{**h.capabilities, "languages": tuple(h.capabilities["languages"])}))
            for h in hosted
        ]

    engines = loop.run(discover())
    if not engines:
        from dragoman.errors import FailedPrecondition

        raise FailedPrecondition(f"Triton at {client.options.url} hosts no speech recognition model")
    return engines
