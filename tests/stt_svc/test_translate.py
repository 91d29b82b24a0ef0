"""Speech translation (RECOGNITION_TASK_TRANSLATE_TO_ENGLISH) over real gRPC with real Whisper.

On fleurs-de-000 ("für die besten aussichten auf hongkong sollten sie die insel
verlassen ...") whisper-base, translating, said "For the best view of Hong Kong, they
should leave the island and go over ..." on this machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import numpy as np

from dragoman import config, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import server
from stt_svc.engines.base import SpeechRecognizer
from tests.conftest import started
from tests.stt_svc.conftest import (
    Request,
    clip,
    expect_error,
    final_text,
    finals,
    partials,
    recognize,
    requests,
    silence,
    stream_config,
)

Stub = stt_pb2_grpc.SpeechToTextServiceStub
TRANSLATE = stt_pb2.RECOGNITION_TASK_TRANSLATE_TO_ENGLISH


def translating(language: str, **kwargs: object) -> stt_pb2.StreamingRecognitionConfig:
    cfg = stream_config(language, **kwargs)  # type: ignore[arg-type]
    cfg.task = TRANSLATE
    return cfg


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def test_models_say_whether_they_translate(stt: Stub) -> None:
    reply = await stt.ListModels(stt_pb2.ListModelsRequest())
    assert {m.name: m.translates_to_english for m in reply.models} == {
        "whisper-base": True, "whisper-tiny.en": False,
    }


async def test_german_speech_becomes_english_text(stt: Stub, fleurs: Path) -> None:
    audio = np.concatenate([clip(fleurs, "fleurs-de-000"), silence(2.0)])
    # at twice real time, so that partial decodes run while the speech goes on
    responses = await recognize(stt, requests(translating("de", interim=True), audio), pause_s=0.05)
    text = final_text(responses)
    heard = words(text)
    assert {"hong", "kong", "island"} <= heard, text
    assert not heard & {"die", "insel", "sollten", "verlassen", "aussichten"}, text
    assert {f.language_code for f in finals(responses)} == {"de"}
    # partials translate too: their stable prefix is what the final starts from
    assert partials(responses) and not words(" ".join(p.transcript for p in partials(responses))) & {
        "die", "insel", "sollten"}


async def test_english_only_models_cannot_translate(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path
) -> None:
    english_only = [e for e in whisper_engines if not e.capabilities.translates_to_english]
    assert [e.capabilities.name for e in english_only] == ["whisper-tiny.en"]
    service = await server.create(settings, engine=english_only)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            error = await expect_error(Stub(channel), [Request(config=translating("en"))])
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        "translating speech to English needs a multilingual Whisper model, and none is loaded "
        "(loaded: whisper-tiny.en); install one (`dragoman models install whisper-base`) and "
        "set stt.model to it")


async def test_english_speech_translated_runs_on_the_multilingual_model(stt: Stub, fleurs: Path) -> None:
    """tiny.en serves English transcription, but only whisper-base can run the task."""
    audio = np.concatenate([clip(fleurs, "fleurs-en-000"), silence(2.0)])
    responses = await recognize(stt, requests(translating("en"), audio))
    assert final_text(responses).strip()


async def test_unknown_task_is_invalid(stt: Stub) -> None:
    cfg = stream_config("de")
    cfg.task = 7  # type: ignore[assignment]
    error = await expect_error(stt, [Request(config=cfg)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.task must be" in (error.details() or "")
