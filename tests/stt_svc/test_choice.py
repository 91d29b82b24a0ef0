"""The model of each language: chosen from what is installed ("auto") or named in the
settings, and reported by ListModels of a real stt_svc on loopback with real Whisper models."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from dragoman import config, rpc
from dragoman.catalog import catalogue, packaged
from dragoman.errors import InvalidArgument
from dragoman.languages import SUPPORTED
from dragoman.packs import SttChoice, entries, stt_choice
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman_tools import pull
from dragoman_tools.pull import Hub
from stt_svc import engines, server
from stt_svc.engines.base import SpeechRecognizer
from tests.conftest import started
from tests.dragoman_tools.test_pull_roles import WHISPER, fake_hub, repos  # noqa: F401 - fixtures
from tests.fakehub import FakeHub
from tests.stt_svc.conftest import with_stt

AUTO = "auto: the strongest installed model that runs on cpu within the latency budget"


async def _listed(settings: config.Settings, loaded: Sequence[SpeechRecognizer],
                  choice: SttChoice) -> dict[str, tuple[list[str], str]]:
    service = await server.create(settings, engine=loaded, choice=choice)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            reply = await stub.ListModels(stt_pb2.ListModelsRequest())
    return {m.name: (list(m.chosen_language_codes), m.reason) for m in reply.models}


async def test_a_model_ranked_above_base_wins_its_language(
    settings: config.Settings, models_dir: Path, whisper_engines: list[SpeechRecognizer]
) -> None:
    """A catalogue where tiny.en ranks above base (as a stronger English model would)."""
    ranked = catalogue.build([
        packaged.CATALOGUE["whisper-base"],
        dataclasses.replace(packaged.CATALOGUE["whisper-tiny.en"], rank=30),
    ], [])
    choice = stt_choice(entries(models_dir, ranked), "cpu", "auto", "auto")
    assert choice.names == ["whisper-base", "whisper-tiny.en"]
    others = sorted(lang for lang in SUPPORTED if lang != "en")
    assert await _listed(settings, whisper_engines, choice) == {
        "whisper-base": (others, AUTO),
        "whisper-tiny.en": (["en"], AUTO),
    }


async def test_the_real_ranks_give_english_to_base_unless_the_setting_names_tiny(
    settings: config.Settings, models_dir: Path, whisper_engines: list[SpeechRecognizer]
) -> None:
    auto = engines.choice(with_stt(settings, model="auto", english_model="auto"))
    assert auto.names == ["whisper-base"] and auto.for_language("en") == "whisper-base"
    listed = await _listed(settings, whisper_engines, auto)
    assert listed["whisper-base"] == (sorted(SUPPORTED), AUTO)
    assert listed["whisper-tiny.en"][0] == []  # loaded by the fixture, chosen for nothing

    default = engines.choice(settings)  # english_model "": English follows model (auto)
    assert default.names == ["whisper-base"] and default.for_language("en") == "whisper-base"

    tiny = engines.choice(with_stt(settings, english_model="whisper-tiny.en"))
    assert tiny.names == ["whisper-base", "whisper-tiny.en"]
    listed = await _listed(settings, whisper_engines, tiny)
    assert listed["whisper-tiny.en"] == (["en"], "setting stt.english_model")

    named = engines.choice(with_stt(settings, model="whisper-base", english_model=""))
    assert named.names == ["whisper-base"] and named.reasons == {"whisper-base": "setting stt.model"}


def test_auto_needs_an_installed_multilingual_model(settings: config.Settings, tmp_path: Path) -> None:
    empty = dataclasses.replace(settings, models_dir=str(tmp_path))
    with pytest.raises(InvalidArgument, match="no multilingual speech model for cpu is installed"):
        engines.choice(empty)


async def test_a_pulled_whisper_ranked_above_base_is_chosen_where_the_device_runs_it(
    tmp_path: Path, models_dir: Path, fake_hub: FakeHub, settings: config.Settings,  # noqa: F811
) -> None:
    """The tiny whisper-small of the fake hub, pulled beside whisper-base: on a CPU it is past
    the latency budget and base keeps every language; for a GPU host it wins every language
    (served here on the CPU, which is what this machine has)."""
    out = io.StringIO()
    await asyncio.to_thread(pull.pull, tmp_path, WHISPER.name, hub=Hub(fake_hub.url), out=out)
    (tmp_path / "whisper-base").symlink_to(models_dir / "whisper-base")
    local = with_stt(dataclasses.replace(settings, models_dir=str(tmp_path)), engine="whisper",
                     model="auto", english_model="auto", cpu_threads=1)
    on_cpu = engines.choice(local)
    assert on_cpu.names == ["whisper-base"]
    on_gpu = stt_choice(entries(tmp_path), "cuda", "auto", "auto")
    assert on_gpu.names == ["whisper-small"] and on_gpu.for_language("de") == "whisper-small"
    loaded = await asyncio.to_thread(engines.load, with_stt(local, model=WHISPER.name, english_model=""))
    gpu_reason = AUTO.replace("on cpu", "on cuda")
    assert await _listed(local, loaded, on_gpu) == {WHISPER.name: (sorted(SUPPORTED), gpu_reason)}
