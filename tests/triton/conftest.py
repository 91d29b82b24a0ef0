"""A real PyTriton server (`python -m dragoman_tools.triton.server`) on loopback, once per session.

The main server hosts whisper-tiny.en, Bergamot, Piper and Kokoro; the
tests load the same engines in process and compare. A second, small server
(Bergamot only) is the one the failure tests kill and restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from dragoman import config
from dragoman.triton_client import INFO_MODEL, TritonClient
from dragoman_tools.triton.server import free_port_triple

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dragoman-tests"
START_TIMEOUT_S = 240.0
ENGINES = {
    "DRAGOMAN_STT_MODEL": "whisper-tiny.en",
    "DRAGOMAN_STT_ENGLISH_MODEL": "",
    "DRAGOMAN_MT_ENGINES": "bergamot",
    "DRAGOMAN_TTS_ENGINES": "piper,kokoro",
}
"""What the main server hosts (and the in-process side loads)."""


class TritonProcess:
    """`dragoman triton` in its own process group, which the tests may kill and start again."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.url = f"127.0.0.1:{free_port_triple()}"
        self.env = {**os.environ, **env, "DRAGOMAN_TRITON_URL": self.url, "DRAGOMAN_TRITON_TOKEN": TOKEN}
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="dragoman-triton-", suffix=".log")[1])
        self.options = config.TritonSettings(url=self.url, timeout_s=60.0, retries=1, backoff_s=0.1)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "dragoman_tools.triton.server"], cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    async def ready(self) -> None:
        client = TritonClient(self.options)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + START_TIMEOUT_S
            while await client.not_ready([INFO_MODEL]) is not None:
                assert self.popen is not None and self.popen.poll() is None, (
                    f"dragoman triton exited: {self.log_path.read_text()[-3000:]}")
                assert loop.time() < deadline, f"dragoman triton not ready in {START_TIMEOUT_S} s"
                await asyncio.sleep(0.5)
        finally:
            await client.close()

    def kill(self) -> None:
        """SIGKILL to the whole group: Triton, its stubs and the launcher die at once."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def triton_process(models_dir: Path) -> Iterator[TritonProcess]:
    process = TritonProcess(ENGINES)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
async def triton(triton_process: TritonProcess) -> TritonProcess:
    await triton_process.ready()
    return triton_process


@pytest.fixture(scope="session")
async def client(triton: TritonProcess) -> AsyncIterator[TritonClient]:
    c = TritonClient(triton.options)
    yield c
    await c.close()


@pytest.fixture(scope="session")
def local_settings(settings: config.Settings) -> config.Settings:
    """The settings the main Triton server runs with, for the in-process side."""
    return dataclasses.replace(
        settings,
        stt=dataclasses.replace(settings.stt, model="whisper-tiny.en", english_model=""),
        mt=dataclasses.replace(settings.mt, engines="bergamot"),
        tts=dataclasses.replace(settings.tts, engines="piper,kokoro"),
    )


@pytest.fixture(scope="session")
def small_triton(models_dir: Path) -> Iterator[TritonProcess]:
    """A Bergamot-only server for the kill/restart tests."""
    process = TritonProcess({"DRAGOMAN_TRITON_ROLES": "mt", "DRAGOMAN_MT_ENGINES": "bergamot"})
    process.start()
    try:
        yield process
    finally:
        process.stop()
