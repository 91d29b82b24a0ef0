"""The stock Triton Python backend's `TritonPythonModel`, over the same callables PyTriton serves.

deploy/triton/<model>/1/model.py is one import of this class. The model's
config.pbtxt names what to load in its `dragoman_model` parameter
(e.g. "stt-whisper-base", "mt-bergamot", "tts-kokoro", "dragoman-info");
weights come from the usual settings (DRAGOMAN_MODELS_DIR, DRAGOMAN_CONFIG).
The Python environment Triton runs the stub in must have dragoman
installed (see deploy/triton/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dragoman import config
from dragoman.hosting import HostedModel, info_model
from dragoman.triton_client import Hosted
from dragoman_tools.triton.hosting import load_one

HOSTED_FILE = "hosted.json"
"""Beside dragoman-info's model.py: the models of the repository and their capabilities."""


class TritonPythonModel:
    """One dragoman model in Triton's Python backend (dynamic batching: `execute` gets the batch)."""

    model: HostedModel

    def initialize(self, args: dict[str, Any]) -> None:
        model_config = json.loads(args["model_config"])
        name = model_config["parameters"]["dragoman_model"]["string_value"]
        if name == "dragoman-info":
            folder = Path(args["model_repository"]) / args["model_version"]
            hosted = json.loads((folder / HOSTED_FILE).read_text())
            self.model = info_model([Hosted(**h) for h in hosted])
        else:
            self.model = load_one(config.load(), name)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils  # provided by the Python backend

        rows = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.model.spec.inputs}
            for r in requests
        ]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, np.asarray(a, dtype=object)) for n, a in out.items()]
            )
            for out in self.model(rows)
        ]
