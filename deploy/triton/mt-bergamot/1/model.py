"""dragoman model mt-bergamot: its callable (dragoman.hosting) in Triton's Python backend."""

from dragoman_tools.triton.python_backend import TritonPythonModel  # noqa: F401
