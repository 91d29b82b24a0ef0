"""`dragoman models pull`: translation models from their publisher's hub, converted for CTranslate2.

The publisher of OPUS-MT, M2M-100, NLLB-200 and MADLAD-400 is the Hugging
Face hub (huggingface.co, or the mirror named by DRAGOMAN_HUB_URL or
`hub_url=`). A pull:

1. asks the hub which files the repository has at the revision, with each
   file's size and checksum (LFS sha256, or git blob id for small files),
   and resolves the revision to a commit;
2. downloads the files the converter needs, with progress, into
   `DIR/.download-NAME-*`, checking every byte against the hub's checksum
   (and the catalogue's own sha256 where it pins one);
3. converts them with CTranslate2's converter, int8 weights
   (`TransformersConverter` for hub-format models, which needs the optional
   `convert` extra: transformers and torch; `OpusMTConverter` for models in
   Marian's own format, which needs nothing more), into `DIR/.tmp-NAME`;
4. copies the SentencePiece models beside the weights, writes the
   `.installed.json` manifest (hub commit, every file's size and sha256) and
   renames the folder to `DIR/NAME`, as `dragoman.models.install` does.

Nothing half-built is left behind. `status()` and `require()` are cheap
(manifest and sizes); `verify()` re-hashes every file against the manifest.
NLLB-200 is licensed for non-commercial use only: pulling it needs an
explicit `accept_license=True`, and its licence is printed.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TextIO

from dragoman import models
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import LANGUAGES
from dragoman.models import MANIFEST, ModelError, Outcome, State, Status

HUB_URL = "https://huggingface.co"
HUB_URL_ENV = "DRAGOMAN_HUB_URL"
"""Overrides HUB_URL (a mirror, or a local test server)."""
TOKEN_ENV = "HF_TOKEN"
"""A hub access token, sent when set (gated or private repositories)."""
QUANTIZATION = "int8"
CONVERT_EXTRA = "pip install 'dragoman[convert]'  (transformers and torch)"

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

_LICENCE_TEXT = {
    "CC-BY-NC-4.0": (
        "Creative Commons Attribution-NonCommercial 4.0 International: you may use and share "
        "the model and its translations with attribution, for NON-COMMERCIAL purposes only "
        "(https://creativecommons.org/licenses/by-nc/4.0/legalcode)."
    ),
}

# Files a converter reads, by repository format. Weights: safetensors when published.
_WANTED: dict[Format, tuple[str, ...]] = {
    "transformers": ("*.json", "*.spm", "*.model", "*.safetensors", "pytorch_model*.bin"),
    "marian": ("*.yml", "*.yaml", "*.npz", "*.spm"),
}


def hub_url(url: str | None = None) -> str:
    """The hub to use: `url`, else $DRAGOMAN_HUB_URL, else huggingface.co."""
    return (url or os.environ.get(HUB_URL_ENV) or HUB_URL).rstrip("/")


# --------------------------------------------------------------------------- the hub's HTTP API


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file of a hub repository at one commit, with the checksum the hub gives for it."""

    name: str
    size: int
    sha256: str = ""
    """For files stored in LFS (the weights)."""
    git_sha1: str = ""
    """The git blob id, for small files stored in git."""


