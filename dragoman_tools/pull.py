"""`dragoman models pull`: models from their publisher's hub, in all three roles.

The publisher of every model of `dragoman.catalog.pulled.HUB` is the Hugging
Face hub (huggingface.co, or the mirror the hub_url setting names,
DRAGOMAN_HUB_URL): Whisper for faster-whisper (speech recognition), OPUS-MT,
M2M-100, NLLB-200 and MADLAD-400 (translation), Piper voices. A pull:

1. checks the licence: a restrictive one needs `accept=[licence or model
   name]` (`--accept-licence`), and is printed;
2. takes the model's lock, `DIR/.lock-NAME` (a second pull of the same model
   waits for the first, then finds it installed; `wait=False` fails instead);
3. asks the hub which files the repository has at the revision, with each
   file's size and checksum (LFS sha256, or git blob id for small files),
   resolves the revision to a commit, and checks the catalogue's pins (size,
   sha256) against that listing before downloading anything;
4. checks the free space against what is left to download (and the converted
   copy, for translation models);
5. downloads each file to `DIR/.partial-NAME/FILE.part`, resuming what an
   interrupted pull left there with an HTTP Range request, and checks every
   byte at the end against the hub's checksum and the catalogue's sha256 and
   md5 where it pins them. A broken connection or an unreachable hub keeps the
   .part files for the next pull (of the same commit); a checksum mismatch
   removes the file; a full disk (ENOSPC) removes them all;
6. translation models are converted with CTranslate2's converter, int8
   weights (`TransformersConverter` for hub-format models, which needs the
   optional `convert` extra: transformers and torch; `OpusMTConverter` for
   Marian's own format) into `DIR/.tmp-NAME`, their SentencePiece models
   beside; speech models and voices are moved there as published;
7. writes the `.installed.json` manifest (hub commit, every file's size and
   sha256, which files the catalogue pinned) and renames the folder to
   `DIR/NAME`, as `dragoman_tools.install.install` does.

Nothing half-installed is ever at `DIR/NAME`. `status()` and `require()` are
cheap (manifest and sizes); `verify()` re-hashes every file against the
manifest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TextIO

from dragoman.catalog.packaged import MANIFEST, ModelError, State, human_size, read_manifest
from dragoman.catalog.pulled import (
    HUB,
    QUANTIZATION,
    Format,
    HubFile,
    HubModel,
    accepted,
    as_model,
    installed,
    licence_token,
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
_UNVERIFIED_TEXT = (
    "dragoman's maintainers have not checked the licence its MODEL_CARD states; read that "
    "MODEL_CARD (installed beside the voice) before you use the voice."
)
_RESEARCH_TEXT = "research use only, NON-COMMERCIAL; read the MODEL_CARD installed beside it."

# Files a converter reads, by repository format. Weights: safetensors when published.
_WANTED: dict[Format, tuple[str, ...]] = {
    "transformers": ("*.json", "*.spm", "*.model", "*.safetensors", "pytorch_model*.bin"),
    "marian": ("*.yml", "*.yaml", "*.npz", "*.spm"),
}
# Files installed as published besides the catalogue's own: (pattern, at least one needed).
# faster-whisper's download_model takes vocabulary.* and preprocessor_config.json too.
_ALSO: dict[Format, tuple[tuple[str, bool], ...]] = {
    "ct2": (("vocabulary.*", True), ("preprocessor_config.json", False)),
    "piper": (),
}
PARTIAL = ".partial-"
"""`DIR/.partial-NAME/`: the downloads of an unfinished pull, kept for the next one."""
LOCK = ".lock-"
"""`DIR/.lock-NAME`: held while model NAME is pulled."""


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


class Interrupted(ModelError):
    """The hub could not be reached or a download broke off: what was downloaded is kept."""


class DiskFull(ModelError):
    """The disk filled up mid-download: the downloads were removed."""


class _Digest:
    """The checksums of one file as its bytes arrive: sha256, md5 and the git blob id."""

    def __init__(self, size: int) -> None:
        self.reset(size)

    def reset(self, size: int) -> None:
        self.sha256, self.md5, self.sha1, self.size = (
            hashlib.sha256(), hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), 0)
        self.sha1.update(b"blob %d\0" % size)

    def add(self, chunk: bytes) -> None:
        for h in (self.sha256, self.md5, self.sha1):
            h.update(chunk)
        self.size += len(chunk)

    def add_file(self, path: Path) -> None:
        with path.open("rb") as fh:
            while chunk := fh.read(install.CHUNK):
                self.add(chunk)

    def problem(self, file: RemoteFile, pinned: HubFile | None) -> str:
        """What does not match (the hub's listing first, then the catalogue's pins), or ""."""
        sha256, md5, sha1 = self.sha256.hexdigest(), self.md5.hexdigest(), self.sha1.hexdigest()
        if self.size != file.size:
            return f"{self.size:,} bytes, the hub lists {file.size:,}"
        if file.sha256 and sha256 != file.sha256:
            return f"sha256 {sha256}, the hub lists {file.sha256}"
        if file.git_sha1 and sha1 != file.git_sha1:
            return f"git blob id {sha1}, the hub lists {file.git_sha1}"
        if pinned is not None and pinned.sha256 and sha256 != pinned.sha256:
            return f"sha256 {sha256}, the catalogue pins {pinned.sha256}"
        if pinned is not None and pinned.md5 and md5 != pinned.md5:
            return f"md5 {md5}, the catalogue pins {pinned.md5}"
        return ""


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
        self, repo: str, commit: str, file: RemoteFile, part: Path, reporter: install._Reporter,
        pinned: HubFile | None = None,
    ) -> None:
        """Downloads `file` into `part`, resuming from the bytes `part` already holds, and
        checks the whole against the hub's checksum and `pinned` (the catalogue's).

        A broken connection keeps `part` (Interrupted: the next pull resumes); a wrong
        checksum removes it; a full disk removes it (DiskFull).
        """
        have = part.stat().st_size if part.exists() else 0
        if have > file.size:
            part.unlink()
            have = 0
        digest = _Digest(file.size)
        if have:
            digest.add_file(part)
        if have < file.size:
            if have:
                reporter.say(repo, f"resuming {file.name} at {human_size(have)} "
                                   f"of {human_size(file.size)}")
            have = self._fetch(repo, commit, file, part, have, digest, reporter)
        if have < file.size:
            raise Interrupted(
                f"the download of {repo} {file.name} from {self.host} broke off after "
                f"{have:,} of {file.size:,} bytes; run the pull again to resume it "
                f"(kept in {part.parent})"
            )
        problem = digest.problem(file, pinned)
        if problem:
            part.unlink()
            raise ModelError(
                f"{repo}: {file.name} does not verify ({problem}); the download is corrupt or "
                f"the file changed. Nothing was installed."
            )

    def _fetch(
        self, repo: str, commit: str, file: RemoteFile, part: Path, have: int, digest: _Digest,
        reporter: install._Reporter,
    ) -> int:
        """Appends the bytes from `have` on to `part`; returns how many `part` holds."""
        url = f"{self.url}/{repo}/resolve/{commit}/{urllib.parse.quote(file.name)}"
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._open(url, repo, commit, headers) as response:
            if have and response.status != 206:  # the server ignores ranges: start over
                have = 0
                digest.reset(file.size)
            with part.open("ab" if have else "wb") as out, \
                    reporter.bar(file.name, file.size) as bar:
                bar.advance(have)
                while have <= file.size:
                    try:
                        chunk = response.read(install.CHUNK)
                    except (OSError, http.client.HTTPException):
                        break  # what arrived is kept: the next pull resumes from there
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                        out.flush()
                    except OSError as err:
                        if err.errno != errno.ENOSPC:
                            raise
                        out.close()
                        part.unlink(missing_ok=True)
                        raise DiskFull(
                            f"no space left on the device of {part.parent} while writing "
                            f"{file.name} ({have:,} of {file.size:,} bytes written): free "
                            f"{human_size(file.size - have)} or more and run the pull again; "
                            f"nothing was installed"
                        ) from None
                    digest.add(chunk)
                    have += len(chunk)
                    bar.advance(len(chunk))
        return have

    def _open(self, url: str, repo: str, revision: str, headers: Mapping[str, str] = {}) -> Any:  # noqa: B006 - read only
        request = urllib.request.Request(url, headers={"User-Agent": "dragoman", **headers})
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
            raise Interrupted(
                f"cannot reach {self.host} ({reason}); check the network and proxy settings, "
                f"or point the hub_url setting (DRAGOMAN_HUB_URL) at a mirror of the hub"
            ) from None


def verify(
    models_dir: str | os.PathLike[str],
    names: Sequence[str] = (),
    *,
    out: TextIO | None = None,
    catalogue: Mapping[str, HubModel] = HUB,
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
    accept: Collection[str] = (),
    accept_license: bool = False,
    force: bool = False,
    wait: bool = True,
    out: TextIO | None = None,
    catalogue: Mapping[str, HubModel] = HUB,
) -> Outcome:
    """Downloads, verifies, (converts) and installs model `name` into `models_dir`.

    `accept` names the restrictive licences (or models) the user accepts, as
    `--accept-licence` does; `accept_license=True` accepts whatever licence
    `name` has. A model already installed is skipped unless `force`. While
    another pull of the same model runs, this one waits for it (`wait`) or
    fails. Progress goes to `out` (default stderr). Raises ModelError on
    failure (DIR/NAME untouched), InvalidArgument for an unknown name.
    """
    entry = lookup(catalogue, name)
    reporter = install._Reporter(out)
    if not (accept_license or accepted(entry, accept)):
        raise ModelError(
            f"{name} is licensed {entry.licence}: {_licence_text(entry)} "
            f"To accept it, run `{pull_command(entry)}`"
        )
    if entry.opt_in:
        reporter.say(name, f"licence {entry.licence} accepted: {_licence_text(entry)}")
    if not entry.routed:
        reporter.say(name, f"warning: {entry.note}; mt_svc will not use it")
    if entry.converted:
        _check_converter(entry)
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    hub = hub or Hub()
    with _model_lock(root, name, reporter, wait):
        current = status(root, name, catalogue)
        target = root / name
        if current.state is State.INSTALLED and not force:
            reporter.say(name, f"already installed in {target}, skipping")
            return Outcome.SKIPPED
        started = time.monotonic()
        staging, partial = root / f".tmp-{name}", root / f"{PARTIAL}{name}"
        install._remove(staging)
        try:
            commit, files = _plan(entry, hub, reporter)
            _start_partial(partial, commit)
            _check_space(entry, files, partial)
            reporter.say(name, f"downloading {len(files)} files, "
                               f"{human_size(sum(f.size for f, _ in files))} (commit {commit[:12]})")
            for file, pinned in files:
                done, part = partial / _basename(file), partial / f"{_basename(file)}.part"
                if done.is_file():  # finished by an earlier pull: checked again, not fetched
                    done.rename(part)
                hub.download(entry.repo, commit, file, part, reporter, pinned)
                part.rename(done)
                reporter.say(name, f"{file.name} verified ✓")
            if entry.converted:
                reporter.say(name, f"converting to CTranslate2 ({QUANTIZATION})…")
                _convert(entry, partial, staging)
                for tokenizer in entry.tokenizer:
                    shutil.copyfile(partial / tokenizer, staging / tokenizer)
            else:
                staging.mkdir()
                for file, _ in files:
                    (partial / _basename(file)).rename(staging / _basename(file))
            _write_manifest(entry, hub, commit, staging, files, reporter)
            install._replace(staging, target)
            install._remove(partial)
        except Interrupted:
            install._remove(staging)  # the downloads stay for the next pull
            raise
        except Exception:
            install._remove(staging)
            install._remove(partial)
            raise
        except BaseException:  # Ctrl-C: keep the downloads, as for a broken connection
            install._remove(staging)
            raise
    size = sum(p.stat().st_size for p in target.iterdir())
    reporter.say(
        name, f"installed in {target} ({human_size(size)}, {time.monotonic() - started:.0f} s); "
        f"licence {entry.licence}"
    )
    return Outcome.INSTALLED


def _licence_text(entry: HubModel) -> str:
    if entry.licence in _LICENCE_TEXT:
        return _LICENCE_TEXT[entry.licence]
    if entry.licence.startswith("unverified"):
        return _UNVERIFIED_TEXT
    if "non-commercial" in entry.licence:
        return _RESEARCH_TEXT
    return entry.note


@contextlib.contextmanager
def _model_lock(root: Path, name: str, reporter: install._Reporter, wait: bool) -> Iterator[None]:
    """One pull of model `name` at a time in `root` (an flock, released if the process dies)."""
    with (root / f"{LOCK}{name}").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise ModelError(f"another pull of {name} is running in {root}; "
                                 f"try again when it has finished") from None
            reporter.say(name, f"another pull of {name} is running in {root}; waiting for it…")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


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


def _basename(file: RemoteFile) -> str:
    return file.name.rsplit("/", 1)[-1]


def _plan(
    entry: HubModel, hub: Hub, reporter: install._Reporter
) -> tuple[str, list[tuple[RemoteFile, HubFile | None]]]:
    """The commit and the files to download, each with the catalogue's pin (if any), after
    checking the pins against the hub's listing."""
    reporter.say(entry.name, f"asking {hub.host} for {entry.repo}@{entry.revision}…")
    commit, listing = hub.listing(entry.repo, entry.revision)
    if entry.converted:
        return commit, [(f, None) for f in _select(entry, listing)]
    by_path = {f.name: f for f in listing}
    chosen: list[tuple[RemoteFile, HubFile | None]] = []
    for spec in entry.files:
        remote = by_path.get(spec.path)
        if remote is None:
            raise ModelError(f"{entry.repo} has no {spec.path} at commit {commit[:12]}; "
                             f"was it renamed or removed upstream?")
        if spec.size and remote.size != spec.size or spec.sha256 and remote.sha256 \
                and remote.sha256 != spec.sha256:
            listed = f"{remote.size:,} bytes" + (f", sha256 {remote.sha256}" if remote.sha256 else "")
            pinned = f"{spec.size:,} bytes" + (f", sha256 {spec.sha256}" if spec.sha256 else "")
            raise ModelError(
                f"{entry.repo}: the hub lists {spec.path} at commit {commit[:12]} as {listed}, "
                f"the catalogue pins {pinned}: the file changed upstream. Nothing was downloaded."
            )
        chosen.append((remote, spec))
    top = [f for f in listing if "/" not in f.name]
    for pattern, needed in _ALSO[entry.format]:
        found = [f for f in top if fnmatch(f.name, pattern)]
        if needed and not found:
            raise ModelError(f"{entry.repo} has no {pattern} at commit {commit[:12]}; "
                             f"is it the right repository?")
        chosen.extend((f, None) for f in found)
    return commit, chosen


