"""What stt_svc offers a Triton host: each Whisper model as a batch callable (dragoman.hosting)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from dragoman import config
from dragoman.hosting import HostedModel, Rows, error_row, json_bytes, rows_of, stt_spec
from dragoman.triton_client import bytes_rows
from stt_svc import engines
from stt_svc.engines.base import DecodeOptions, DecodeRequest, SpeechRecognizer

log = logging.getLogger(__name__)


def stt_model(engine: SpeechRecognizer) -> HostedModel:
    """A Whisper (or any SpeechRecognizer) engine: the rows of an execution in one
    `transcribe_batch` call where the engine has it (each answer as if decoded alone),
    else one decode per row; a row that fails alone gets its own error."""
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
            return error_row(e)

    def decode(rows: list[DecodeRequest | Exception]) -> list[dict[str, Any]]:
        good = [r for r in rows if not isinstance(r, Exception)]
        if len(good) > 1 and len(good) == len(rows):
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
        sizes = [len(rows_of(r, "AUDIO")) for r in requests]
        rows = [parsed(a, o) for r in requests
                for a, o in zip(rows_of(r, "AUDIO"), rows_of(r, "OPTIONS"), strict=True)]
        results = iter(decode(rows))
        return [{"RESULT": bytes_rows(json_bytes(next(results)) for _ in range(n))} for n in sizes]

    caps = dataclasses.asdict(engine.capabilities)
    return HostedModel(stt_spec(engine.capabilities.name), caps, infer)


def in_process(settings: config.Settings) -> config.Settings:
    """`settings` with in-process Whisper where they name triton (the host runs the real model)."""
    if settings.stt.engine != "triton":
        return settings
    return dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, engine="whisper"))


def only(settings: config.Settings, engine: str) -> config.Settings:
    """`settings` that load only model `engine` ("whisper-base"), for one Python-backend instance."""
    stt = dataclasses.replace(settings.stt, model=engine, english_model="")
    return dataclasses.replace(settings, stt=stt)


def load(settings: config.Settings) -> list[HostedModel]:
    """The configured models, loaded and wrapped. Blocking."""
    return [stt_model(e) for e in engines.load(settings)]
