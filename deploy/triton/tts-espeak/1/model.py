"""dragoman model tts-espeak: its callable (dragoman.triton.models) in Triton's Python backend."""

from dragoman.triton.python_backend import TritonPythonModel  # noqa: F401
