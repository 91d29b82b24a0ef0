"""CTranslate2 models of the `dragoman models pull` catalogue: OPUS-MT, M2M-100, NLLB-200, MADLAD-400.

Each pulled model is one engine, named after the model ("opus-mt-en-de"),
running int8 on the CPU with its own SentencePiece model(s). The families
differ in how the languages are asked for:

* OPUS-MT (Marian): plain pieces; a multilingual-target model takes the
  target's `>>xxx<<` token in front of the source ("`>>por<<` Hello").
* M2M-100: `__en__` + pieces + `</s>` in, and the target's `__pt__` forced
  as the first output token, which is dropped from the output.
* NLLB-200: the same with FLORES-200 codes (`eng_Latn` in, `por_Latn` out).
* MADLAD-400: `<2pt> ` in front of the source text; nothing to drop.

`</s>` is appended to the source unless the converted model adds it itself
(`add_source_eos` in its config.json, as OpusMTConverter writes it).

Long texts are split at sentence, then clause, then word boundaries into
pieces of at most `max_input_tokens`; every piece of a batch goes to the
model in one `translate_batch` call (`max_batch_size` examples at a time),
on the engine's own thread, and the pieces are joined again.

Each translation comes with a confidence: the geometric mean of its token
probabilities, exp of CTranslate2's score (the log-probability per token, as
length_penalty 1 normalises it), over all its pieces. How it separates good
translations from bad ones: bench/results/mt_confidence.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dragoman import config
from dragoman.catalog import pulled
from dragoman.catalog.pulled import HubModel
from dragoman.devices import Device
from dragoman.errors import FailedPrecondition
from mt_svc import text
from mt_svc.engines.base import Capabilities, Offer, Scored, TranslationBatch

log = logging.getLogger(__name__)

GROUP = "ct2"
"""The name in settings.mt.engines that enables every pulled model."""

FLORES200: Mapping[str, str] = {
    "en": "eng_Latn", "es": "spa_Latn", "fr": "fra_Latn", "de": "deu_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "ru": "rus_Cyrl", "ar": "arb_Arab", "zh": "zho_Hans", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "hi": "hin_Deva", "tr": "tur_Latn", "nl": "nld_Latn", "pl": "pol_Latn",
}
"""NLLB-200 language codes of the product languages."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the model is given for one piece of text."""

    source: list[str]
    target_prefix: list[str] | None
    """Tokens forced at the start of the output (dropped from the result)."""


def prompt(
    model: HubModel, text: str, encode: Callable[[str], list[str]], source: str, target: str,
    add_eos: bool,
) -> Prompt:
    """The source tokens and target prefix of `text` for `model`; `encode` is its
    SentencePiece model (text -> pieces)."""
    eos = ["</s>"] if add_eos else []
    if model.family == "m2m100":
        return Prompt([f"__{source}__", *encode(text), *eos], [f"__{target}__"])
    if model.family == "nllb":
        return Prompt([FLORES200[source], *encode(text), *eos], [FLORES200[target]])
    if model.family == "madlad":  # the tag is part of the text, as its tokenizer expects
        return Prompt([*encode(f"<2{target}> {text}"), *eos], None)
    token = model.target_tokens.get(target)
    return Prompt([*([token] if token else []), *encode(text), *eos], None)


