"""Models hosted on Triton: each wraps one in-process engine behind a batch callable.

Each service says what it offers in its `hosted` module (stt_svc.hosted,
mt_svc.hosted, tts_svc.hosted); the tools assemble them into a host
(`dragoman_tools.triton.hosting`). The same callables serve PyTriton
(`dragoman triton`) and a stock Triton's Python backend
(deploy/triton/*/1/model.py). A callable
takes the requests of one dynamic batch, each a mapping of input name to a
[n, 1] array (n rows), and returns one mapping of output name to a [n, 1]
array per request. Every tensor is BYTES, so requests of any length share a
shape and the dynamic batcher can group them:

  stt-<model>  AUDIO (float32 little-endian samples, 16 kHz mono), OPTIONS (JSON DecodeOptions)
               -> RESULT (JSON Transcription)
  mt-<engine>  TEXT (UTF-8), PAIR ("en-pt")                        -> RESULT (JSON {"text": ...})
  tts-<engine> TEXT (UTF-8), VOICE (voice name)                    -> RESULT (JSON {"rate_hz", "lengths"}),
                                                                      AUDIO (float32 samples of every chunk)
  dragoman-info ROLE ("stt", "mt", "tts")                           -> INFO (JSON list of hosted models)

Rows are answered one by one; a row that fails gets `{"error": {"code", "message"}}`
as its RESULT and the rest of the batch is unaffected. Within one execution,
MT translates every row of a language pair in one engine call and TTS runs
its rows concurrently; STT decodes its rows in turn (Whisper windows differ
in prompt and language; a batched encoder pass is future work).

Streaming STT is stateless here: stt_svc sends each window (partial or final)
with its forced prefix, exactly as it calls an in-process engine, so no
sequence batcher or correlation id is needed and windows of every stream
batch together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragoman import errors
from dragoman.triton_client import INFO_MODEL, Hosted, bytes_rows

log = logging.getLogger(__name__)

Rows = Mapping[str, np.ndarray]
BatchCallable = Callable[[Sequence[Rows]], list[dict[str, np.ndarray]]]
MAX_BATCH_SIZE = 32
QUEUE_DELAY_US = 2000
"""How long the dynamic batcher holds a request for others to join it."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A hosted model's Triton interface: BYTES inputs and outputs, shape [-1 (batch), 1]."""

    name: str
    role: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_batch_size: int = MAX_BATCH_SIZE
    queue_delay_us: int = QUEUE_DELAY_US


def stt_spec(model: str) -> ModelSpec:
    return ModelSpec(f"stt-{model}", "stt", ("AUDIO", "OPTIONS"), ("RESULT",))


def mt_spec(engine: str) -> ModelSpec:
    return ModelSpec(f"mt-{engine}", "mt", ("TEXT", "PAIR"), ("RESULT",))


def tts_spec(engine: str) -> ModelSpec:
    return ModelSpec(f"tts-{engine}", "tts", ("TEXT", "VOICE"), ("RESULT", "AUDIO"))


INFO_SPEC = ModelSpec(INFO_MODEL, "info", ("ROLE",), ("INFO",), max_batch_size=8, queue_delay_us=0)


def spec_for(name: str) -> ModelSpec:
    """The spec of hosted model `name` ("stt-whisper-base", "mt-bergamot", "dragoman-info", ...)."""
    if name == INFO_MODEL:
        return INFO_SPEC
    role, _, engine = name.partition("-")
    makers = {"stt": stt_spec, "mt": mt_spec, "tts": tts_spec}
    if role not in makers or not engine:
        raise errors.InvalidArgument(f"unknown hosted model {name!r}: expected stt-*, mt-* or tts-*")
    return makers[role](engine)


def error_row(e: Exception) -> dict[str, Any]:
    if isinstance(e, errors.DragomanError):
        return {"error": {"code": e.code.name, "message": e.message}}
    if isinstance(e, ValueError):  # engines reject bad input (e.g. a language) with ValueError
        return {"error": {"code": "INVALID_ARGUMENT", "message": str(e)}}
    log.exception("hosted model failed")
    return {"error": {"code": "INTERNAL", "message": f"model error: {type(e).__name__}"}}


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def rows_of(request: Rows, name: str) -> list[bytes]:
    return [bytes(v) for v in np.asarray(request[name]).reshape(-1)]


class HostedModel:
    """A spec, the capabilities clients read from dragoman-info, and the batch callable."""

    def __init__(self, spec: ModelSpec, capabilities: dict[str, Any], infer: BatchCallable) -> None:
        self.spec = spec
        self.capabilities = capabilities
        self.infer = infer
        self.executions = 0
        """Batch executions so far (Triton's statistics say the same)."""

    def __call__(self, requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        self.executions += 1
        return self.infer(requests)

    @property
    def hosted(self) -> Hosted:
        return Hosted(self.spec.name, self.spec.role, self.capabilities)


def info_model(hosted: Sequence[Hosted]) -> HostedModel:
    """Lists the hosted models of a role with their capabilities (clients build engines from it)."""

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        return [
            {"INFO": bytes_rows(
                json_bytes([dataclasses.asdict(h) for h in hosted if h.role == role.decode()])
                for role in rows_of(r, "ROLE"))}
            for r in requests
        ]

    return HostedModel(INFO_SPEC, {}, infer)


def without_triton(engines: str, default: str) -> str:
    """An engine list ("bergamot,triton") less triton, or `default` when nothing is left:
    a host runs the real engines that its services reach through triton."""
    names = [n.strip() for n in engines.split(",") if n.strip() and n.strip() != "triton"]
    return ",".join(names) or default
