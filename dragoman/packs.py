"""Which model serves each language and role: the catalogue seen as ranked entries.

The chooser's view of the catalogue (dragoman.catalog.catalogue): an `Entry`
per model with its role, product languages, licence, size, quality rank, the
devices it runs on within the latency budget and whether it is installed.
`best()` is the rule every chooser shares: the strongest entry (highest
rank; on a tie the more specialised, then the smaller) that serves a
language on a device. stt_svc picks its models with it
(`stt.model = "auto"`), `dragoman languages` shows the choice and plans packs
with it. Cheap: manifests and file sizes only, no hashing, no loading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dragoman.catalog import catalogue, pulled
from dragoman.errors import InvalidArgument
from dragoman.languages import LANGUAGES, SUPPORTED

Role = Literal["stt", "mt", "tts"]
Pair = tuple[str, str]
AUTO = "auto"
DEVICES = ("cpu", "cuda")

CPU_CALL_S: dict[str, float] = {
    "whisper-tiny.en": 0.22, "whisper-base": 0.45, "whisper-small": 0.9,
}
"""Fixed cost of one decode call on 2 idle CPU cores (int8), which the encoder dominates:
tiny.en and base measured (/work/shared/MODELS.md); small at its lowest, from its encoder
timed at 2.1 to 4.4 times base's with the published shapes (bench/results/stt_sizes.md)."""
CPU_BUDGET_S = 0.6
"""What a final may take after the end of speech on CPU (bench/stt_bench.py target for base,
600 ms p50): a speech model whose every call costs more cannot keep up there."""
# Languages a model lists but the engine here does not offer: kokoro-onnx bundles no
# Japanese or Chinese g2p (tts_svc/engines/kokoro.py).
_NOT_SPOKEN = {"kokoro": {"ja", "zh"}}


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
    token: str = ""
    """What --accept-licence takes for it (besides its licence and name)."""

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
        return not self.opt_in or bool({self.licence.lower(), self.name.lower(), self.token.lower()} & wanted)


def device_kind(device: str) -> str:
    """"cuda:1" -> "cuda"; anything but cpu/cuda[:N] is INVALID_ARGUMENT."""
    kind = device.strip().lower().split(":", 1)[0]
    if kind not in DEVICES:
        raise InvalidArgument(f"device {device!r} is not one of cpu, cuda, cuda:N")
    return kind


def _key(entry: Entry) -> tuple[int, int, int]:
    return (entry.rank, entry.specialised, -entry.size)


def _allowed(entry: Entry, installed_only: bool, accepted: Iterable[str] | None) -> bool:
    if entry.installed:
        return True
    return not installed_only and (accepted is None or entry.accepted(accepted))


def best(
    entries: Iterable[Entry], role: Role, language: str, device: str, *,
    installed_only: bool = True, accepted: Iterable[str] | None = (),
) -> Entry | None:
    """The strongest usable entry of `role` serving `language` on `device`, or None.

    Opt-in entries count only when installed (someone accepted the licence) or accepted
    here (`accepted` None: every licence counts).
    """
    candidates = [
        e for e in entries
        if e.role == role and e.usable and e.serves(language) and e.runs_on(device)
        and _allowed(e, installed_only, accepted)
    ]
    return max(candidates, key=_key, default=None)


def best_translator(
    entries: Iterable[Entry], pair: Pair, device: str, *,
    installed_only: bool = True, accepted: Iterable[str] | None = (),
) -> Entry | None:
    """The strongest usable translation model for an ordered pair, directly."""
    candidates = [
        e for e in entries
        if e.role == "mt" and e.usable and pair in e.pairs and e.runs_on(device)
        and _allowed(e, installed_only, accepted)
    ]
    return max(candidates, key=lambda e: (e.rank, -len(e.pairs), -e.size), default=None)


# --------------------------------------------------------------------------- the catalogue


def entries(
    models_dir: str | os.PathLike[str], found: Mapping[str, catalogue.Entry] = catalogue.ENTRIES,
) -> list[Entry]:
    """Every catalogue model as an Entry, with its installed state in `models_dir`."""
    return [of(e, e.installed(models_dir)) for e in found.values()]


def of(entry: catalogue.Entry, installed: bool) -> Entry:
    """The chooser's view of a catalogue entry."""
    devices: tuple[str, ...] = DEVICES if entry.device == "cpu" else ("cuda",)
    if entry.role == "stt" and CPU_CALL_S.get(entry.name, 0.0) > CPU_BUDGET_S:
        devices = ("cuda",)
    return Entry(
        name=entry.name, role=entry.role,
        languages=tuple(x for x in entry.languages if x not in _NOT_SPOKEN.get(entry.name, ())),
        licence=entry.licence, size=entry.size, rank=entry.rank, devices=devices, opt_in=entry.opt_in,
        installed=installed, source="packaged" if entry.origin != "hub" else "pulled",
        pairs=frozenset(p for p in entry.pairs if p[0] in LANGUAGES and p[1] in LANGUAGES),
        usable=entry.routed, note=entry.note,
        token=pulled.licence_token(entry.record) if isinstance(entry.record, pulled.HubModel) else "",
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
    english_present: bool | None = None,
) -> SttChoice:
    """Per product language, the STT model the settings name or the strongest installed one.

    `model`: a model name for every language, or "auto". `english_model`: a model
    for English ("" follows `model`; "auto" chooses); one that is not installed
    (`english_present`, default: per the catalogue) is passed over. Raises
    InvalidArgument when no multilingual model is installed and none is named.
    """
    stt = [e for e in found if e.role == "stt"]
    if english_present is None:
        english_present = any(e.name == english_model and e.installed for e in stt)
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
        if english_present:
            models["en"] = english_model
            reasons[english_model] = "setting stt.english_model"
    elif english_model == AUTO and model != AUTO:
        chosen = best(stt, "stt", "en", kind)
        if chosen is not None:
            models["en"] = chosen.name
            reasons.setdefault(chosen.name, auto_reason)
    used = {default, *models.values()}
    return SttChoice(models, default, {n: r for n, r in reasons.items() if n in used})
