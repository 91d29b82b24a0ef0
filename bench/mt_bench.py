"""Translation quality and speed of every installed engine pair on the Tatoeba sample.

    python -m bench.mt_bench [--smoke] [--sentences N] [--batch-size B] [--out FILE]

For each engine that loads here (settings.mt.engines plus Apertium and every
pulled CTranslate2 model, unless --engines says otherwise) and each of its
pairs with a Tatoeba file in tests/data/mt/tatoeba (or
$DRAGOMAN_TESTDATA/mt/tatoeba), it measures, on the engine itself (no
cache, no gRPC):

* BLEU and chrF2 (sacrebleu, default tokenisation; "zh" for Chinese, "char"
  for Japanese and Korean) of the first N sentences, translated in batches;
* milliseconds per sentence, p50 and p95: one sentence per call ("single"),
  and per batch of B divided by B ("batched");
* sentences per second in batches, and per core (divided by the cores this
  process may use).

Where Apertium and another engine serve the same pair, the other engine's row
carries Apertium's scores as the baseline. Prints a table and writes JSON
(default bench/results/mt.json). `--smoke`: 20 sentences, 5 single calls,
batches of 8: a quick check that every part runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sacrebleu

from bench.common import TESTDATA, machine, percentile, table
from dragoman import config
from mt_svc import engines as registry
from mt_svc.engines.base import MtEngine, TranslationBatch
from mt_svc.engines.ct2 import DecodeOptions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "mt.json"
ISO639_3 = {
    "en": "eng", "es": "spa", "fr": "fra", "de": "deu", "it": "ita", "pt": "por", "ru": "rus",
    "ar": "ara", "zh": "cmn", "ja": "jpn", "ko": "kor", "hi": "hin", "tr": "tur", "nl": "nld",
    "pl": "pol",
}
TOKENIZE = {"zh": "zh", "ja": "char", "ko": "char"}
BASELINE = "apertium"


def tatoeba_dir() -> Path:
    return TESTDATA / "mt" / "tatoeba"


def tatoeba(folder: Path, source: str, target: str) -> tuple[list[str], list[str]] | None:
    """Source sentences and references of a pair, or None when the sample has no such file."""
    a, b = ISO639_3[source], ISO639_3[target]
    for name in (f"{a}-{b}", f"{b}-{a}"):
        src, ref = folder / f"{name}.{a}", folder / f"{name}.{b}"
        if src.is_file() and ref.is_file():
            return src.read_text().splitlines(), ref.read_text().splitlines()
    return None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Run:
    """How much to measure."""

    sentences: int
    single: int
    batch_size: int
    smoke: bool = False


async def measure(engine: MtEngine, source: str, target: str, sources: list[str],
                  references: list[str], run: Run) -> dict[str, Any]:
    """One row of the results: quality, latency and throughput of a pair."""
    caps = engine.capabilities

    async def translate(texts: Sequence[str]) -> tuple[list[str], float]:
        started = time.perf_counter()
        out = await engine.translate(TranslationBatch(source, target, tuple(texts)))
        return out, 1000 * (time.perf_counter() - started)

    await translate(sources[:1])  # warm-up
    hypotheses: list[str] = []
    batched_ms: list[float] = []
    total_ms = 0.0
    for i in range(0, len(sources), run.batch_size):
        batch = sources[i:i + run.batch_size]
        out, ms = await translate(batch)
        hypotheses += out
        batched_ms.append(ms / len(batch))
        total_ms += ms
    single_ms = [(await translate([s]))[1] for s in sources[:run.single]]
    tokenize = TOKENIZE.get(target, "13a")
    per_second = len(sources) / (total_ms / 1000)
    return {
        "engine": caps.name,
        "version": caps.version,
        "license": caps.license,
        "source": source,
        "target": target,
        "sentences": len(sources),
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
        "single_ms": {"p50": _ms(single_ms, 50), "p95": _ms(single_ms, 95), "calls": len(single_ms)},
        "batched_ms": {"p50": _ms(batched_ms, 50), "p95": _ms(batched_ms, 95),
                       "batch_size": run.batch_size},
        "sentences_per_s": round(per_second, 2),
        "sentences_per_s_per_core": round(per_second / cores(), 2),
        "baseline": None,
    }


def _ms(values: Sequence[float], q: float) -> float:
    return round(percentile(values, q) or 0.0, 2)


def add_baselines(rows: list[dict[str, Any]]) -> None:
    """Apertium's scores beside every other engine's row of the same pair."""
    base = {(r["source"], r["target"]): r for r in rows if r["engine"] == BASELINE}
    for row in rows:
        other = base.get((row["source"], row["target"]))
        if other is not None and row["engine"] != BASELINE:
            row["baseline"] = {
                "engine": BASELINE, "bleu": other["bleu"], "chrf": other["chrf"],
                "bleu_delta": round(row["bleu"] - other["bleu"], 2),
                "chrf_delta": round(row["chrf"] - other["chrf"], 2),
                "single_ms_p50": other["single_ms"]["p50"],
            }


HEADERS = ("engine", "pair", "n", "BLEU", "chrF", "single p50 ms", "single p95 ms",
           "batched p50 ms", "batched p95 ms", "sent/s", "sent/s/core", "chrF vs apertium")


def rows_of(results: list[dict[str, Any]]) -> list[list[object]]:
    """The printed table's rows."""
    return [
        [r["engine"], f"{r['source']}->{r['target']}", r["sentences"], f"{r['bleu']:.1f}",
         f"{r['chrf']:.1f}", f"{r['single_ms']['p50']:.1f}", f"{r['single_ms']['p95']:.1f}",
         f"{r['batched_ms']['p50']:.1f}", f"{r['batched_ms']['p95']:.1f}",
         f"{r['sentences_per_s']:.0f}", f"{r['sentences_per_s_per_core']:.0f}",
         f"{r['baseline']['chrf_delta']:+.1f}" if r["baseline"] else "-"]
        for r in results
    ]


