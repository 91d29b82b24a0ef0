"""One catalogue across the three roles: every model dragoman knows, packaged or pulled.

`packaged` (PyPI/npm wheels: `dragoman models install`) and `pulled` (the
hub: `dragoman models pull`) keep their own records, because they are fetched
and checked differently; this module is the view the rest reads them through,
the same fields for every model:

    from dragoman.catalog import catalogue
    catalogue.for_language("de", "tts")          # strongest first
    entry.status(models_dir).usable              # installed? (manifest and sizes)
    catalogue.by_role()["stt"]

Languages are the product languages (`dragoman.languages.SUPPORTED`) a model
serves: "pt-BR" and "en-US" count as "pt" and "en", Whisper's other 84
languages are left out. Services may read this at run time: it imports no
service and hashes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from dragoman.catalog import packaged, pulled
from dragoman.catalog.packaged import State, Status, human_size
from dragoman.catalog.pulled import ROLES, Device, HubModel, Pair, Role
from dragoman.errors import InvalidArgument
from dragoman.languages import SUPPORTED, normalise, primary_subtag

Origin = Literal["packaged", "bundled", "hub"]
"""Where a model comes from: a package registry (`models install`), inside an installed
Python package (nothing to install), or the model hub (`models pull`)."""

__all__ = [
    "ENTRIES", "ROLES", "Device", "Entry", "Origin", "Role", "by_role", "entries", "for_language",
    "installed", "lookup", "table",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One model of the catalogue, whatever its origin. Stable fields; `record` is the
    origin's own record (`packaged.Model` or `pulled.HubModel`) for the tools that fetch it."""

    name: str
    role: Role
    languages: tuple[str, ...]
    """Product languages it serves (hears, translates from or into, or speaks), sorted."""
    licence: str
    opt_in: bool
    """Its licence restricts use: installing it needs `--accept-licence`."""
    size: int
    """Bytes to download (approximate for hub models)."""
    device: Device
    """`cuda`: needs a GPU for the latency budget; `cpu`: runs anywhere."""
    rank: int
    """Higher is stronger within the role (`pulled.RANKS`)."""
    origin: Origin
    description: str
    pairs: frozenset[Pair]
    """Translation: the (source, target) pairs it serves; empty for the other roles."""
    routed: bool
    """False for a model that can be installed but that the services never use."""
    note: str
    record: packaged.Model | HubModel

    def status(self, models_dir: str | os.PathLike[str]) -> Status:
        """Installed or not, cheaply: the manifest and the file sizes, no hashing."""
        if isinstance(self.record, HubModel):
            return pulled.status(models_dir, self.name, {self.name: self.record})
        return packaged.status(models_dir, self.record)

    def installed(self, models_dir: str | os.PathLike[str]) -> bool:
        return self.status(models_dir).usable

    def serves(self, language: str) -> bool:
        """Whether it serves the product language `language` ("de"; not a full tag)."""
        return language in self.languages

    @property
    def install_command(self) -> str:
        """What a person runs to install it ("" for a bundled model)."""
        if isinstance(self.record, HubModel):
            return pulled.pull_command(self.record)
        return "" if self.record.bundled else f"dragoman models install {self.name}"


def _product_languages(codes: Iterable[str]) -> tuple[str, ...]:
    primaries = {primary_subtag(code) for code in codes}
    return tuple(lang for lang in SUPPORTED if lang in primaries)


def _from_packaged(model: packaged.Model) -> Entry:
    languages = _product_languages(model.languages)
    pairs = frozenset((s, t) for s in languages for t in languages if s != t) \
        if model.role == "mt" else frozenset()
    return Entry(
        name=model.name, role=model.role, languages=languages, licence=model.licence,
        opt_in=model.opt_in, size=model.size, device=model.device, rank=model.rank,
        origin="bundled" if model.bundled else "packaged", description=model.description,
        pairs=pairs, routed=True, note="", record=model,
    )


