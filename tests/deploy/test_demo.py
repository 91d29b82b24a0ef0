"""`dragoman demo`, the README's main job, as a user runs it: models in process and on Triton."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from dragoman.db.testing import scratch_schema
from dragoman_tools.triton.server import free_port_triple
from tests.helpers import free_ports

pytestmark = [pytest.mark.models, pytest.mark.slow]

DEMO_TIMEOUT_S = 600  # a first `--triton` run creates Triton's stub environment with pip


@pytest.mark.parametrize(("triton", "partner"), [(False, "pt"), (True, "es")], ids=["in-process", "triton"])
async def test_demo_conversation(triton: bool, partner: str, tmp_path: Path, models_dir: Path) -> None:
    """The in-process run is the README's; the Triton run pairs English with Spanish so that
    Apertium, hosted on Triton beside Bergamot, is called too."""
    ports = free_ports(5)
    env = {
        **os.environ,
        **{f"DRAGOMAN_ADDRESSES_{name}": f"127.0.0.1:{port}"
           for name, port in zip(("GATEWAY", "SESSION", "STT", "MT", "TTS"), ports, strict=True)},
        "DRAGOMAN_MODELS_DIR": str(models_dir),
        "DRAGOMAN_TRITON_URL": f"127.0.0.1:{free_port_triple()}",
    }
    for name in ("DRAGOMAN_STT_ENGINE", "DRAGOMAN_MT_ENGINES", "DRAGOMAN_TTS_ENGINES"):
        env.pop(name, None)
    out = tmp_path / "out"
    with scratch_schema(prefix="demo") as database:
        env |= {"DRAGOMAN_DATABASE_URL": database.url, "DRAGOMAN_DATABASE_SCHEMA": database.schema,
                "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": database.encryption_keys}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dragoman_tools.cli", "demo", "--out", str(out),
            "--partner-language", partner,
            "--log-dir", str(tmp_path / "logs"), *(["--triton"] if triton else []),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            printed, _ = await asyncio.wait_for(proc.communicate(), DEMO_TIMEOUT_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = printed.decode()
    assert proc.returncode == 0, text
    started = re.findall(r"^\s+(\w+)\s+127\.0\.0\.1:\d+", text, re.M)
    assert started == (["triton"] if triton else []) + ["stt", "mt", "tts", "session", "gateway"], text
    ended = re.search(r"session ended: (\d+) utterances, .* errors (\d+)", text)
    assert ended and int(ended[1]) >= 3 and ended[2] == "0", text
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) >= 3, text
    for path in wavs:
        with wave.open(str(path)) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert samples.size > w.getframerate() // 2 and np.abs(samples).max() > 1000, path
    for service in ("stt", "mt", "tts"):  # each service found its models where it was told to
        on_triton = '"msg": "models on triton"' in (tmp_path / "logs" / f"{service}.log").read_text()
        assert on_triton == triton, service
