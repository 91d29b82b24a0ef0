"""How many streamed finals fall under a confidence threshold, and how many of the streamed
errors they hold: the data that chose stt.final_beam_when_doubtful; and the runs' WER, share
of finals decoded again and EOS->final latency side by side.

Reads `bench.stt_bench --diagnose` results (each final's confidence, each error's utterance):

    python -m bench.stt_final_doubt /tmp/A1.json [/tmp/A2.json ...]
    python -m bench.stt_final_doubt bench/results/stt_final_doubt.json   # the runs kept
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import table

THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


def finals(result: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(language, confidence, errors in its utterance) of every final of a diagnose result."""
    out = []
    for language, by_set in result["languages"].items():
        for clip in by_set.get("fleurs", {}).get("clip_details", []):
            errors: dict[int, int] = {}
            for a in clip["alignment"]:
                if a["op"] != "equal" and "utterance" in a:
                    errors[a["utterance"]] = errors.get(a["utterance"], 0) + 1
            out += [(language, f["confidence"], errors.get(f["utterance"], 0))
                    for f in clip["finals"]]
    return out


def rows(items: Sequence[tuple[str, float, int]]) -> list[list[Any]]:
    total_errors = max(1, sum(e for _, _, e in items))
    out = []
    for t in THRESHOLDS:
        under = [(c, e) for _, c, e in items if c < t]
        out.append([t, len(under), f"{len(under) / max(1, len(items)):.2f}",
                    sum(e for _, e in under), f"{sum(e for _, e in under) / total_errors:.2f}"])
    return out


def summary(name: str, result: dict[str, Any]) -> list[list[Any]]:
    """Per language of a diagnose result: WER streamed and whole, the share of finals decoded
    again with the beam, endpoint -> final p50 and p90 (`eos_to_final_*` in results written
    before the bench also reported speech end -> final)."""
    out = []
    for language, by_set in result["languages"].items():
        r = by_set["fleurs"]
        paths = r.get("final_paths", {})
        sent = max(1, sum(paths.values()))
        out.append([name, language, f"{100 * r['streamed_wer']:.1f}",
                    f"{100 * r['whole_wer']:.1f}", r["reference_words"],
                    f"{paths.get('doubt_beam', 0)}/{sum(paths.values())}",
                    f"{paths.get('doubt_beam', 0) / sent:.2f}",
                    r.get("endpoint_to_final_ms", r.get("eos_to_final_ms", {})).get("p50_ms"),
                    r.get("endpoint_to_final_p90_ms", r.get("eos_to_final_p90_ms"))])
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for path in args.results:
        result = json.loads(path.read_text())
        if "languages" in result:
            results[path.stem] = result
        else:  # several runs under their names (bench/results/stt_final_doubt.json)
            results |= {name: r for name, r in result.items() if r["benchmark"] == "stt_diagnostic"}
    print(table(["run", "lang", "WER %", "whole WER %", "words", "re-decoded", "share",
                 "endpoint->final p50", "p90"],
                [row for name, result in results.items() for row in summary(name, result)]))
    print()
    items = [f for result in results.values() for f in finals(result)]
    print(f"{len(items)} finals, {sum(e for _, _, e in items)} streamed errors attributed "
          "to a final")
    print(table(["under", "finals", "share", "errors", "share of errors"], rows(items)))
    for language in sorted({lang for lang, _, _ in items}):
        mine = [f for f in items if f[0] == language]
        print(f"\n{language}: {len(mine)} finals, {sum(e for _, _, e in mine)} errors")
        print(table(["under", "finals", "share", "errors", "share of errors"], rows(mine)))


if __name__ == "__main__":
    main()