def _from_hub(model: HubModel) -> Entry:
    return Entry(
        name=model.name, role=model.role, languages=_product_languages(model.languages),
        licence=model.licence, opt_in=model.opt_in, size=model.size, device=model.device,
        rank=model.rank, origin="hub", description=model.description, pairs=model.pairs,
        routed=model.routed, note=model.note, record=model,
    )


def build(
    packaged_models: Iterable[packaged.Model] = packaged.MODELS,
    hub_models: Iterable[HubModel] = pulled.HUB.values(),
) -> Mapping[str, Entry]:
    """The catalogue of these records by name (tests build small ones)."""
    entries_ = [*map(_from_packaged, packaged_models), *map(_from_hub, hub_models)]
    return MappingProxyType({e.name: e for e in entries_})


ENTRIES: Mapping[str, Entry] = build()
"""Every model, packaged first, then the hub's (speech, translation, voices)."""


def entries(role: Role | None = None, catalogue: Mapping[str, Entry] = ENTRIES) -> list[Entry]:
    """Every entry, or those of one role, in catalogue order."""
    if role is not None and role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return [e for e in catalogue.values() if role is None or e.role == role]


def by_role(catalogue: Mapping[str, Entry] = ENTRIES) -> dict[Role, list[Entry]]:
    """The entries of each role ("stt", "mt", "tts"), in catalogue order."""
    return {role: entries(role, catalogue) for role in ROLES}


def for_language(
    language: str, role: Role, catalogue: Mapping[str, Entry] = ENTRIES
) -> list[Entry]:
    """The entries of `role` that serve `language` (any BCP-47 tag of a product language),
    strongest first (rank, then catalogue order). Translation: either side of a pair.

    An unknown or unsupported language is INVALID_ARGUMENT naming the supported ones.
    """
    lang = normalise(language, "language")
    found = [e for e in entries(role, catalogue) if e.serves(lang)]
    return sorted(found, key=lambda e: -e.rank)


def lookup(name: str, catalogue: Mapping[str, Entry] = ENTRIES) -> Entry:
    try:
        return catalogue[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown model {name!r}; `dragoman models list` shows the catalogue"
        ) from None


def installed(
    models_dir: str | os.PathLike[str], role: Role | None = None,
    catalogue: Mapping[str, Entry] = ENTRIES,
) -> dict[str, Status]:
    """The status of every entry (of `role`), cheaply: manifests and sizes."""
    return {e.name: e.status(models_dir) for e in entries(role, catalogue)}


def state_label(entry: Entry, st: Status) -> str:
    """`dragoman models list`'s STATE: installed, or how to get it."""
    if st.usable:
        return st.state.value
    if st.state is State.DAMAGED:
        return f"damaged ({st.detail})"
    if entry.origin == "bundled":
        return f"missing ({st.detail})"
    how = "pullable" if entry.origin == "hub" else "installable"
    return f"{how}, opt-in licence" if entry.opt_in else how


def table(models_dir: str | os.PathLike[str], catalogue: Mapping[str, Entry] = ENTRIES) -> str:
    """`dragoman models list`: every model of every role, one line each."""
    rows = [("NAME", "ROLE", "LANGUAGES", "LICENCE", "SIZE", "DEVICE", "RANK", "STATE")]
    for entry in catalogue.values():
        langs = entry.languages
        shown = ",".join(langs) if len(langs) <= 6 else f"{len(langs)} languages"
        if entry.role == "mt" and entry.pairs and len(entry.pairs) < 3:
            shown = ",".join(f"{s}-{t}" for s, t in sorted(entry.pairs))
        state = state_label(entry, entry.status(models_dir))
        if entry.note:
            state += f"; {entry.note}"
        rows.append((entry.name, entry.role, shown, entry.licence, human_size(entry.size),
                      entry.device, str(entry.rank), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                     for r in rows)


def folder(models_dir: str | os.PathLike[str], entry: Entry) -> Path | None:
    """Where `entry` lives once installed (None: a bundled model whose package is missing)."""
    if isinstance(entry.record, HubModel):
        return Path(models_dir) / entry.name
    return packaged.model_dir(models_dir, entry.record)