async def bench(names: list[str], run: Run, settings: config.Settings) -> dict[str, Any]:
    decode = DecodeOptions.of(settings.mt)
    loaded = await asyncio.to_thread(registry.load, names, settings.models_dir, decode)
    folder = tatoeba_dir()
    rows = []
    try:
        for engine in loaded:
            for source, target in sorted(engine.capabilities.pairs):
                data = tatoeba(folder, source, target)
                if data is None:
                    continue
                sources, references = (lines[:run.sentences] for lines in data)
                rows.append(await measure(engine, source, target, sources, references, run))
    finally:
        for engine in loaded:
            await engine.close()
    add_baselines(rows)
    return {
        "benchmark": "mt",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "smoke": run.smoke,
        "machine": {**machine(), "cores": cores()},
        "settings": {"engines": names, **dataclasses.asdict(run), "beam_size": decode.beam_size,
                     "compute_type": decode.compute_type, "data": str(folder)},
        "metrics": {"bleu": f"sacrebleu {sacrebleu.__version__} corpus_bleu",
                    "chrf": f"sacrebleu {sacrebleu.__version__} corpus_chrf (chrF2)"},
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mt_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="20 sentences per pair: a quick check")
    parser.add_argument("--sentences", type=int, default=400, help="sentences per pair (default 400)")
    parser.add_argument("--single", type=int, default=100, help="one-sentence calls timed per pair")
    parser.add_argument("--batch-size", type=int, default=16, help="sentences per batched call")
    parser.add_argument("--engines", default="bergamot,ct2,apertium",
                        help="engines to measure (default: bergamot,ct2,apertium)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    run = Run(20, 5, 8, smoke=True) if args.smoke else Run(args.sentences, args.single, args.batch_size)
    settings = config.load()
    result = asyncio.run(bench(registry.configured(args.engines), run, settings))
    if not result["results"]:
        print("no installed engine pair has Tatoeba data", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table(HEADERS, rows_of(result["results"])))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
