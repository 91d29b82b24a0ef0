"""Greedy finals that the decoder doubts are decoded again with beam 5
(stt.final_beam_when_doubtful), confident ones are not: real whisper-base, FLEURS speech.

Streamed greedy finals' confidence on this machine (bench/results/stt_confidence.md):
fleurs-es-002 0.92 0.90, fleurs-fr-003 0.63; the threshold 0.8 lies between them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench.stt_bench import final_paths, paths_since
from dragoman import config, rpc
from dragoman.stt.v1 import stt_pb2_grpc
from stt_svc import server
from stt_svc.engines.base import SpeechRecognizer
from tests.conftest import started
from tests.stt_svc.conftest import (
    clip_then_silence,
    finals,
    recognize,
    requests,
    stream_config,
    with_stt,
)

THRESHOLD = 0.8


async def test_only_doubtful_finals_are_decoded_again_with_the_beam(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await server.create(
        with_stt(settings, final_beam_when_doubtful=THRESHOLD), engine=whisper_engines)
    caplog.set_level(logging.INFO, logger="stt_svc.stream")
    grew: dict[str, dict[str, int]] = {}
    sent: dict[str, list[logging.LogRecord]] = {}
    doubted: dict[str, list[logging.LogRecord]] = {}
    results = {}
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            for name, language in (("fleurs-es-002", "es"), ("fleurs-fr-003", "fr")):
                caplog.clear()
                before = final_paths()
                responses = await recognize(
                    stub, requests(stream_config(language), clip_then_silence(fleurs, name)))
                grew[name] = paths_since(before)
                results[name] = finals(responses)
                sent[name] = [r for r in caplog.records if r.getMessage() == "final sent"]
                doubted[name] = [r for r in caplog.records
                                 if r.getMessage() == "doubtful final decoded again"]
    confident, doubtful = "fleurs-es-002", "fleurs-fr-003"
    assert results[confident] and grew[confident]["doubt_beam"] == 0, grew
    assert grew[confident]["fixed"] == len(results[confident])
    assert all(f.confidence >= THRESHOLD for f in results[confident])
    assert grew[doubtful]["doubt_beam"] >= 1, grew
    assert len(doubted[doubtful]) == grew[doubtful]["doubt_beam"]
    assert all(r.__dict__["confidence"] < THRESHOLD for r in doubted[doubtful])
    paths = [r.__dict__["path"] for r in sent[doubtful]]
    assert paths.count("doubt_beam") == grew[doubtful]["doubt_beam"], paths
    # the reading kept has the higher mean log-probability of the two
    for r in doubted[doubtful]:
        assert r.__dict__["logprob_beam"] is not None
        assert r.__dict__["kept_beam"] == (r.__dict__["logprob_beam"] > r.__dict__["logprob"])
    # a greedy final that was not re-decoded was a confident one
    for f, r in zip(results[doubtful], sent[doubtful], strict=True):
        if r.__dict__["path"] == "fixed":
            assert f.confidence >= THRESHOLD, f


async def test_threshold_zero_never_decodes_again(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path
) -> None:
    service = await server.create(
        with_stt(settings, final_beam_when_doubtful=0.0), engine=whisper_engines)
    before = final_paths()
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            responses = await recognize(
                stub, requests(stream_config("fr"), clip_then_silence(fleurs, "fleurs-fr-003")))
    grew = paths_since(before)
    assert grew["doubt_beam"] == 0 and grew["fixed"] == len(finals(responses)) >= 1, grew
