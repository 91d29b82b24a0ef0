"""The Python SDK (clients/python) as an integrator gets it: a wheel built from
clients/python alone, installed into a fresh venv that cannot see this repository,
running the examples in examples/python through a real mesh on loopback.

Its dependencies (grpcio, protobuf, typing-extensions) would come from PyPI; to run
offline the venv is lent the locked copies of exactly those distributions through a
.pth folder holding their files, and nothing else of the test's environment.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from dragoman import audio
from tests.conftest import ROOT
from tests.helpers import wer
from tests.mesh import MeshAddresses

SDK = ROOT / "clients" / "python"
EXAMPLES = ROOT / "examples" / "python"
LENT = ("grpcio", "protobuf", "typing_extensions")
"""The SDK's dependencies, as the venv gets them."""
CLIP = "fleurs-en-001"
"""The English clip of the e2e tests' WER bound (8.8 s; fleurs-en-004's 4.3 s give Whisper
base too little context for it: 0.40 at 4x)."""


def _lend(distributions: tuple[str, ...], folder: Path) -> None:
    """Links every file of `distributions` (code and metadata) into `folder`."""
    for name in distributions:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file))).resolve()
            if source.is_file() and "__pycache__" not in file.parts:
                target = folder / file
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(source)


def _run(python: Path, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # no PYTHONPATH: the venv sees only what is installed in it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the SDK's wheel installed."""
    tmp = tmp_path_factory.mktemp("sdk")
    source = tmp / "source"  # a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(source)], check=True, cwd=tmp)
    [wheel] = (tmp / "dist").glob("dragoman_client-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, cwd=tmp)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp).stdout.strip())
    _lend(LENT, tmp / "lent")
    (site / "lent.pth").write_text(f"{tmp / 'lent'}\n")
    return python


def test_the_wheel_alone_provides_the_sdk(sdk_python: Path, tmp_path: Path) -> None:
    probe = _run(sdk_python, "-c", """if True:
        import importlib.util, json, dragoman_client
        from dragoman_client._gen.dragoman.v1 import conversation_pb2
        print(json.dumps({"file": dragoman_client.__file__,
                          "repo": [m for m in ("dragoman", "gateway", "tests")
                                   if importlib.util.find_spec(m)],
                          "event": conversation_pb2.ConversationEvent.DESCRIPTOR.full_name}))
    """, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert Path(seen["file"]).is_relative_to(sdk_python.parent.parent), seen
    assert seen["repo"] == [], "the venv sees the repository"
    assert seen["event"] == "dragoman.v1.ConversationEvent"


async def test_two_clients_converse_through_the_mesh(
    mesh: MeshAddresses, fleurs: Path, sdk_python: Path, tmp_path: Path,
) -> None:
    pcm = audio.float_to_pcm16(audio.decode_file(fleurs / f"{CLIP}.ogg", audio.STT_RATE_HZ))
    wav = tmp_path / "hello.wav"
    (tmp_path / "out").mkdir()
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(audio.STT_RATE_HZ)
        f.writeframes(pcm)
    ran = await asyncio.to_thread(
        _run, sdk_python, str(EXAMPLES / "two_party.py"), mesh.gateway, str(wav), "--speed", "4",
        "--out", str(tmp_path / "out"),
        "--names", f"sdk-alice-{os.getpid()}", f"sdk-bruno-{os.getpid()}", cwd=tmp_path, timeout=240)
    assert ran.returncode == 0, ran.stderr[-4000:]
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    done = lines[-1]
    assert done["type"] == "done" and done["spoken"], lines
    heard = lines[:-1]

    finals = [e for e in heard if e["type"] == "Translation" and e["is_final"]]
    assert finals and {e["utterance_id"] for e in finals} == set(done["spoken"])
    for t in finals:
        assert (t["source_language"], t["target_language"]) == ("en", "pt-BR") and not t["own"]
        assert t["text"] and t["text"] != t["source_text"]
    reference = (fleurs / f"{CLIP}.txt").read_text()
    # the speech heard is this clip's (paced at 4x real time, as a client would send it)
    assert wer(reference, " ".join(t["source_text"] for t in finals)) <= 0.35, finals
    sequences = [e["sequence"] for e in heard]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap or duplicate"
    ended = [e for e in heard if e["type"] == "ProcessingEnded"]
    assert {e["utterance_id"] for e in ended} == set(done["spoken"])
    for utterance in done["spoken"]:
        with wave.open(str(tmp_path / "out" / f"bruno-{utterance}.wav")) as f:
            assert f.getframerate() == 24_000 and f.getnframes() > 24_000 // 4  # some speech
    assert finals[0]["source_text"] in done["transcript"]  # Alice's export: her words


async def test_translate_file_streams_ogg_opus_and_saves_the_speech(
    mesh: MeshAddresses, fleurs: Path, sdk_python: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "translated.wav"
    ran = await asyncio.to_thread(
        _run, sdk_python, str(EXAMPLES / "translate_file.py"), mesh.gateway, str(fleurs / f"{CLIP}.ogg"),
        "--to", "pt-BR", "--speed", "4", "--out", str(out), "--user", f"sdk-file-{os.getpid()}",
        cwd=tmp_path, timeout=240)
    assert ran.returncode == 0, ran.stderr[-4000:]
    lines = ran.stdout.splitlines()
    heard = " ".join(line.removeprefix("[en] ") for line in lines if line.startswith("[en] "))
    assert wer((fleurs / f"{CLIP}.txt").read_text(), heard) <= 0.35, lines
    assert any(line.startswith("[pt-BR] ") and len(line) > len("[pt-BR] ") for line in lines), lines
    with wave.open(str(out)) as f:
        assert f.getframerate() == 24_000 and f.getnframes() > 24_000 // 2, lines  # some speech


def test_the_microphone_without_its_extra_says_how_to_install_it(sdk_python: Path, tmp_path: Path) -> None:
    probe = _run(sdk_python, "-c", """if True:
        import asyncio, importlib.metadata
        from dragoman_client import audio
        print([r for r in importlib.metadata.requires("dragoman-client") if "extra" in r])
        async def main():
            async for _ in audio.microphone():
                pass
        try:
            asyncio.run(main())
        except ImportError as e:
            print(e.name, "|", e)
    """, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    extras, raised = probe.stdout.strip().splitlines()
    assert extras == """['sounddevice>=0.4.6; extra == "mic"']""", extras
    name, message = raised.split(" | ")
    assert name == "sounddevice" and "pip install 'dragoman-client[mic]'" in message, probe.stdout
