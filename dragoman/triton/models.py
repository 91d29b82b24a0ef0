"""The models dragoman hosts on Triton: each wraps one in-process engine behind a batch callable.

The same callables serve PyTriton (`dragoman triton`, see `dragoman.triton.server`)
and a stock Triton's Python backend (deploy/triton/*/1/model.py). A callable
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

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragoman import config, errors
from dragoman.triton_client import INFO_MODEL, Hosted, LoopThread, bytes_rows

log = logging.getLogger("dragoman.triton.models")

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


def _error(e: Exception) -> dict[str, Any]:
    if isinstance(e, errors.DragomanError):
        return {"error": {"code": e.code.name, "message": e.message}}
    if isinstance(e, ValueError):  # engines reject bad input (e.g. a language) with ValueError
        return {"error": {"code": "INVALID_ARGUMENT", "message": str(e)}}
    log.exception("hosted model failed")
    return {"error": {"code": "INTERNAL", "message": f"model error: {type(e).__name__}"}}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _rows(request: Rows, name: str) -> list[bytes]:
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


# --------------------------------------------------------------------------- STT


def stt_model(engine: Any) -> HostedModel:
    """A Whisper (or any SpeechRecognizer) engine: the rows of an execution in one
    `transcribe_batch` call where the engine has it (each answer as if decoded alone),
    else one decode per row; a row that fails alone gets its own error."""
    from stt_svc.engines.base import DecodeOptions, DecodeRequest

    def request(audio: bytes, options: bytes) -> DecodeRequest:
        fields = json.loads(options)
        fields["hotwords"] = tuple(fields.get("hotwords", ()))
        fields["temperatures"] = tuple(fields.get("temperatures", (0.0,)))
        return DecodeRequest(np.frombuffer(audio, dtype="<f4"), DecodeOptions(**fields))

    def one(row: DecodeRequest | Exception) -> dict[str, Any]:
        try:
            if isinstance(row, Exception):
                raise row
            return dataclasses.asdict(engine.transcribe(row.audio, row.options))
        except Exception as e:  # noqa: BLE001 - one row's failure is that row's answer
            return _error(e)

    def decode(rows: list[DecodeRequest | Exception]) -> list[dict[str, Any]]:
        good = [r for r in rows if not isinstance(r, Exception)]
        if len(good) > 1 and len(good) == len(rows) and hasattr(engine, "transcribe_batch"):
            try:
                return [dataclasses.asdict(t) for t in engine.transcribe_batch(good)]
            except Exception:  # noqa: BLE001 - decode alone to tell which row fails
                log.info("batched decode failed; decoding the rows one by one")
        return [one(r) for r in rows]

    def parsed(audio: bytes, options: bytes) -> DecodeRequest | Exception:
        try:
            return request(audio, options)
        except Exception as e:  # noqa: BLE001 - reported as that row's answer
            return e

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        sizes = [len(_rows(r, "AUDIO")) for r in requests]
        rows = [parsed(a, o) for r in requests
                for a, o in zip(_rows(r, "AUDIO"), _rows(r, "OPTIONS"), strict=True)]
        results = iter(decode(rows))
        return [{"RESULT": bytes_rows(_json(next(results)) for _ in range(n))} for n in sizes]

    caps = dataclasses.asdict(engine.capabilities)
    return HostedModel(stt_spec(engine.capabilities.name), caps, infer)


# --------------------------------------------------------------------------- MT


def mt_model(engine: Any, loop: LoopThread) -> HostedModel:
    """An MtEngine (running on `loop`): the rows of each language pair of a batch in one engine call."""
    from mt_svc.engines.base import TranslationBatch

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
                    out[i] = _error(e)

        await asyncio.gather(*(one_pair(p, ix) for p, ix in by_pair.items()))
        return out

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        rows = [
            (t.decode(), p.decode())
            for r in requests
            for t, p in zip(_rows(r, "TEXT"), _rows(r, "PAIR"), strict=True)
        ]
        results = iter(loop.run(translate_all(rows)))
        return [
            {"RESULT": bytes_rows(_json(next(results)) for _ in range(len(_rows(r, "TEXT"))))}
            for r in requests
        ]

    caps = engine.capabilities
    record = {
        **{f.name: getattr(caps, f.name) for f in dataclasses.fields(caps) if f.name != "pairs"},
        "pairs": sorted(list(p) for p in caps.pairs),
    }
    return HostedModel(mt_spec(caps.name), record, infer)


# --------------------------------------------------------------------------- TTS


def tts_model(engine: Any, loop: LoopThread) -> HostedModel:
    """A TtsEngine (running on `loop`): every row synthesised concurrently; chunks concatenated."""
    from tts_svc.engines.base import SynthesisRequest
    voices = {v.name for v in engine.capabilities.voices}

    async def speak(text: str, voice: str) -> tuple[dict[str, Any], bytes]:
        try:
            if voice not in voices:
                raise errors.NotFound(f"voice {voice!r} is not one of {engine.capabilities.name}'s")
            chunks = [c async for c in engine.synthesize(SynthesisRequest(text, voice))]
            rate_hz = chunks[0].sample_rate_hz if chunks else 0
            audio = b"".join(np.asarray(c.samples, dtype="<f4").tobytes() for c in chunks)
            return {"rate_hz": rate_hz, "lengths": [int(c.samples.size) for c in chunks]}, audio
        except Exception as e:  # noqa: BLE001 - one row's failure is that row's answer
            return _error(e), b""

    async def speak_all(rows: list[tuple[str, str]]) -> list[tuple[dict[str, Any], bytes]]:
        return list(await asyncio.gather(*(speak(t, v) for t, v in rows)))

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        rows = [
            (t.decode(), v.decode())
            for r in requests
            for t, v in zip(_rows(r, "TEXT"), _rows(r, "VOICE"), strict=True)
        ]
        results = iter(loop.run(speak_all(rows)))
        out = []
        for r in requests:
            mine = [next(results) for _ in range(len(_rows(r, "TEXT")))]
            out.append({"RESULT": bytes_rows(_json(m) for m, _ in mine),
                        "AUDIO": bytes_rows(a for _, a in mine)})
        return out

    caps = engine.capabilities
    record = {
        **{f.name: getattr(caps, f.name) for f in dataclasses.fields(caps) if f.name != "voices"},
        "voices": [{**dataclasses.asdict(v), "gender": v.gender.name} for v in caps.voices],
    }
    return HostedModel(tts_spec(caps.name), record, infer)


# --------------------------------------------------------------------------- info


def info_model(hosted: Sequence[Hosted]) -> HostedModel:
    """Lists the hosted models of a role with their capabilities (clients build engines from it)."""

    def infer(requests: Sequence[Rows]) -> list[dict[str, np.ndarray]]:
        return [
            {"INFO": bytes_rows(
                _json([dataclasses.asdict(h) for h in hosted if h.role == role.decode()])
                for role in _rows(r, "ROLE"))}
            for r in requests
        ]

    return HostedModel(INFO_SPEC, {}, infer)


# --------------------------------------------------------------------------- loading


def in_process(settings: config.Settings) -> config.Settings:
    """`settings` with the in-process engines wherever they name triton (the host loads real ones)."""
    stt = settings.stt
    if stt.engine == "triton":
        stt = dataclasses.replace(stt, engine="whisper")
    mt_names = [n for n in settings.mt.engines.split(",") if n.strip() and n.strip() != "triton"]
    tts_names = [n for n in settings.tts.engines.split(",") if n.strip() and n.strip() != "triton"]
    return dataclasses.replace(
        settings, stt=stt,
        mt=dataclasses.replace(settings.mt, engines=",".join(mt_names) or "bergamot"),
        tts=dataclasses.replace(settings.tts, engines=",".join(tts_names) or "piper,kokoro"),
    )


def load(settings: config.Settings, roles: Sequence[str] = ("stt", "mt", "tts")) -> list[HostedModel]:
    """Loads and warms up the configured engines of `roles` and wraps each as a hosted model,
    plus dragoman-info. Blocking."""
    settings = in_process(settings)
    hosted: list[HostedModel] = []
    if "stt" in roles:
        from stt_svc import engines as stt_engines

        hosted += [stt_model(e) for e in stt_engines.load(settings)]
    if "mt" in roles:
        loop = LoopThread("triton-mt")
        hosted += [mt_model(e, loop) for e in loop.run(_mt_engines(settings))]
    if "tts" in roles:
        loop = LoopThread("triton-tts")
        hosted += [tts_model(e, loop) for e in loop.run(_tts_engines(settings))]
    return [*hosted, info_model([h.hosted for h in hosted])]


async def _mt_engines(settings: config.Settings) -> list[Any]:
    """The configured MT engines, loaded and warmed up on the loop that will run them."""
    from mt_svc import engines as registry
    from mt_svc.server import warm_up

    names = registry.configured(settings.mt.engines)
    engines = await asyncio.to_thread(registry.load, names, settings.models_dir)
    await warm_up(engines)
    return engines


async def _tts_engines(settings: config.Settings) -> list[Any]:
    """The configured TTS engines, loaded and warmed up on the loop that will run them."""
    from concurrent.futures import ThreadPoolExecutor

    from tts_svc import engines as registry
    from tts_svc.engines.base import SynthesisRequest
    from tts_svc.pipeline import WARM_UP_TEXT

    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="triton-tts")
    engines = await registry.load(settings, executor)
    for engine in engines:
        voice = engine.capabilities.voices[0]
        text = WARM_UP_TEXT.get(voice.language_code.split("-")[0].lower(), "Hello.")
        async for _ in engine.synthesize(SynthesisRequest(text, voice.name)):
            pass
    return engines


def load_one(settings: config.Settings, name: str) -> HostedModel:
    """Loads only the engine behind hosted model `name` ("stt-whisper-base", "mt-bergamot", ...),
    for a Triton Python-backend instance. Blocking."""
    role, engine = spec_for(name).role, name.partition("-")[2]
    settings = in_process(settings)
    if role == "stt":
        settings = dataclasses.replace(
            settings, stt=dataclasses.replace(settings.stt, model=engine, english_model=""))
    elif role == "mt":
        settings = dataclasses.replace(settings, mt=dataclasses.replace(settings.mt, engines=engine))
    else:
        settings = dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, engines=engine))
    found = [m for m in load(settings, [role]) if m.spec.name == name]
    if not found:
        raise errors.FailedPrecondition(f"hosted model {name!r} could not be loaded here")
    return found[0]