class Hub:
    """The subset of the Hugging Face hub API a pull needs, with errors that say what to do."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = hub_url(url)
        self.host = urllib.parse.urlsplit(self.url).netloc or self.url
        self._token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self._timeout_s = timeout_s

    def listing(self, repo: str, revision: str) -> tuple[str, list[RemoteFile]]:
        """The commit `revision` resolves to, and the repository's files there."""
        url = f"{self.url}/api/models/{repo}/revision/{urllib.parse.quote(revision, safe='')}?blobs=true"
        with self._open(url, repo, revision) as response:
            data = json.load(response)
        files = []
        for sibling in data.get("siblings", []):
            lfs = sibling.get("lfs") or {}
            files.append(RemoteFile(
                name=sibling["rfilename"],
                size=int(lfs.get("size", sibling.get("size", -1))),
                sha256=lfs.get("sha256", ""),
                git_sha1="" if lfs else sibling.get("blobId", ""),
            ))
        return str(data.get("sha") or revision), files

    def download(
        self, repo: str, commit: str, file: RemoteFile, dest: Path, reporter: models._Reporter,
        pinned: str = "",
    ) -> None:
        """Downloads `file` to `dest`, checking its size and checksum(s) while writing."""
        url = f"{self.url}/{repo}/resolve/{commit}/{urllib.parse.quote(file.name)}"
        sha256, sha1, size = hashlib.sha256(), hashlib.sha1(), 0
        sha1.update(b"blob %d\0" % file.size)
        with self._open(url, repo, commit) as response, dest.open("wb") as out, \
                reporter.bar(file.name, file.size) as bar:
            while True:
                try:
                    chunk = response.read(models.CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise ModelError(
                        f"the download of {repo} {file.name} from {self.host} broke off ({err}); "
                        f"nothing was installed, run the pull again"
                    ) from None
                if not chunk:
                    break
                out.write(chunk)
                sha256.update(chunk)
                sha1.update(chunk)
                size += len(chunk)
                bar.advance(len(chunk))
        problem = ""
        if size != file.size:
            problem = f"{size:,} bytes, the hub lists {file.size:,}"
        elif file.sha256 and sha256.hexdigest() != file.sha256:
            problem = f"sha256 {sha256.hexdigest()}, the hub lists {file.sha256}"
        elif file.git_sha1 and sha1.hexdigest() != file.git_sha1:
            problem = f"git blob id {sha1.hexdigest()}, the hub lists {file.git_sha1}"
        elif pinned and sha256.hexdigest() != pinned:
            problem = f"sha256 {sha256.hexdigest()}, the catalogue pins {pinned}"
        if problem:
            raise ModelError(
                f"{repo}: {file.name} does not verify ({problem}); the download is corrupt or "
                f"the file changed. Nothing was installed."
            )

    def _open(self, url: str, repo: str, revision: str) -> Any:
        request = urllib.request.Request(url, headers={"User-Agent": "dragoman"})
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            return urllib.request.urlopen(request, timeout=self._timeout_s)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise ModelError(
                    f"{self.host} refused {repo} (HTTP {err.code}): the model is gated or private; "
                    f"accept its terms on {self.host} and set {TOKEN_ENV} to an access token"
                ) from None
            if err.code == 404:
                raise ModelError(
                    f"{self.host} has no {repo} at revision {revision} (HTTP 404): the repository "
                    f"was renamed or removed, or the mirror lacks it"
                ) from None
            raise ModelError(f"{self.host} answered HTTP {err.code} for {url}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ModelError(
                f"cannot reach {self.host} ({reason}); check the network and proxy settings, "
                f"or point {HUB_URL_ENV} at a mirror of the hub"
            ) from None


# --------------------------------------------------------------------------- status


def _lookup(catalogue: Mapping[str, HubModel], name: str) -> HubModel:
    try:
        return catalogue[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown translation model {name!r}; known: {', '.join(catalogue)}"
        ) from None


def _as_model(entry: HubModel, manifest: Mapping[str, Any]) -> models.Model:
    """The installed model as `dragoman.models` sees it: the files its manifest records."""
    files = manifest.get("files")
    specs = tuple(
        models.FileSpec(name, int(spec["size"]), str(spec["sha256"]))
        for name, spec in (files.items() if isinstance(files, dict) else ())
    )
    return models.Model(
        name=entry.name, role="mt", languages=entry.languages, licence=entry.licence,
        version=str(manifest.get("version", "")), description=entry.description, files=specs,
    )


def status(
    models_dir: str | os.PathLike[str], name: str, catalogue: Mapping[str, HubModel] = CATALOGUE
) -> Status:
    """The cheap check of a pulled model: its manifest and file sizes."""
    entry = _lookup(catalogue, name)
    folder = Path(models_dir) / entry.name
    if not folder.is_dir():
        return Status(State.MISSING, folder)
    manifest = models._read_manifest(folder)
    if manifest is None or not manifest.get("files"):
        return Status(State.DAMAGED, folder, f"no {MANIFEST}")
    return models.status(models_dir, _as_model(entry, manifest))


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


def verify(
    models_dir: str | os.PathLike[str],
    names: Sequence[str] = (),
    *,
    out: TextIO | None = None,
    catalogue: Mapping[str, HubModel] = CATALOGUE,
) -> dict[str, list[str]]:
    """Re-hashes every file of the pulled models `names` (default: every installed one)."""
    names = list(names) or [n for n, st in installed(models_dir, catalogue).items()
                            if st.state is not State.MISSING]
    report: dict[str, list[str]] = {}
    for name in names:
        entry = _lookup(catalogue, name)
        manifest = models._read_manifest(Path(models_dir) / name)
        if manifest is None:
            report[name] = [f"not installed (run `{pull_command(entry)}`)"]
            continue
        model = _as_model(entry, manifest)
        report.update(models.verify(models_dir, [name], out=out, catalogue={name: model}))
    return report


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
        rows.append((name, pairs, entry.licence, models._human(entry.size), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                     for r in rows)


# --------------------------------------------------------------------------- pull


def pull(
    models_dir: str | os.PathLike[str],
    name: str,
    *,
    hub: Hub | None = None,
    accept_license: bool = False,
    force: bool = False,
    out: TextIO | None = None,
    catalogue: Mapping[str, HubModel] = CATALOGUE,
) -> Outcome:
    """Downloads, verifies, converts and installs model `name` into `models_dir`.

    A model already installed is skipped unless `force`. Progress goes to
    `out` (default stderr). Raises ModelError on failure (nothing is left
    behind), InvalidArgument for an unknown name.
    """
    entry = _lookup(catalogue, name)
    reporter = models._Reporter(out)
    if entry.opt_in and not accept_license:
        raise ModelError(
            f"{name} is licensed {entry.licence}: {_LICENCE_TEXT.get(entry.licence, entry.note)} "
            f"To accept it, run `{pull_command(entry)}`"
        )
    if entry.opt_in:
        reporter.say(name, f"licence {entry.licence} accepted: {_LICENCE_TEXT.get(entry.licence, '')}")
    if not entry.routed:
        reporter.say(name, f"warning: {entry.note}; mt_svc will not use it")
    _check_converter(entry)
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    hub = hub or Hub()
    with models._locked(root):
        current = status(root, name, catalogue)
        target = root / name
        if current.state is State.INSTALLED and not force:
            reporter.say(name, f"already installed in {target}, skipping")
            return Outcome.SKIPPED
        started = time.monotonic()
        staging = root / f".tmp-{name}"
        models._remove(staging)
        try:
            with tempfile.TemporaryDirectory(prefix=f".download-{name}-", dir=root) as tmp:
                source = Path(tmp)
                commit = _download(entry, hub, source, reporter)
                reporter.say(name, f"converting to CTranslate2 ({QUANTIZATION})…")
                _convert(entry, source, staging)
                for file in entry.tokenizer:
                    shutil.copyfile(source / file, staging / file)
            _write_manifest(entry, hub, commit, staging, reporter)
            models._replace(staging, target)
        except BaseException:
            models._remove(staging)
            raise
    size = sum(p.stat().st_size for p in target.iterdir())
    reporter.say(
        name, f"installed in {target} ({models._human(size)}, {time.monotonic() - started:.0f} s); "
        f"licence {entry.licence}"
    )
    return Outcome.INSTALLED


def _check_converter(entry: HubModel) -> None:
    """Fails before any download when the converter `entry` needs is not installed."""
    if importlib.util.find_spec("ctranslate2") is None:
        raise ModelError(f"converting {entry.name} needs ctranslate2: pip install ctranslate2")
    if entry.format == "transformers":
        missing = [m for m in ("transformers", "torch") if importlib.util.find_spec(m) is None]
        if missing:
            raise ModelError(
                f"converting {entry.name} from the hub needs {' and '.join(missing)} "
                f"(not installed): {CONVERT_EXTRA}"
            )


def _select(entry: HubModel, files: Iterable[RemoteFile]) -> list[RemoteFile]:
    wanted = [f for f in files if any(fnmatch(f.name, p) for p in _WANTED[entry.format])
              and "/" not in f.name]
    if any(f.name.endswith(".safetensors") for f in wanted):
        wanted = [f for f in wanted if not fnmatch(f.name, "pytorch_model*.bin")]
    names = {f.name for f in wanted}
    if missing := [t for t in entry.tokenizer if t not in names]:
        raise ModelError(f"{entry.repo} has no {', '.join(missing)}; is it the right repository?")
    return wanted


def _download(entry: HubModel, hub: Hub, dest: Path, reporter: models._Reporter) -> str:
    reporter.say(entry.name, f"asking {hub.host} for {entry.repo}@{entry.revision}…")
    commit, listing = hub.listing(entry.repo, entry.revision)
    files = _select(entry, listing)
    total = sum(f.size for f in files)
    free = shutil.disk_usage(dest).free
    if free < 2 * total:
        raise ModelError(
            f"{entry.name}: not enough space in {dest.parent}: {models._human(free)} free, "
            f"about {models._human(2 * total)} needed"
        )
    reporter.say(entry.name, f"downloading {len(files)} files, {models._human(total)} "
                             f"(commit {commit[:12]})")
    for file in files:
        hub.download(entry.repo, commit, file, dest / file.name, reporter, entry.pinned.get(file.name, ""))
        reporter.say(entry.name, f"{file.name} verified ✓")
    return commit


def _convert(entry: HubModel, source: Path, staging: Path) -> None:
    import ctranslate2

    converter: Any
    if entry.format == "marian":
        converter = ctranslate2.converters.OpusMTConverter(str(source))
    else:
        converter = ctranslate2.converters.TransformersConverter(str(source))
    try:
        converter.convert(str(staging), quantization=QUANTIZATION, force=True)
    except Exception as err:  # noqa: BLE001 - any converter failure means a bad download or model
        raise ModelError(f"converting {entry.name} ({entry.repo}) failed: {err}") from err
    if not ctranslate2.contains_model(str(staging)):
        raise ModelError(f"converting {entry.name} produced no CTranslate2 model")


def _write_manifest(
    entry: HubModel, hub: Hub, commit: str, folder: Path, reporter: models._Reporter
) -> None:
    files = {}
    for path in sorted(folder.iterdir()):
        size, sha256 = models._hash_file(path, reporter)
        files[path.name] = {"size": size, "sha256": sha256}
    manifest = {
        "name": entry.name,
        "version": commit,
        "sources": [f"{hub.url}/{entry.repo}@{commit}"],
        "files": files,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hub": {
            "repo": entry.repo, "revision": entry.revision, "commit": commit,
            "family": entry.family, "licence": entry.licence, "quantization": QUANTIZATION,
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an installed model folder ({} when it has none)."""
    return models._read_manifest(folder) or {}


__all__ = [
    "CATALOGUE", "HUB_URL", "HUB_URL_ENV", "MODELS", "Hub", "HubModel", "RemoteFile", "hub_url",
    "installed", "pull", "pull_command", "read_manifest", "require", "status", "table", "verify",
]
