"""Finals with beam search while the model's lane is idle, greedy while other streams'
decodes wait (stt.final_beam_when_idle), on real Whisper models and FLEURS speech.

WER bounds as in test_server_whisper.py (whisper-base; what it gave on this machine
in brackets): es-002 <= 0.20 [0.00], es-003 <= 0.20 [0.00], de-003 <= 0.30 [0.13],
de-004 <= 0.35 [0.19].
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bench.stt_bench import final_paths, paths_since
from dragoman import config, rpc
from dragoman.stt.v1 import stt_pb2_grpc
from stt_svc import server, stream
from stt_svc.engines.base import DecodeOptions, SpeechRecognizer
from stt_svc.lanes import Priority
from stt_svc.loaded import Models
from stt_svc.stream import RecognizeStream, StreamConfig, StreamLimits
from tests.conftest import started
from tests.helpers import wer
from tests.stt_svc.conftest import (
    clip,
    clip_then_silence,
    final_text,
    finals,
    recognize,
    requests,
    stream_config,
    with_stt,
)

CLIPS = [("fleurs-es-002", "es", 0.20), ("fleurs-es-003", "es", 0.20),
         ("fleurs-de-003", "de", 0.30), ("fleurs-de-004", "de", 0.35)]


async def test_alone_a_final_is_the_speculative_beam_decode(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One stream: its lane is idle, so every final is decoded with beam 5; the decode that
    starts before the endpoint chooses the beam, so it is the final (not decoded again)."""
    name, language, bound = CLIPS[0]
    service = await server.create(with_stt(settings, final_beam_when_idle=True), engine=whisper_engines)
    before = final_paths()
    caplog.set_level(logging.INFO, logger="stt_svc.stream")
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            # twice real time: the speculative decode starts while audio still comes
            responses = await recognize(
                stub, requests(stream_config(language), clip_then_silence(fleurs, name)), pause_s=0.05)
    sent = [r for r in caplog.records if r.getMessage() == "final sent"]
    assert len(sent) == len(finals(responses)) >= 1
    assert {r.__dict__["path"] for r in sent} == {"idle_beam"}
    assert any(r.__dict__["speculated"] for r in sent), [r.__dict__ for r in sent]
    assert paths_since(before) == {"idle_beam": len(sent), "busy_greedy": 0, "fixed": 0,
                                    "doubt_beam": 0}
    assert wer((fleurs / f"{name}.txt").read_text(), final_text(responses)) <= bound


async def test_finals_are_greedy_while_other_streams_decodes_wait(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path
) -> None:
    """Four streams at once, audio as fast as gRPC takes it: finals that found another
    stream's decode waiting were greedy, the others beam search; every text is right."""
    service = await server.create(with_stt(settings, final_beam_when_idle=True), engine=whisper_engines)
    before = final_paths()
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            together = await asyncio.gather(*(
                recognize(stub, requests(stream_config(lang), clip_then_silence(fleurs, name)))
                for name, lang, _ in CLIPS))
    grew = paths_since(before)
    assert grew["busy_greedy"] >= 1 and grew["idle_beam"] >= 1, grew
    assert sum(grew.values()) == sum(len(finals(r)) for r in together)
    for (name, _, bound), responses in zip(CLIPS, together, strict=True):
        assert wer((fleurs / f"{name}.txt").read_text(), final_text(responses)) <= bound, name


async def test_only_other_streams_waiting_decodes_make_a_final_greedy(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path
) -> None:
    """The beam choice reads the real lane: a decode running does not count, nor one the
    stream itself queued; another's waiting decode does; the setting off is always greedy."""
    models = Models(whisper_engines, max_pending=8)
    cfg = StreamConfig(language_code="de", language="de")
    on = RecognizeStream(cfg, models, StreamLimits(final_beam_when_idle=True))
    off = RecognizeStream(cfg, models, StreamLimits(final_beam_when_idle=False))
    model = models.for_language("de")
    audio = clip(fleurs, "fleurs-de-003")
    try:
        assert on._final_beam(model) == stream.FINAL_IDLE_BEAM
        running = model.decode(audio, DecodeOptions(language="de"), Priority.FINAL)
        while model.lane.running is None:  # on the worker thread now, no longer waiting
            await asyncio.sleep(0.01)
        assert on._final_beam(model) == stream.FINAL_IDLE_BEAM
        waiting = model.decode(audio, DecodeOptions(language="de"), Priority.PARTIAL)
        assert on._final_beam(model) == 1
        assert on._final_beam(model, (waiting,)) == stream.FINAL_IDLE_BEAM
        assert off._final_beam(model) == 1
        await asyncio.gather(running, waiting)
        assert on._final_beam(model) == stream.FINAL_IDLE_BEAM
    finally:
        await models.close()


async def test_setting_off_keeps_finals_greedy(
    settings: config.Settings, whisper_engines: list[SpeechRecognizer], fleurs: Path
) -> None:
    assert not settings.stt.final_beam_when_idle  # off by default
    name, language, bound = CLIPS[0]
    service = await server.create(
        with_stt(settings, final_beam_when_idle=False), engine=whisper_engines)
    before = final_paths()
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            responses = await recognize(
                stub, requests(stream_config(language), clip_then_silence(fleurs, name)))
    assert paths_since(before) == {
        "idle_beam": 0, "busy_greedy": 0, "fixed": len(finals(responses)), "doubt_beam": 0}
    assert wer((fleurs / f"{name}.txt").read_text(), final_text(responses)) <= bound
