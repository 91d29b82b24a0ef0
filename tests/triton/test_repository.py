"""deploy/triton is what the generator writes, and its Python-backend adapter answers like PyTriton."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dragoman import hosting
from dragoman.triton_client import bytes_rows
from dragoman_tools.triton import repository

REPO = Path(__file__).resolve().parents[2] / "deploy" / "triton"


def _python_models() -> list[Path]:
    return sorted(p.parent for p in REPO.glob("*/config.pbtxt") if 'backend: "python"' in p.read_text())


def test_every_python_model_matches_its_spec() -> None:
    folders = _python_models()
    assert {f.name for f in folders} >= {"stt-whisper-base", "mt-bergamot", "tts-kokoro", "dragoman-info"}
    for folder in folders:
        spec = hosting.spec_for(folder.name)
        assert (folder / "config.pbtxt").read_text() == repository.python_config(spec)
        assert "dynamic_batching" in (folder / "config.pbtxt").read_text()
        assert (folder / "1" / "model.py").read_text() == repository.MODEL_PY.format(name=spec.name)


def test_onnx_models_use_the_onnxruntime_backend() -> None:
    for name, (_, inputs, outputs) in repository.ONNX_MODELS.items():
        assert (REPO / name / "config.pbtxt").read_text() == repository.onnx_config(name, inputs, outputs)


def test_hosted_json_lists_the_python_models() -> None:
    hosted = json.loads((REPO / "dragoman-info" / "1" / "hosted.json").read_text())
    assert {h["model"] for h in hosted} == {f.name for f in _python_models()} - {"dragoman-info"}
    assert {h["role"] for h in hosted} == {"stt", "mt", "tts"}


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


@pytest.fixture
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for the module Triton's Python backend provides."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = lambda output_tensors: {t.name: t.array for t in output_tensors}  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: _Tensor(name, request[name])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def test_python_backend_info_model_answers_per_request(pb_utils: Any) -> None:
    from dragoman_tools.triton.python_backend import TritonPythonModel

    model = TritonPythonModel()
    config = {"parameters": {"dragoman_model": {"string_value": "dragoman-info"}}}
    model.initialize({"model_config": json.dumps(config), "model_repository": str(REPO / "dragoman-info"),
                      "model_version": "1"})
    replies = model.execute([{"ROLE": bytes_rows(["tts"])}, {"ROLE": bytes_rows(["stt", "mt"])}])
    assert len(replies) == 2 and model.model.executions == 1
    tts = json.loads(bytes(replies[0]["INFO"][0, 0]))
    assert {h["capabilities"]["name"] for h in tts} >= {"kokoro", "piper"}
    stt, mt = (json.loads(bytes(v)) for v in replies[1]["INFO"].reshape(-1))
    assert {h["role"] for h in stt} == {"stt"} and {h["role"] for h in mt} == {"mt"}


def test_unknown_hosted_model_name_is_rejected() -> None:
    with pytest.raises(Exception, match="unknown hosted model"):
        hosting.spec_for("asr-whisper")
