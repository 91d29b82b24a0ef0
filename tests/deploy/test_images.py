"""deploy/Dockerfile and deploy/compose.yaml, checked without a Docker engine.

They are checked against what they name: the files the image copies, the
pinned tools, the modules each container runs, the settings they set and the
services they reach.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dragoman import config
from tests.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S_USER = 10001
EXTRA_ENV = {"DRAGOMAN_LOG_LEVEL", "DRAGOMAN_CONFIG"}


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def test_the_image_copies_files_that_exist_and_everything_the_services_import() -> None:
    copied = []
    for op, args in _instructions():
        if op == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                copied.append(source.rstrip("/"))
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    packages = [p.removesuffix("/dragoman") for p in wheel["packages"]]  # gen/python/dragoman: gen/python
    for package in (*packages, "pyproject.toml", "uv.lock"):
        assert package in copied, package


def test_the_image_pins_uv_as_dev_sh_does_and_runs_as_the_k8s_user() -> None:
    pinned = re.search(r"^UV_VERSION=(\S+)", (ROOT / "dev.sh").read_text(), re.MULTILINE)
    assert pinned
    runs = " ".join(args for op, args in _instructions() if op == "RUN")
    assert f"uv=={pinned.group(1)}" in runs
    assert "uv sync --frozen --no-dev" in runs and "dragoman models install" in runs
    assert ("USER", str(K8S_USER)) in _instructions()
    assert f"--uid {K8S_USER}" in runs
    stages = [args for op, args in _instructions() if op == "FROM"]
    assert len(stages) == 2 and all(s.startswith("python:3.11") for s in stages)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # merges the x-dragoman anchor into each service


def test_compose_services_run_real_modules_with_real_settings() -> None:
    services = _compose()["services"]
    dragoman = {name: s for name, s in services.items() if s.get("image") == "dragoman:dev"}
    assert set(dragoman) == {"migrate", "gateway", "session", "stt", "mt", "tts"}
    for name, service in dragoman.items():
        command = service["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]), command
            own = name.upper()
            assert service["environment"][f"DRAGOMAN_ADDRESSES_{own}"] == "0.0.0.0:50051"
            assert service["environment"][f"DRAGOMAN_METRICS_{own}"] == "0.0.0.0:9100"
        else:
            assert command == ["dragoman", "db", "upgrade"]
        unknown = set(service["environment"]) - config.env_names() - EXTRA_ENV
        assert not unknown, (name, sorted(unknown))
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)


def test_compose_addresses_name_compose_services() -> None:
    compose = _compose()
    services = compose["services"]
    for key, value in compose["x-dragoman"]["environment"].items():
        if key.startswith("DRAGOMAN_ADDRESSES_"):
            host, port = value.split(":")
            assert host in services and port == "50051", (key, value)
        if key.endswith("_URL") and "://" in value:
            assert value.split("://")[1].split("@")[-1].split(":")[0] in services, (key, value)


def _build_args() -> dict[str, str]:
    """ARG NAME=default of the build stage (the one before the second FROM)."""
    build, args = True, {}
    for op, rest in _instructions()[1:]:
        if op == "FROM":
            build = False
        if op == "ARG" and build:
            name, _, default = rest.partition("=")
            args[name] = shlex.split(default)[0] if default.strip() not in ("", '""') else ""
    return args


def test_the_language_packs_build_args_reach_dragoman_languages_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dragoman_tools import cli

    args = _build_args()
    assert {"LANGUAGES", "DEVICE", "ACCEPT_LICENCES"} <= set(args)
    assert args["DEVICE"] in ("cpu", "cuda")
    runs = [rest for op, rest in _instructions() if op == "RUN" and "languages install" in rest]
    assert len(runs) == 1
    run = runs[0]
    assert 'if [ -n "$LANGUAGES" ]' in run  # "" builds the embedded default only
    # the convert extra (transformers, torch) exists and stays out of the image's /opt/venv
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "convert" in extras and "UV_PROJECT_ENVIRONMENT=/opt/convert" in run
    assert "--accept-licence %s" in run and "$ACCEPT_LICENCES" in run
    command = re.search(r"bin/dragoman (languages install [^$]*\$LANGUAGES [^$]*\"\$DEVICE\")", run)
    assert command, run
    # what the build runs, with sample values, is a command the CLI accepts and plans
    argv = shlex.split(command.group(1).replace("$LANGUAGES", "de ja").replace('"$DEVICE"', "cpu"))
    argv += ["--accept-licence", "CC-BY-NC-4.0", "--dry-run", "--dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "whisper-base" in out and "models to download for de ja on cpu" in out
    assert "nllb-200-distilled-600m" in out  # the accepted licence lets it in
