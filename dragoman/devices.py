"""Where the model engines run: `cpu` (the default) or `cuda` / `cuda:N` (an NVIDIA GPU).

One setting per role (`stt.device`, `mt.device`, `tts.device`) and one parser,
so every engine reads a device the same way and a GPU that is asked for but
not there fails at load with FAILED_PRECONDITION naming what is missing,
instead of running on the CPU unnoticed. On a GPU machine these are the
settings of the process that hosts the engines: `dragoman triton` (the
production path) or a service with its engines in process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dragoman.errors import FailedPrecondition, InvalidArgument

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


@dataclass(frozen=True, slots=True)
class Device:
    kind: str
    """"cpu" or "cuda"."""
    index: int = 0
    """GPU ordinal for cuda."""

    @property
    def gpu(self) -> bool:
        return self.kind == "cuda"

    @classmethod
    def parse(cls, text: str, setting: str) -> Device:
        """`cpu`, `cuda` or `cuda:N`; anything else is INVALID_ARGUMENT naming `setting`."""
        match = _DEVICE.fullmatch(text.strip().lower())
        if match is None or (match[1] == "cpu" and match[2] is not None):
            raise InvalidArgument(f"setting {setting}: {text!r} is not a device; use cpu, cuda or cuda:N")
        return cls(match[1], int(match[2] or 0))

    def ctranslate2(self) -> tuple[str, int]:
        """(device, device_index) for CTranslate2 (faster-whisper, the MT models)."""
        if not self.gpu:
            return "cpu", 0
        import ctranslate2

        count = ctranslate2.get_cuda_device_count()
        if self.index >= count:
            raise FailedPrecondition(
                f"device cuda:{self.index} asked for, but CTranslate2 sees {count} CUDA device(s) "
                "on this machine (driver and CUDA 12 libraries installed?)")
        return "cuda", self.index

    def onnx_providers(self) -> list[Any]:
        """ONNX Runtime execution providers (the TTS models)."""
        if not self.gpu:
            return ["CPUExecutionProvider"]
        import onnxruntime

        available = onnxruntime.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise FailedPrecondition(
                f"device cuda:{self.index} asked for, but this ONNX Runtime has no CUDA provider "
                f"(it has {', '.join(available)}): install onnxruntime-gpu")
        return [("CUDAExecutionProvider", {"device_id": self.index}), "CPUExecutionProvider"]