_MT = config.MtSettings()


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How CTranslate2 runs a model: the `[mt]` settings of these names
    (dragoman.config.MtSettings documents each), with their defaults."""

    beam_size: int = _MT.beam_size
    max_input_tokens: int = _MT.max_input_tokens
    max_output_tokens: int = _MT.max_output_tokens
    max_batch_size: int = _MT.max_batch_size
    compute_type: str = _MT.compute_type
    cpu_threads: int = _MT.cpu_threads
    device: str = _MT.device

    @classmethod
    def of(cls, mt: config.MtSettings) -> DecodeOptions:
        return cls(**{f.name: getattr(mt, f.name) for f in dataclasses.fields(cls)})


class Ct2Engine:
    """One pulled model in a `ctranslate2.Translator`."""

    def __init__(self, model: HubModel, path: Path, options: DecodeOptions | None = None) -> None:
        import ctranslate2
        import sentencepiece

        self.model = model
        self.options = options or DecodeOptions()
        device, index = Device.parse(self.options.device, "mt.device").ctranslate2()
        try:
            self._translator = ctranslate2.Translator(
                str(path), device=device, device_index=index, compute_type=self.options.compute_type,
                intra_threads=self.options.cpu_threads, inter_threads=1,
            )
        except (RuntimeError, ValueError) as err:
            raise FailedPrecondition(
                f"model {model.name} in {path} does not load ({err}); "
                f"run `dragoman models pull --force {model.name}`"
            ) from None
        converted = json.loads((path / "config.json").read_text())
        self._add_eos = not converted.get("add_source_eos", False)
        spm = [sentencepiece.SentencePieceProcessor(model_file=str(path / f)) for f in model.tokenizer]
        self._source_spm, self._target_spm = spm[0], spm[-1]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=model.name)
        commit = pulled.read_manifest(path).get("version", "unknown")
        self._capabilities = Capabilities(
            name=model.name,
            version=f"{model.repo}@{str(commit)[:12]} ctranslate2 {ctranslate2.__version__} "
                    f"{self.options.compute_type} beam {self.options.beam_size}",
            license=model.licence,
            pairs=model.pairs,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def translate(self, batch: TranslationBatch) -> list[str]:
        return [t.text for t in await self.translate_scored(batch)]

    async def translate_scored(self, batch: TranslationBatch) -> list[Scored]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._translate, batch)

    def _translate(self, batch: TranslationBatch) -> list[Scored]:
        opts = self.options
        measure = self._token_count
        split = [text.chunks(t, opts.max_input_tokens, measure) for t in batch.texts]
        prompts = [
            prompt(self.model, piece, self._pieces, batch.source, batch.target, self._add_eos)
            for pieces in split for piece, _ in pieces
        ]
        prefixes = [p.target_prefix for p in prompts]
        results = self._translator.translate_batch(
            [p.source for p in prompts],
            target_prefix=prefixes if any(prefixes) else None,
            beam_size=opts.beam_size,
            max_batch_size=opts.max_batch_size,
            max_input_length=opts.max_input_tokens + 4,  # room for language tokens and </s>
            max_decoding_length=opts.max_output_tokens,
            length_penalty=1.0,  # so that a score is the log-probability per token
            return_scores=True,
        )
        done = zip(results, prompts, strict=True)
        out = []
        for pieces in split:
            texts, log_prob, tokens = [], 0.0, 0
            for _, sep in pieces:
                result, p = next(done)
                hypothesis = result.hypotheses[0]
                decoded = self._target_spm.decode(hypothesis[len(p.target_prefix or ()):])
                texts.append(f"{decoded.strip()}{sep}")
                # each piece weighs as many tokens as it has
                log_prob += result.scores[0] * len(hypothesis)
                tokens += len(hypothesis)
            out.append(Scored("".join(texts).strip(), math.exp(log_prob / tokens) if tokens else None))
        return out

    def _pieces(self, text: str) -> list[str]:
        return list(self._source_spm.encode(text, out_type=str))

    def _token_count(self, text: str) -> int:
        return len(self._source_spm.encode(text))

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._translator.unload_model()


def offers(catalogue: Mapping[str, HubModel] = pulled.CATALOGUE) -> dict[str, Offer]:
    """What each catalogue model would serve once pulled (opt-in and broken ones: nothing)."""
    return {
        m.name: Offer(
            name=m.name,
            license=m.licence,
            install={} if m.opt_in or not m.routed else dict.fromkeys(m.pairs, pulled.pull_command(m)),
            setting=GROUP,
        )
        for m in catalogue.values()
    }


def load_installed(
    models_dir: str | os.PathLike[str],
    options: DecodeOptions | None = None,
    catalogue: Mapping[str, HubModel] = pulled.CATALOGUE,
) -> list[Ct2Engine]:
    """An engine for every usable pulled model, in catalogue order (blocking: loads weights)."""
    engines = []
    for name, status in pulled.installed(models_dir, catalogue).items():
        model = catalogue[name]
        if not status.usable or status.path is None:
            if status.detail:
                log.warning("model %s not usable: %s", name, status.detail)
            continue
        if not model.routed:
            log.warning("model %s is installed but not used: %s", name, model.note)
            continue
        try:
            engines.append(Ct2Engine(model, status.path, options))
        except FailedPrecondition as err:
            log.warning("model %s not usable: %s", name, err.message)
    return engines


def names(catalogue: Mapping[str, HubModel] = pulled.CATALOGUE) -> Sequence[str]:
    """Engine names of the group, in order of preference."""
    return list(catalogue)
