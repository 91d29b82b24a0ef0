"""dragoman model stt-whisper-tiny.en: its callable (dragoman.triton.models) in Triton's Python backend."""

from dragoman.triton.python_backend import TritonPythonModel  # noqa: F401
