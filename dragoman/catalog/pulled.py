"""The catalogue of translation models pulled from their publisher's hub, and which are pulled.

Each entry names the hub repository, the revision, the converter format, the
pairs it serves and its licence (non-commercial ones are opt-in). Services
read this at run time (`installed()`, `require()`: manifest and sizes only);
pulling, converting and re-hashing is `dragoman_tools.pull`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from dragoman.catalog import packaged
from dragoman.catalog.packaged import MANIFEST, State, Status
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import LANGUAGES

QUANTIZATION = "int8"

Pair = tuple[str, str]
Family = Literal["marian", "m2m100", "nllb", "madlad"]
"""How the model is prompted: see mt_svc.engines.ct2."""
Format = Literal["transformers", "marian"]
"""What the hub repository holds: a Transformers model, or Marian's own npz format."""


@dataclass(frozen=True, slots=True)
class HubModel:
    """A translation model of the catalogue: where it comes from and what it serves."""

    name: str
    """Name in the model cache, `settings.mt.engines` routes and `Translation.engine`."""
    repo: str
    """owner/name on the hub."""
    family: Family
    pairs: frozenset[Pair]
    licence: str
    size: int
    """Approximate download size in bytes (for disk-space checks and the list)."""
    description: str
    format: Format = "transformers"
    revision: str = "main"
    target_tokens: Mapping[str, str] = field(default_factory=dict)
    """Multilingual OPUS-MT models: the `>>xxx<<` token that picks each target language."""
    tokenizer: tuple[str, ...] = ("source.spm", "target.spm")
    """SentencePiece model(s), source then target (one: shared), copied beside the weights."""
    opt_in: bool = False
    """Its licence restricts use: pulling it needs accept_license=True."""
    routed: bool = True
    """False for a model known to be broken: it can be pulled but mt_svc never routes to it."""
    note: str = ""
    pinned: Mapping[str, str] = field(default_factory=dict)
    """file -> sha256 known in advance, checked besides the hub's own checksums."""

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({lang for pair in self.pairs for lang in pair}))


def _opus(
    source: str, target: str, repo: str, size_mb: int, *, token: str = "", licence: str = "CC-BY-4.0",
    routed: bool = True, note: str = "",
) -> HubModel:
    return HubModel(
        name=f"opus-mt-{source}-{target}",
        repo=f"Helsinki-NLP/{repo}",
        family="marian",
        pairs=frozenset({(source, target)}),
        licence=licence,
        size=size_mb * 1_000_000,
        description=f"OPUS-MT {LANGUAGES[source]} to {LANGUAGES[target]} ({repo})",
        target_tokens={target: token} if token else {},
        routed=routed,
        note=note,
    )


def _every_pair() -> frozenset[Pair]:
    return frozenset((s, t) for s in LANGUAGES for t in LANGUAGES if s != t)


MODELS: tuple[HubModel, ...] = (
    # OPUS-MT, one model per direction to or from English; tc-big where it is published.
    _opus("en", "es", "opus-mt-tc-big-en-es", 470),
    _opus("es", "en", "opus-mt-es-en", 310),
    _opus("en", "fr", "opus-mt-en-fr", 300),
    _opus("fr", "en", "opus-mt-fr-en", 300),
    _opus("en", "de", "opus-mt-en-de", 300),
    _opus("de", "en", "opus-mt-de-en", 300),
    _opus("en", "it", "opus-mt-en-it", 300),
    _opus("it", "en", "opus-mt-tc-big-it-en", 470),
    _opus("en", "pt", "opus-mt-tc-big-en-pt", 470, token=">>por<<"),
    _opus("pt", "en", "opus-mt-ROMANCE-en", 310),
    _opus("en", "ru", "opus-mt-en-ru", 310),
    _opus("ru", "en", "opus-mt-ru-en", 310),
    _opus("en", "ar", "opus-mt-tc-big-en-ar", 470, token=">>ara<<"),
    _opus("ar", "en", "opus-mt-tc-big-ar-en", 470),
    _opus("en", "zh", "opus-mt-en-zh", 310, token=">>cmn_Hans<<"),
    _opus("zh", "en", "opus-mt-zh-en", 310),
    _opus("ja", "en", "opus-mt-ja-en", 300),
    _opus("en", "ko", "opus-mt-tc-big-en-ko", 470, routed=False, note=(
        "published with a broken vocabulary: it translates into unrelated Korean "
        "(Helsinki-NLP/OPUS-MT-train issue #81); en->ko is routed to M2M-100 instead")),
    _opus("ko", "en", "opus-mt-ko-en", 310),
    _opus("en", "hi", "opus-mt-en-hi", 300),
    _opus("hi", "en", "opus-mt-hi-en", 300),
    _opus("en", "tr", "opus-mt-tc-big-en-tr", 470),
    _opus("tr", "en", "opus-mt-tr-en", 300, note=(
        "opus-mt-tc-big-tr-en was reported to loop on its output (OPUS-MT-train issue #96)")),
    _opus("en", "nl", "opus-mt-en-nl", 300),
    _opus("nl", "en", "opus-mt-nl-en", 300),
    _opus("en", "pl", "opus-mt-en-pl", 300),
    _opus("pl", "en", "opus-mt-pl-en", 300),
    # Many-to-many models: the gaps (en->ja, en->ko, pairs without English).
    HubModel(
        name="m2m100-418m", repo="facebook/m2m100_418M", family="m2m100", pairs=_every_pair(),
        licence="MIT", size=1_940_000_000,
        description="M2M-100 418M, 100 languages, any to any",
        tokenizer=("sentencepiece.bpe.model",),
    ),
    HubModel(
        name="madlad400-3b", repo="google/madlad400-3b-mt", family="madlad", pairs=_every_pair(),
        licence="Apache-2.0", size=11_800_000_000,
        description="MADLAD-400 3B, 400+ languages, any to any (slow on CPU: about 3 GB int8)",
        tokenizer=("spiece.model",),
    ),
    HubModel(
        name="nllb-200-distilled-600m", repo="facebook/nllb-200-distilled-600M", family="nllb",
        pairs=_every_pair(), licence="CC-BY-NC-4.0", size=2_500_000_000,
        description="NLLB-200 distilled 600M, 200 languages; non-commercial use only",
        tokenizer=("sentencepiece.bpe.model",), opt_in=True,
        note="licence CC-BY-NC-4.0: non-commercial use only; never chosen unless pulled",
    ),
)

