"""`dragoman models pull`: translation models from their publisher's hub, converted for CTranslate2.

The publisher of OPUS-MT, M2M-100, NLLB-200 and MADLAD-400 is the Hugging
Face hub (huggingface.co, or the mirror the hub_url setting names,
DRAGOMAN_HUB_URL).  A pull:

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
   renames the folder to `DIR/NAME`, as `dragoman_tools.install.install` does.

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
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TextIO

from dragoman.catalog.packaged import MANIFEST, ModelError, State, human_size, read_manifest
from dragoman.catalog.pulled import (
    CATALOGUE,
    QUANTIZATION,
    Format,
    HubModel,
    as_model,
    installed,
    lookup,
    pull_command,
    status,
)
from dragoman_tools import install
from dragoman_tools.install import Outcome

HUB_URL = "https://huggingface.co"
TOKEN_ENV = "HF_TOKEN"
"""A hub access token, sent when set (gated or private repositories)."""
CONVERT_EXTRA = "pip install 'dragoman[convert]'  (transformers and torch)"

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


# --------------------------------------------------------------------------- status


def hub_url(url: str | None = None) -> str:
    """The hub to use: `url` (the settings' hub_url, DRAGOMAN_HUB_URL), else huggingface.co."""
    return (url or HUB_URL).rstrip("/")




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
        self, repo: str, commit: str, file: RemoteFile, dest: Path, reporter: install._Reporter,
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
                    chunk = response.read(install.CHUNK)
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
                f"or point the hub_url setting (DRAGOMAN_HUB_URL) at a mirror of the hub"
            ) from None


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
        entry = lookup(catalogue, name)
        manifest = read_manifest(Path(models_dir) / name)
        if manifest is None:
            report[name] = [f"not installed (run `{pull_command(entry)}`)"]
            continue
        model = as_model(entry, manifest)
        report.update(install.verify(models_dir, [name], out=out, catalogue={name: model}))
    return report


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
    entry = lookup(catalogue, name)
    reporter = install._Reporter(out)
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
    with install._locked(root):
        current = status(root, name, catalogue)
        target = root / name
        if current.state is State.INSTALLED and not force:
            reporter.say(name, f"already installed in {target}, skipping")
            return Outcome.SKIPPED
        started = time.monotonic()
        staging = root / f".tmp-{name}"
        install._remove(staging)
        try:
            with tempfile.TemporaryDirectory(prefix=f".download-{name}-", dir=root) as tmp:
                source = Path(tmp)
                commit = _download(entry, hub, source, reporter)
                reporter.say(name, f"converting to CTranslate2 ({QUANTIZATION})…")
                _convert(entry, source, staging)
                for file in entry.tokenizer:
                    shutil.copyfile(source / file, staging / file)
            _write_manifest(entry, hub, commit, staging, reporter)
            install._replace(staging, target)
        except BaseException:
            install._remove(staging)
            raise
    size = sum(p.stat().st_size for p in target.iterdir())
    reporter.say(
        name, f"installed in {target} ({human_size(size)}, {time.monotonic() - started:.0f} s); "
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


def _download(entry: HubModel, hub: Hub, dest: Path, reporter: install._Reporter) -> str:
    reporter.say(entry.name, f"asking {hub.host} for {entry.repo}@{entry.revision}…")
    commit, listing = hub.listing(entry.repo, entry.revision)
    files = _select(entry, listing)
    total = sum(f.size for f in files)
    free = shutil.disk_usage(dest).free
    if free < 2 * total:
        raise ModelError(
            f"{entry.name}: not enough space in {dest.parent}: {human_size(free)} free, "
            f"about {human_size(2 * total)} needed"
        )
    reporter.say(entry.name, f"downloading {len(files)} files, {human_size(total)} "
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
    entry: HubModel, hub: Hub, commit: str, folder: Path, reporter: install._Reporter
) -> None:
    files = {}
    for path in sorted(folder.iterdir()):
        size, sha256 = install._hash_file(path, reporter)
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
