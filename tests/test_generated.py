"""The checked-in stubs match proto/ (regenerating changes nothing), and the
C++ stubs of the public API build against Debian's libgrpc++-dev."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

GENPROTO = ROOT / "scripts" / "genproto.py"
CPP = ROOT / "gen" / "cpp"


def test_generated_stubs_match_protos() -> None:
    result = subprocess.run([sys.executable, str(GENPROTO), "--check"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_drift_check_fails_without_protoc(tmp_path: Path) -> None:
    """A machine without the generators must not pass the drift check by skipping it."""
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, str(GENPROTO), "--check"], capture_output=True, text=True,
                            cwd=ROOT, env=env)
    assert result.returncode == 1
    assert "apt-get install protobuf-compiler protobuf-compiler-grpc" in result.stderr


@pytest.mark.parametrize("source", sorted(p.relative_to(CPP).as_posix() for p in CPP.rglob("*.cc")))
def test_cpp_stub_compiles(source: str, tmp_path: Path) -> None:
    gxx, pkg_config = shutil.which("g++"), shutil.which("pkg-config")
    assert gxx and pkg_config, "C++ toolchain missing: apt-get install g++ pkg-config libgrpc++-dev"
    flags = subprocess.run([pkg_config, "--cflags", "grpc++", "protobuf"], capture_output=True, text=True)
    assert flags.returncode == 0, f"libgrpc++-dev missing: apt-get install libgrpc++-dev ({flags.stderr})"
    result = subprocess.run(
        [gxx, "-std=c++17", "-c", *shlex.split(flags.stdout), f"-I{CPP}", source,
         "-o", str(tmp_path / "stub.o")],
        capture_output=True, text=True, cwd=CPP)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "stub.o").stat().st_size > 0


def test_cpp_stubs_cover_every_public_proto() -> None:
    protos = {p.stem for p in (ROOT / "proto" / "dragoman" / "v1").glob("*.proto")}
    built = {p.name.removesuffix(".grpc.pb.cc") for p in CPP.rglob("*.grpc.pb.cc")}
    assert protos and built == protos