CATALOGUE: Mapping[str, HubModel] = MappingProxyType({m.name: m for m in MODELS})
"""Every model `dragoman models pull` knows, in order of preference for routing."""

def lookup(catalogue: Mapping[str, HubModel], name: str) -> HubModel:
    try:
        return catalogue[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown translation model {name!r}; known: {', '.join(catalogue)}"
        ) from None


def as_model(entry: HubModel, manifest: Mapping[str, Any]) -> packaged.Model:
    """The installed model as `dragoman.models` sees it: the files its manifest records."""
    files = manifest.get("files")
    specs = tuple(
        packaged.FileSpec(name, int(spec["size"]), str(spec["sha256"]))
        for name, spec in (files.items() if isinstance(files, dict) else ())
    )
    return packaged.Model(
        name=entry.name, role="mt", languages=entry.languages, licence=entry.licence,
        version=str(manifest.get("version", "")), description=entry.description, files=specs,
    )


def status(
    models_dir: str | os.PathLike[str], name: str, catalogue: Mapping[str, HubModel] = CATALOGUE
) -> Status:
    """The cheap check of a pulled model: its manifest and file sizes."""
    entry = lookup(catalogue, name)
    folder = Path(models_dir) / entry.name
    if not folder.is_dir():
        return Status(State.MISSING, folder)
    manifest = packaged.read_manifest(folder)
    if manifest is None or not manifest.get("files"):
        return Status(State.DAMAGED, folder, f"no {MANIFEST}")
    return packaged.status(models_dir, as_model(entry, manifest))


def installed(
    models_dir: str | os.PathLike[str], catalogue: Mapping[str, HubModel] = CATALOGUE
) -> dict[str, Status]:
    """The status of every catalogue model (cheap: no hashing)."""
    return {name: status(models_dir, name, catalogue) for name in catalogue}


def require(
    models_dir: str | os.PathLike[str], name: str, catalogue: Mapping[str, HubModel] = CATALOGUE
) -> Path:
    """The folder of pulled model `name`, or FailedPrecondition saying how to pull it."""
    st = status(models_dir, name, catalogue)
    if st.usable and st.path is not None:
        return st.path
    if st.state is State.DAMAGED:
        raise FailedPrecondition(
            f"model {name} in {st.path} is damaged ({st.detail}); "
            f"run `dragoman models pull --force {name}`"
        )
    raise FailedPrecondition(
        f"model {name} is not installed in {Path(models_dir)}; run `{pull_command(catalogue[name])}`"
    )


def pull_command(entry: HubModel) -> str:
    """The command that installs `entry`."""
    accept = " --accept-license" if entry.opt_in else ""
    return f"dragoman models pull {entry.name}{accept}"


def table(models_dir: str | os.PathLike[str], catalogue: Mapping[str, HubModel] = CATALOGUE) -> str:
    """`dragoman models list`: one line per translation model of the catalogue."""
    rows = [("NAME", "PAIRS", "LICENCE", "DOWNLOAD", "STATE")]
    for name, st in installed(models_dir, catalogue).items():
        entry = catalogue[name]
        pairs = ",".join(f"{s}-{t}" for s, t in sorted(entry.pairs)) if len(entry.pairs) < 3 \
            else f"{len(entry.languages)} languages, any to any"
        state = st.state.value + (f" ({st.detail})" if st.detail and st.state is State.DAMAGED else "")
        if entry.note:
            state += f"; {entry.note}"
        rows.append((name, pairs, entry.licence, packaged.human_size(entry.size), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                     for r in rows)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an installed model folder ({} when it has none)."""
    return packaged.read_manifest(folder) or {}
