"""`dragoman triton`: PyTriton hosting the configured STT, MT and TTS engines on this machine.

PyTriton (nvidia-pytriton, the `triton` extra) bundles a Triton server that
runs on CPU; the engines stay in this process and Triton forwards each
dynamic batch to their callables (`dragoman.hosting`). The gRPC port
is the one of `triton.url` (DRAGOMAN_TRITON_URL, default 8001); HTTP takes
the port below it and metrics the port above, as Triton's 8000/8001/8002.

Triton's Python stub processes load the shared libpython; with a CPython
that is not the system's (pyenv, uv-managed), its lib/ directory must be on
LD_LIBRARY_PATH before the server starts, which `start` arranges. The stub
of Triton 2.51 (PyTriton 0.7.0) is built against NumPy 1.x and corrupts
BYTES tensors under NumPy 2 (it reads garbage lengths and aborts), while
dragoman needs NumPy 2; so the stubs run in their own venv (PyTriton's
own pins: NumPy 1.26, protobuf 6) at `triton.stub_env` (default
<models_dir>/../triton-stub-venv), created with pip on first use. Only
tensors cross between the stubs and this process (shared memory, zmq).
`triton.roles` limits what is hosted (default "stt,mt,tts");
`triton.token` fixes PyTriton's access token for its restricted endpoints
(statistics, model repository); default: a random one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

from dragoman import config, logs
from dragoman.errors import FailedPrecondition
from dragoman.hosting import HostedModel
from dragoman_tools.triton.hosting import load

log = logging.getLogger(__name__)


def ensure_libpython_path(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Puts this interpreter's lib/ directory on LD_LIBRARY_PATH (for Triton's Python stubs)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir and libdir not in paths:
        env["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


STUB_REQUIREMENT = "nvidia-pytriton==0.7.0"


def ensure_stub_env(settings: config.Settings) -> Path:
    """The Python environment Triton's stubs run in (see above): a venv of this interpreter with
    PyTriton and NumPy 1.x, created with pip on first use."""
    path = Path(settings.triton.stub_env or Path(settings.models_dir).parent / "triton-stub-venv")
    python = path / "bin" / "python"
    if not python.is_file():
        log.info("creating the Triton stub environment", extra={"path": str(path)})
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        STUB_REQUIREMENT], check=True)
    return path


def free_port_triple(host: str = "127.0.0.1") -> int:
    """A gRPC port p free on `host` with p-1 (HTTP) and p+1 (metrics) free too: where a
    `dragoman triton` of tests or benchmarks can listen beside others."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port > 2000 and all(_bindable(host, p) for p in (port - 1, port, port + 1)):
            return port
    raise RuntimeError("no three free consecutive ports")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _port(url: str) -> int:
    try:
        return int(url.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        raise FailedPrecondition(f"setting triton.url must be host:port, got {url!r}") from None


def start(models: Sequence[HostedModel], settings: config.Settings) -> object:
    """Starts PyTriton with `models` bound, serving gRPC on `triton.url`'s port; returns the Triton object."""
    ensure_libpython_path()
    stub_env = ensure_stub_env(settings)
    url = settings.triton.url
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as e:
        raise FailedPrecondition(
            f"`dragoman triton` needs the triton extra: pip install 'dragoman[triton]' ({e})"
        ) from None
    import numpy as np
    from pytriton.server import triton_server

    # The one hook: PyTriton runs its stubs in the environment this function names.
    triton_server.get_triton_python_backend_python_env = lambda: stub_env

    grpc_port = _port(url)
    triton = Triton(
        config=TritonConfig(grpc_port=grpc_port, http_port=grpc_port - 1, metrics_port=grpc_port + 1,
                            grpc_address=url.rsplit(":", 1)[0] or "0.0.0.0", log_verbose=0),
        security_config=TritonSecurityConfig(access_token=settings.triton.token or None),
    )
    for model in models:
        spec = model.spec
        triton.bind(
            model_name=spec.name,
            infer_func=model,
            inputs=[Tensor(name=n, dtype=np.bytes_, shape=(1,)) for n in spec.inputs],
            outputs=[Tensor(name=n, dtype=np.bytes_, shape=(1,)) for n in spec.outputs],
            config=ModelConfig(
                max_batch_size=spec.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=spec.queue_delay_us),
            ),
            strict=False,
        )
    triton.run()
    return triton


def serve(settings: config.Settings) -> None:
    """Loads the engines, hosts them on PyTriton and serves until SIGINT/SIGTERM."""
    roles = [r.strip() for r in settings.triton.roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - {"stt", "mt", "tts"})
    if unknown:
        raise FailedPrecondition(f"setting triton.roles: unknown role(s) {', '.join(unknown)}; "
                                 "use stt, mt, tts")
    started = time.perf_counter()
    models = load(settings, roles)
    triton = start(models, settings)
    log.info("triton serving", extra={
        "url": settings.triton.url, "models": [m.spec.name for m in models],
        "seconds": round(time.perf_counter() - started, 1)})
    signal.signal(signal.SIGTERM, _interrupt)  # PyTriton stops cleanly on KeyboardInterrupt only
    try:
        triton.serve()  # type: ignore[attr-defined]
    finally:
        triton.stop()  # type: ignore[attr-defined]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    logs.configure("triton")
    serve(config.load())


if __name__ == "__main__":
    main()
