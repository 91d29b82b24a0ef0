"""Starts the whole mesh on this machine: each service its own process.

Used by `dragoman up` and `dragoman demo`. Every service gets the same
settings (addresses from DRAGOMAN_ADDRESSES_* / the TOML file); each writes
JSON logs to LOG_DIR/<name>.log. `start()` returns once every service
reports SERVING on gRPC health, or raises naming the one that did not,
with the end of its log.

With `triton=True` the models run on a Triton server: `dragoman triton`
starts first (on `triton.url`), and once it serves, stt/mt/tts start with
the engine `triton` (DRAGOMAN_STT_ENGINE / _MT_ENGINES / _TTS_ENGINES).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dragoman import rpc
from dragoman.config import Settings

TRITON_ENGINES = {"DRAGOMAN_STT_ENGINE": "triton", "DRAGOMAN_MT_ENGINES": "triton",
                  "DRAGOMAN_TTS_ENGINES": "triton"}
"""The environment that puts every engine role of the services on Triton."""
TRITON_START_TIMEOUT_S = 600.0
"""The first start creates Triton's stub environment with pip: minutes, not seconds."""

# Start order: model services first (they load weights), then session, then the edge.
SERVICES: tuple[tuple[str, str], ...] = (
    ("stt", "stt_svc.server"),
    ("mt", "mt_svc.server"),
    ("tts", "tts_svc.server"),
    ("session", "session_svc.server"),
    ("gateway", "gateway.server"),
)


class MeshError(RuntimeError):
    """A service did not start."""


@dataclass
class Process:
    name: str
    address: str
    popen: subprocess.Popen[bytes]
    log_path: Path


class Mesh:
    """The five services as child processes."""

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str] | None = None,
                 triton: bool = False) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.triton = triton
        self.processes: list[Process] = []

    def address(self, name: str) -> str:
        if name == "triton":
            return self.settings.triton.url
        return str(getattr(self.settings.addresses, name))

    def _spawn(self, name: str, module: str) -> Process:
        log_path = self.log_dir / f"{name}.log"
        # Triton hosts the configured engines; the services then call it for every role.
        env = {**self.env, **TRITON_ENGINES} if self.triton and name != "triton" else self.env
        with open(log_path, "wb") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", module], stdout=log_file, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        proc = Process(name, self.address(name), popen, log_path)
        self.processes.append(proc)
        return proc

    async def start(self, timeout_s: float = 180.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.triton:
                await self._wait_triton(self._spawn("triton", "dragoman_tools.triton.server"))
            started = [self._spawn(name, module) for name, module in SERVICES]
            await asyncio.gather(*(self._wait(p, timeout_s) for p in started))
        except BaseException:
            await self.stop()
            raise

    async def _wait_triton(self, proc: Process) -> None:
        from dragoman.triton_client import INFO_MODEL, TritonClient

        client = TritonClient(self.settings.triton, self.settings.tls)
        deadline = time.monotonic() + TRITON_START_TIMEOUT_S
        try:
            while (why := await client.not_ready([INFO_MODEL])) is not None:
                if proc.popen.poll() is not None:
                    raise MeshError(f"triton exited with code {proc.popen.returncode}:\n"
                                    f"{_tail(proc.log_path)}")
                if time.monotonic() > deadline:
                    raise MeshError(f"triton not ready after {TRITON_START_TIMEOUT_S:.0f} s ({why}):\n"
                                    f"{_tail(proc.log_path)}")
                await asyncio.sleep(0.5)
        finally:
            await client.close()

    async def _wait(self, proc: Process, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.popen.poll() is not None:
                raise MeshError(f"{proc.name} exited with code {proc.popen.returncode}:\n"
                                f"{_tail(proc.log_path)}")
            try:
                await rpc.wait_serving(proc.address, timeout_s=1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise MeshError(f"{proc.name} not ready after {timeout_s:.0f} s:\n"
                                    f"{_tail(proc.log_path)}") from None

    async def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every service (edge first), then SIGKILL whatever outlives the grace."""
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 2.0
        for proc in reversed(self.processes):
            while proc.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()
        self.processes.clear()

    def failed(self) -> Process | None:
        return next((p for p in self.processes if p.popen.poll() is not None), None)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
