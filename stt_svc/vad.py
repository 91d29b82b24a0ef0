"""Streaming voice activity detection with the Silero VAD bundled in faster-whisper.

faster-whisper runs Silero over a whole file at once; a live stream needs the
same model run frame by frame with its LSTM state (h, c) and the 64-sample
context carried from one call to the next, so that chunk borders change
nothing. The ONNX model treats the batch axis as time, so the frames that
one audio chunk completes go through in a single call.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnxruntime

FRAME_SAMPLES = 512
"""Silero frame at 16 kHz (32 ms)."""
CONTEXT_SAMPLES = 64
STATE_SHAPE = (1, 1, 128)


class FrameClassifier(Protocol):
    """Speech probability per 512-sample frame of one stream, in order."""

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """`frames` is (n, 512) float32, continuing the previous call; returns n values."""
        ...


@functools.cache
def _session() -> onnxruntime.InferenceSession:
    """One shared ONNX session (thread-safe); each stream keeps its own state."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    path = Path(get_assets_path()) / "silero_vad_v6.onnx"
    return onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], sess_options=opts
    )


class SileroVad:
    """Silero VAD v6 for one stream, state carried across calls."""

    def __init__(self) -> None:
        self._session = _session()
        self._h = np.zeros(STATE_SHAPE, np.float32)
        self._c = np.zeros(STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        frames = np.asarray(frames, dtype=np.float32).reshape(-1, FRAME_SAMPLES)
        # Each frame is preceded by the last 64 samples of the frame before it.
        context = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT_SAMPLES:]])
        batch = np.concatenate([context, frames], axis=1)
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


def warm_up() -> None:
    """Loads the model (once per process)."""
    SileroVad().speech_probabilities(np.zeros((1, FRAME_SAMPLES), np.float32))
