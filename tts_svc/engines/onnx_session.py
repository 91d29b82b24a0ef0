"""The ONNX Runtime session both ONNX engines (Kokoro, Piper) run their model in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime

    from dragoman.devices import Device


def session(model_path: Path, cpu_threads: int, device: Device) -> onnxruntime.InferenceSession:
    """A session on `device`, using `cpu_threads` threads per inference on the CPU.

    Idle worker threads sleep instead of spinning: the services of the mesh
    share the cores, and spinning threads take them from the others. (On the
    2-core box under load, a short Kokoro sentence took 2.0 s without spinning,
    2.4 s with it.)
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(model_path), options, providers=device.onnx_providers())
