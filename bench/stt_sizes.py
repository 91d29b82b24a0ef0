"""What one Whisper decode call costs on this CPU, by model size: which sizes fit the budget.

No Whisper larger than base can be installed here (/work/shared/MODELS.md), so the
published sizes are built with their real shapes (layers, width, heads, vocabulary) and
random int8 weights (tests.fakehub.write_whisper), and their encoder pass is timed on the
windows stt_svc decodes (10 s up to an 8 s utterance, 30 s beyond). The real whisper-base
is timed beside its random twin, so the proxy is checked in the same run. The encoder is
what a call costs on CPU (MODELS.md: a fixed ~0.45 s per base call, whatever the clip).

    python -m bench.stt_sizes            # writes bench/results/stt_sizes.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, table, write_result
from dragoman import config
from dragoman.packs import CPU_BUDGET_S

# name -> (layers, width, heads), as published (openai/whisper model dimensions)
SHAPES = {
    "tiny": (4, 384, 6),
    "base": (6, 512, 8),
    "small": (12, 768, 12),
}
WINDOWS_S = (10, 30)


def _time_encode(path: Path, seconds: int, threads: int, repeat: int) -> float:
    """Median seconds of one encoder pass over a `seconds` window (after one warm-up)."""
    import ctranslate2

    model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8", intra_threads=threads)
    frames = seconds * 100
    features = ctranslate2.StorageView.from_array(
        np.random.default_rng(0).normal(size=(1, 80, frames)).astype(np.float32))
    model.encode(features)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.encode(features)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(threads: int, repeat: int) -> dict[str, Any]:
    from tests.fakehub import write_whisper

    base = Path(config.load().models_dir) / "whisper-base"
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="stt-sizes-") as tmp:
        models = {"base (real weights)": base}
        for name, (layers, width, heads) in SHAPES.items():
            folder = Path(tmp) / name
            write_whisper(folder, base, d_model=width, ffn=4 * width, layers=layers, heads=heads)
            models[f"{name} (random, same shape)"] = folder
        for label, path in models.items():
            rows[label] = {f"encode_{s}s": round(_time_encode(path, s, threads, repeat), 3)
                           for s in WINDOWS_S}
    real, twin = rows["base (real weights)"], rows["base (random, same shape)"]
    small = rows["small (random, same shape)"]
    return {
        "benchmark": "stt_sizes", "machine": machine(),
        "settings": {"threads": threads, "repeat": repeat, "windows_s": list(WINDOWS_S),
                     "cpu_budget_s": CPU_BUDGET_S},
        "encode_s": rows,
        "proxy_ratio_base": {f"{w}s": round(twin[f"encode_{w}s"] / real[f"encode_{w}s"], 2)
                             for w in WINDOWS_S},
        "small_over_base": {f"{w}s": round(small[f"encode_{w}s"] / twin[f"encode_{w}s"], 2)
                            for w in WINDOWS_S},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    result = run(args.threads, args.repeat)
    path = write_result("stt_sizes", result)
    print(table(["model", *(f"encode {s} s window (s)" for s in WINDOWS_S)],
                [[label, *r.values()] for label, r in result["encode_s"].items()]))
    print(f"random/real base: {result['proxy_ratio_base']}; small/base: {result['small_over_base']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