def _select(entry: HubModel, files: Iterable[RemoteFile]) -> list[RemoteFile]:
    wanted = [f for f in files if any(fnmatch(f.name, p) for p in _WANTED[entry.format])
              and "/" not in f.name]
    if any(f.name.endswith(".safetensors") for f in wanted):
        wanted = [f for f in wanted if not fnmatch(f.name, "pytorch_model*.bin")]
    names = {f.name for f in wanted}
    if missing := [t for t in entry.tokenizer if t not in names]:
        raise ModelError(f"{entry.repo} has no {', '.join(missing)}; is it the right repository?")
    return wanted


_COMMIT_FILE = ".commit"


def _start_partial(partial: Path, commit: str) -> None:
    """`partial` ready for downloads of `commit`: what an earlier pull of the same commit
    left is kept (and resumed), anything else removed."""
    marker = partial / _COMMIT_FILE
    if partial.is_dir() and not (marker.is_file() and marker.read_text() == commit):
        install._remove(partial)
    partial.mkdir(exist_ok=True)
    marker.write_text(commit)


def _check_space(
    entry: HubModel, files: Sequence[tuple[RemoteFile, HubFile | None]], partial: Path
) -> None:
    """Fails before downloading when what is left to download (and, for translation models,
    the converted copy) does not fit."""
    left = 0
    for file, _ in files:
        done = partial / _basename(file)
        part = partial / f"{_basename(file)}.part"
        have = done.stat().st_size if done.is_file() else part.stat().st_size if part.is_file() else 0
        left += max(file.size - have, 0)
    needed = left + (sum(f.size for f, _ in files) if entry.converted else 0)
    free = shutil.disk_usage(partial).free
    if free < needed:
        raise DiskFull(
            f"{entry.name}: not enough space in {partial.parent}: {human_size(free)} free, "
            f"about {human_size(needed)} needed"
        )


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
    entry: HubModel, hub: Hub, commit: str, folder: Path,
    downloaded: Sequence[tuple[RemoteFile, HubFile | None]], reporter: install._Reporter,
) -> None:
    files = {}
    for path in sorted(folder.iterdir()):
        size, sha256 = install._hash_file(path, reporter)
        files[path.name] = {"size": size, "sha256": sha256}
    pinned = sorted(_basename(f) for f, spec in downloaded
                    if spec is not None and (spec.sha256 or spec.md5))
    manifest = {
        "name": entry.name,
        "version": commit,
        "sources": [f"{hub.url}/{entry.repo}@{commit}"],
        "files": files,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hub": {
            "repo": entry.repo, "revision": entry.revision, "commit": commit, "role": entry.role,
            "family": entry.family, "format": entry.format, "licence": entry.licence,
            **({"quantization": QUANTIZATION} if entry.converted else {}),
            "downloaded": {
                _basename(f): {"path": f.name, "size": f.size, "sha256": f.sha256,
                               "git_sha1": f.git_sha1} for f, _ in downloaded},
            "pinned": pinned,
            "trust": "pinned" if pinned and len(pinned) == len(downloaded) else "first-pull",
            **({"accepted_licence": licence_token(entry)} if entry.opt_in else {}),
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
