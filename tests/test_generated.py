"""The checked-in stubs match proto/ (regenerating changes nothing), the C++
stubs of the public API build against Debian's libgrpc++-dev, the PHP and Ruby
stubs pass `php -l` / `ruby -c`, the Ruby stubs load with Debian's grpc and
google-protobuf gems and the PHP messages with its php-google-protobuf, and what
they define matches proto/ (as gen/python reads it)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FileDescriptor

from tests.conftest import ROOT

GENPROTO = ROOT / "scripts" / "genproto.py"
CPP = ROOT / "gen" / "cpp"
PHP = ROOT / "gen" / "php"
RUBY = ROOT / "gen" / "ruby"
PUBLIC_PROTOS = ROOT / "proto" / "dragoman" / "v1"
SCRIPTING_TOOLS = "apt-get install php-cli ruby"
RUBY_GEMS = "apt-get install ruby-grpc ruby-google-protobuf"
PHP_PROTOBUF = Path("/usr/share/php")
"""Where Debian's php-google-protobuf puts the pure-PHP runtime."""
PHP_RUNTIME = "apt-get install php-google-protobuf"


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
    assert gxx and pkg_config, \
        "C++ toolchain missing: apt-get install g++ pkg-config libgrpc++-dev libprotobuf-dev"
    flags = subprocess.run([pkg_config, "--cflags", "grpc++", "protobuf"], capture_output=True, text=True)
    assert flags.returncode == 0, \
        f"gRPC/protobuf headers missing: apt-get install libgrpc++-dev libprotobuf-dev ({flags.stderr})"
    result = subprocess.run(
        [gxx, "-std=c++17", "-c", *shlex.split(flags.stdout), f"-I{CPP}", source,
         "-o", str(tmp_path / "stub.o")],
        capture_output=True, text=True, cwd=CPP)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "stub.o").stat().st_size > 0


def test_cpp_stubs_cover_every_public_proto() -> None:
    protos = {p.stem for p in PUBLIC_PROTOS.glob("*.proto")}
    built = {p.name.removesuffix(".grpc.pb.cc") for p in CPP.rglob("*.grpc.pb.cc")}
    assert protos and built == protos


def _tool(name: str) -> str:
    # CI installs these (.ci/run); a missing one fails rather than skips, like g++ above.
    path = shutil.which(name)
    assert path, f"{name} missing: {SCRIPTING_TOOLS}"
    return path


@pytest.mark.parametrize("source", sorted(p.relative_to(PHP).as_posix() for p in PHP.rglob("*.php")))
def test_php_stub_parses(source: str) -> None:
    result = subprocess.run([_tool("php"), "-l", source], capture_output=True, text=True, cwd=PHP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No syntax errors detected" in result.stdout


@pytest.mark.parametrize("source", sorted(p.relative_to(RUBY).as_posix() for p in RUBY.rglob("*.rb")))
def test_ruby_stub_parses(source: str) -> None:
    result = subprocess.run([_tool("ruby"), "-c", source], capture_output=True, text=True, cwd=RUBY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Syntax OK"


def test_syntax_checks_reject_broken_code(tmp_path: Path) -> None:
    """`php -l` and `ruby -c` fail on a syntax error, so the checks above can fail."""
    (tmp_path / "broken.php").write_text("<?php\nclass Broken {\n")
    (tmp_path / "broken.rb").write_text("module Broken\n  def x(\nend\n")
    php = subprocess.run([_tool("php"), "-l", "broken.php"], capture_output=True, text=True, cwd=tmp_path)
    ruby = subprocess.run([_tool("ruby"), "-c", "broken.rb"], capture_output=True, text=True, cwd=tmp_path)
    assert php.returncode != 0 and "Errors parsing broken.php" in php.stdout
    assert ruby.returncode != 0 and "syntax error" in ruby.stderr


def test_php_and_ruby_stubs_cover_every_public_proto() -> None:
    protos = {p.stem for p in PUBLIC_PROTOS.glob("*.proto")}
    ruby = {p.name.removesuffix("_services_pb.rb") for p in RUBY.rglob("*_services_pb.rb")}
    php = {p.stem for p in (PHP / "GPBMetadata" / "Dragoman" / "V1").glob("*.php")}
    assert protos and ruby == protos
    assert php == {stem.title() for stem in protos}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _public_files() -> list[FileDescriptor]:
    """gen/python's descriptors of the public protos: what the other languages must match."""
    return [importlib.import_module(f"dragoman.v1.{proto.stem}_pb2").DESCRIPTOR
            for proto in sorted(PUBLIC_PROTOS.glob("*.proto"))]


def _assert_login_request(encoded: str) -> None:
    from dragoman.v1 import auth_pb2

    login = auth_pb2.LoginRequest.FromString(base64.b64decode(encoded))
    assert (login.username, login.password, login.device_name) == ("ana", "pässwörd", "Ana's laptop")


def test_ruby_stubs_load_and_match_protos() -> None:
    """Debian's ruby-grpc and ruby-google-protobuf load every Ruby stub; each service
    has proto/'s methods, types and streaming, and a message encodes as Python's reads it."""
    ruby = _tool("ruby")
    gems = subprocess.run([ruby, "-e", "require 'grpc'; require 'google/protobuf'"],
                          capture_output=True, text=True)
    assert gems.returncode == 0, f"Ruby gems missing: {RUBY_GEMS} ({gems.stderr.strip()})"
    result = subprocess.run([ruby, str(ROOT / "tests" / "ruby_stub_probe.rb"), str(RUBY)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    probe = json.loads(result.stdout)

    expected = {}
    for file in _public_files():
        for service in file.services_by_name.values():
            methods = [{"name": m.name, "input": m.input_type.full_name, "output": m.output_type.full_name,
                        "client_streaming": m.client_streaming, "server_streaming": m.server_streaming}
                       for m in service.methods]
            expected[service.full_name] = {"methods": methods,
                                           "stub_methods": sorted(_snake(m.name) for m in service.methods)}
    assert expected and probe["services"] == expected
    _assert_login_request(probe["login_request"])


def test_php_messages_load_and_match_protos() -> None:
    """Debian's php-google-protobuf loads every PHP message and enum class (the service
    clients need the PECL grpc extension, which Debian lacks: those are only linted)."""
    assert (PHP_PROTOBUF / "Google" / "Protobuf" / "Internal" / "Message.php").is_file(), \
        f"PHP protobuf runtime missing: {PHP_RUNTIME}"
    result = subprocess.run([_tool("php"), str(ROOT / "tests" / "php_stub_probe.php"), str(PHP)],
                            capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    probe = json.loads(result.stdout)

    files = _public_files()
    messages = sorted(m.full_name for f in files for m in f.message_types_by_name.values())
    enums = {e.full_name: {v.name: v.number for v in e.values}
             for f in files for e in f.enum_types_by_name.values()}
    assert messages and probe["messages"] == messages
    assert enums and probe["enums"] == enums
    _assert_login_request(probe["login_request"])
