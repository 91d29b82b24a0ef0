"""Starts the whole mesh on this machine: each service its own process.

Used by `dragoman up` and `dragoman demo`. Every service gets the same
settings (addresses from DRAGOMAN_ADDRESSES_* / the TOML file); each writes
JSON logs to LOG_DIR/<name>.log. `start()` returns once every service
reports SERVING on gRPC health, or raises naming the one that did not,
with the end of its log.
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

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.processes: list[Process] = []

    def address(self, name: str) -> str:
        return str(getattr(self.settings.addresses, name))

    async def start(self, timeout_s: float = 180.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, module in SERVICES:
            log_path = self.log_dir / f"{name}.log"
            with open(log_path, "wb") as log_file:
                popen = subprocess.Popen(
                    [sys.executable, "-m", module], stdout=log_file, stderr=subprocess.STDOUT,
                    env=self.env, start_new_session=True,
                )
            self.processes.append(Process(name, self.address(name), popen, log_path))
        try:
            await asyncio.gather(*(self._wait(p, timeout_s) for p in self.processes))
        except BaseException:
            await self.stop()
            raise

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
