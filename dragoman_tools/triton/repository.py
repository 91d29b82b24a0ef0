"""Writes a model repository for a stock Triton server (deploy/triton/) from the hosted models.

    python -m dragoman_tools.triton.repository deploy/triton [--link-weights]

loads the configured engines (as `dragoman triton` does) to learn their
names and capabilities, then writes per model a config.pbtxt (Python
backend, dynamic batching, BYTES tensors as in dragoman.hosting) and
a one-line 1/model.py importing `dragoman_tools.triton.python_backend`; and
dragoman-info/1/hosted.json with every model's capabilities. Kokoro's and
Piper's ONNX graphs also get an ONNX Runtime backend model
(`onnx-kokoro`, `onnx-piper-<voice>`) whose 1/model.onnx, with
--link-weights, links to the installed weights: see deploy/triton/README.md for how they are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from dragoman import config, logs
from dragoman.hosting import HostedModel, ModelSpec
from dragoman_tools.triton.hosting import load

MODEL_PY = '''"""dragoman model {name}: its callable (dragoman.hosting) in Triton's Python backend."""

from dragoman_tools.triton.python_backend import TritonPythonModel  # noqa: F401
'''

ONNX_MODELS = {
    # name: (weights relative to models_dir, inputs, outputs); dims -1 are variable.
    "onnx-kokoro": (
        "kokoro/kokoro-v1.0.int8.onnx",
        [("tokens", "TYPE_INT64", [1, -1]), ("style", "TYPE_FP32", [1, 256]), ("speed", "TYPE_FP32", [1])],
        [("audio", "TYPE_FP32", [-1])],
    ),
    "onnx-piper-en_US-joe-medium": (
        "piper-joe/en_US-joe-medium.onnx",
        [("input", "TYPE_INT64", [1, -1]), ("input_lengths", "TYPE_INT64", [1]),
         ("scales", "TYPE_FP32", [3])],
        [("output", "TYPE_FP32", [1, 1, 1, -1])],
    ),
}


def _tensors(kind: str, tensors: Sequence[tuple[str, str, Sequence[int]]]) -> str:
    """`input [ ... ]` / `output [ ... ]`; an empty dims list is a scalar (dims [1] reshaped to [])."""
    entries = []
    for name, data_type, dims in tensors:
        reshape = "\n    reshape: { shape: [ ] }" if not dims else ""
        entries.append(f"  {{\n    name: \"{name}\"\n    data_type: {data_type}\n"
                       f"    dims: [ {', '.join(map(str, dims or [1]))} ]{reshape}\n  }}")
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def python_config(spec: ModelSpec) -> str:
    return "".join([
        f'name: "{spec.name}"\nbackend: "python"\nmax_batch_size: {spec.max_batch_size}\n',
        _tensors("input", [(n, "TYPE_STRING", [1]) for n in spec.inputs]),
        _tensors("output", [(n, "TYPE_STRING", [1]) for n in spec.outputs]),
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {spec.queue_delay_us}\n}}\n",
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n",
        f'parameters {{\n  key: "dragoman_model"\n  value: {{ string_value: "{spec.name}" }}\n}}\n',
    ])


def onnx_config(name: str, inputs: Sequence[tuple[str, str, list[int]]],
                outputs: Sequence[tuple[str, str, list[int]]]) -> str:
    return "".join([
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 0\n',
        _tensors("input", inputs),
        _tensors("output", outputs),
        "instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]\n",
    ])


def write(root: Path, models: Sequence[HostedModel], models_dir: Path | None = None) -> list[Path]:
    """Writes the repository under `root`; returns the files written. With `models_dir`, each
    ONNX model's 1/model.onnx is linked to the installed weights."""
    written: list[Path] = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    hosted = [m.hosted for m in models if m.spec.role != "info"]
    for model in models:
        folder = root / model.spec.name
        put(folder / "config.pbtxt", python_config(model.spec))
        put(folder / "1" / "model.py", MODEL_PY.format(name=model.spec.name))
    put(root / "dragoman-info" / "1" / "hosted.json",
        json.dumps([dataclasses.asdict(h) for h in hosted], indent=1, ensure_ascii=False) + "\n")
    for name, (weights, inputs, outputs) in ONNX_MODELS.items():
        put(root / name / "config.pbtxt", onnx_config(name, inputs, outputs))
        link = root / name / "1" / "model.onnx"
        if models_dir is not None and not link.exists() and (models_dir / weights).exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(models_dir / weights, link)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dragoman_tools.triton.repository",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="deploy/triton",
                        help="folder to write (default: %(default)s)")
    parser.add_argument("--link-weights", action="store_true",
                        help="symlink the installed ONNX weights into the repository")
    args = parser.parse_args(argv)
    logs.configure("triton-repository")
    settings = config.load()
    models_dir = Path(settings.models_dir) if args.link_weights else None
    written = write(Path(args.root), load(settings), models_dir)
    logging.getLogger(__name__).info(
        "wrote the model repository", extra={"root": args.root, "files": len(written)})


if __name__ == "__main__":
    main()
