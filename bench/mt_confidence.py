"""How well a CTranslate2 model's confidence tells good translations from bad ones.

For each pulled CTranslate2 model (dragoman models pull) and each of its pairs
with a Tatoeba file (tests/data/mt/tatoeba or $DRAGOMAN_TESTDATA), it
translates the sentences on the engine itself (Ct2Engine.translate_scored: no
cache, no gRPC) and groups them by sentence chrF2 against the reference:

* `good`: chrF >= 60; `fair`: 30 to 60; `bad`: under 30;
* `wrong_language`: the references fed back in as if they were the source
  (a speaker in the wrong language): bad by construction.

Then the mean confidence of each group, and the share of each under a few
thresholds (where a "doubtful translation" flag would go).

    python -m bench.mt_confidence [--sentences N]   # writes bench/results/mt_confidence.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sacrebleu

from bench.common import machine, publish, table
from bench.mt_bench import tatoeba, tatoeba_dir
from dragoman import config
from mt_svc.engines import ct2
from mt_svc.engines.base import ScoringEngine, TranslationBatch

GROUPS = ("good", "fair", "bad", "wrong_language")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
BATCH = 16


def group(chrf: float) -> str:
    return "good" if chrf >= 60 else "fair" if chrf >= 30 else "bad"


async def _scored(engine: ScoringEngine, source: str, target: str,
                  texts: Sequence[str]) -> list[tuple[str, float]]:
    out = []
    for i in range(0, len(texts), BATCH):
        batch = TranslationBatch(source, target, tuple(texts[i:i + BATCH]))
        out += [(s.text, s.confidence or 0.0) for s in await engine.translate_scored(batch)]
    return out


async def measure(engine: ScoringEngine, source: str, target: str, sources: Sequence[str],
                  references: Sequence[str]) -> dict[str, Any]:
    """One row: each group's confidences, summarised."""
    confidences: dict[str, list[float]] = {g: [] for g in GROUPS}
    for (text, confidence), reference in zip(
            await _scored(engine, source, target, sources), references, strict=True):
        confidences[group(sacrebleu.sentence_chrf(text, [reference]).score)].append(confidence)
    confidences["wrong_language"] = [c for _, c in await _scored(engine, source, target, references)]
    return {
        "engine": engine.capabilities.name, "source": source, "target": target,
        "groups": {g: summary(cs) for g, cs in confidences.items()},
    }


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "under": {}}
    return {"n": len(values), "mean": round(statistics.fmean(values), 3),
            "under": {str(t): round(sum(v < t for v in values) / len(values), 3) for t in THRESHOLDS}}


async def run(sentences: int, settings: config.Settings) -> dict[str, Any]:
    decode = ct2.DecodeOptions.of(settings.mt)
    engines = await asyncio.to_thread(ct2.load_installed, settings.models_dir, decode)
    rows = []
    try:
        for engine in engines:
            for source, target in sorted(engine.capabilities.pairs):
                data = tatoeba(tatoeba_dir(), source, target)
                if data is not None:
                    sources, references = (lines[:sentences] for lines in data)
                    rows.append(await measure(engine, source, target, sources, references))
    finally:
        for engine in engines:
            await engine.close()
    return {"benchmark": "mt_confidence", "machine": machine(),
            "settings": {"sentences": sentences, "beam_size": decode.beam_size,
                         "compute_type": decode.compute_type,
                         "chrf": f"sacrebleu {sacrebleu.__version__} sentence_chrf (chrF2)"},
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    def mean(row: dict[str, Any], g: str) -> object:
        s = row["groups"][g]
        return "-" if s["mean"] is None else f"{s['n']}: {s['mean']:.2f}"

    lines = ["# CTranslate2 confidence on Tatoeba (bench/mt_confidence.py)", "",
             "    python -m bench.mt_confidence", "",
             "Confidence: geometric mean token probability (mt_svc.engines.ct2). "
             "Groups by sentence chrF2: good >= 60, fair 30-60, bad < 30; wrong_language: "
             "the references fed in as the source. Cells: n: mean confidence.", "",
             table(["model", "pair", *GROUPS], [
                 [r["engine"], f"{r['source']}->{r['target']}", *(mean(r, g) for g in GROUPS)]
                 for r in result["rows"]])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mt_confidence",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=400, help="sentences per pair (default 400)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/results)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.sentences, config.load()))
    if not result["rows"]:
        print("no pulled CTranslate2 model serves a pair with Tatoeba data "
              "(dragoman models pull opus-mt-en-de, say)", file=sys.stderr)
        return 1
    text = markdown(result)
    publish("mt_confidence", result, args.out, text, text, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
