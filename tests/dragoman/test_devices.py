"""The device setting: parsed once, and a GPU that is not there is a clear FAILED_PRECONDITION."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dragoman import config
from dragoman.devices import Device
from dragoman.errors import FailedPrecondition, InvalidArgument


@pytest.mark.parametrize(("text", "device"), [
    ("cpu", Device("cpu")), (" CUDA ", Device("cuda", 0)), ("cuda:1", Device("cuda", 1)),
])
def test_parse(text: str, device: Device) -> None:
    assert Device.parse(text, "stt.device") == device


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "cuda:", "cuda:x", "", "mps"])
def test_parse_rejects_what_is_not_a_device(text: str) -> None:
    expected = r"setting tts\.device: .* is not a device; use cpu, cuda or cuda:N"
    with pytest.raises(InvalidArgument, match=expected):
        Device.parse(text, "tts.device")


def test_cpu_needs_nothing() -> None:
    assert Device("cpu").ctranslate2() == ("cpu", 0)
    assert Device("cpu").onnx_providers() == ["CPUExecutionProvider"]


def test_a_missing_gpu_is_failed_precondition_not_a_silent_cpu_run() -> None:
    """This machine has no GPU (and the CPU builds of CTranslate2 and ONNX Runtime)."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        with pytest.raises(FailedPrecondition, match=r"cuda:0 asked for, but CTranslate2 sees 0 CUDA"):
            Device("cuda").ctranslate2()
    with pytest.raises(FailedPrecondition, match=r"cuda:7 asked for"):
        Device("cuda", 7).ctranslate2()
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(FailedPrecondition, match="install onnxruntime-gpu"):
            Device("cuda").onnx_providers()


@pytest.mark.models
async def test_engines_refuse_a_gpu_that_is_not_there(settings: config.Settings, models_dir: Path) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import ctranslate2

    from stt_svc import engines as stt_engines
    from tts_svc import engines as tts_engines

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a GPU is here: the refusal is for machines without one")
    on_gpu = dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, device="cuda"),
                                 tts=dataclasses.replace(settings.tts, engines="kokoro", device="cuda"))
    with pytest.raises(FailedPrecondition, match="CUDA"):
        await asyncio.to_thread(stt_engines.load, on_gpu)
    with ThreadPoolExecutor(1) as pool, pytest.raises(FailedPrecondition, match="onnxruntime-gpu"):
        await tts_engines.load(on_gpu, pool)
