"""Speech translation against the cascade: FLEURS speech to English text, and `dragoman interpret`.

    python -m bench.st_bench [--languages de,fr,es,pt] [--beams 1,5] [--clips K]
                             [--interpret] [--clip NAME] [--speed S] [--out FILE]

1. Quality, no service: for each language's FLEURS clips in tests/data/speech/fleurs
   (or $DRAGOMAN_TESTDATA/speech/fleurs), references from the `en` column of
   translations.tsv (the FLORES sentences FLEURS speaks), corpus chrF2
   (sacrebleu) of
   * speech translation: Whisper (stt_svc's multilingual model, int8 on the CPU as stt_svc
     runs it) with task="translate", straight from speech to English text;
   * the cascade: the same model transcribes (task="transcribe"), then the text
     engine mt_svc routes L->en to (its Router over settings.mt.engines: Bergamot
     for pt, Apertium for es); "n/a" where the mesh has no text route;
   each at every beam width of --beams, whole clips (no streaming segmentation),
   with the decode seconds per second of audio (RTF) of the speech part.
2. --interpret: wall time of `dragoman interpret CLIP --from L --to en` from the
   start of the command to its exit, at real-time pace and at --speed S:
   starting its own mesh (mesh start included), and against a mesh already
   up (`dragoman up`, --gateway: excluded); also when its first translation
   line came and the chrF of its lines. Each run has its own PostgreSQL schema.

Prints tables and writes JSON (default bench/results/speech_translation.json; a part
not run keeps what the file had).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sacrebleu

from bench.common import (
    RESULTS,
    ROOT,
    TESTDATA,
    Children,
    free_address,
    machine,
    read_result,
    scratch_database,
    service_env,
    table,
    write_result,
)
from dragoman import audio, config, rpc
from dragoman.errors import FailedPrecondition
from stt_svc.engines import choice

FLEURS = TESTDATA / "speech" / "fleurs"
NAME = "speech_translation"
SERVICES = ("gateway", "session", "stt", "mt", "tts")


def references(folder: Path = FLEURS) -> dict[str, str]:
    """English reference of each clip (translations.tsv is quoted CSV with tabs)."""
    with open(folder / "translations.tsv", newline="", encoding="utf-8") as f:
        return {row["clip"]: row["en"].strip() for row in csv.DictReader(f, delimiter="\t")}


def chrf(hypotheses: list[str], refs: list[str]) -> float:
    return round(sacrebleu.corpus_chrf(hypotheses, [refs]).score, 1)


# -- 1. quality: speech translation against the cascade --------------------------------


@dataclass
class Clip:
    name: str
    language: str
    samples: Any
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / audio.STT_RATE_HZ


def clips(language_codes: list[str], per_language: int) -> list[Clip]:
    refs = references()
    out = []
    for lang in language_codes:
        for path in sorted(FLEURS.glob(f"fleurs-{lang}-*.ogg"))[:per_language]:
            out.append(Clip(path.stem, lang, audio.decode_file(path, audio.STT_RATE_HZ), refs[path.stem]))
    return out


def decode(model: Any, clip: Clip, task: str, beam: int) -> tuple[str, float]:
    started = time.perf_counter()
    segments, _ = model.transcribe(clip.samples, language=clip.language, task=task, beam_size=beam)
    text = " ".join(s.text.strip() for s in segments).strip()
    return text, time.perf_counter() - started


async def quality(settings: config.Settings, language_codes: list[str], beams: list[int],
                  per_language: int) -> list[dict[str, Any]]:
    from faster_whisper import WhisperModel

    from mt_svc import engines as registry
    from mt_svc.engines.ct2 import DecodeOptions
    from mt_svc.router import Router

    path = Path(settings.models_dir) / choice(settings).default  # the multilingual model stt_svc loads
    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=settings.stt.cpu_threads)
    names = registry.configured(settings.mt.engines)
    engines = await asyncio.to_thread(
        registry.load, names, settings.models_dir, DecodeOptions.of(settings.mt))
    router = Router(engines, registry.OFFERS, preference=registry.preference(names))
    data = clips(language_codes, per_language)
    rows = []
    try:
        for lang in language_codes:
            mine = [c for c in data if c.language == lang]
            refs = [c.reference for c in mine]
            audio_s = sum(c.seconds for c in mine)
            try:
                route = router.route(lang, "en")
            except FailedPrecondition as e:
                route, why = None, e.message
            for beam in beams:
                row: dict[str, Any] = {"language": lang, "beam": beam, "clips": len(mine),
                                       "audio_s": round(audio_s, 1)}
                direct = [decode(model, c, "translate", beam) for c in mine]
                row["speech_translation"] = {
                    "chrf": chrf([t for t, _ in direct], refs),
                    "rtf": round(sum(s for _, s in direct) / audio_s, 3),
                    "hypotheses": [t for t, _ in direct]}
                if route is None:
                    row["cascade"] = {"engine": None, "chrf": None, "why": why}
                else:
                    heard = [decode(model, c, "transcribe", beam) for c in mine]
                    mt_started = time.perf_counter()
                    translated = [(await router.run(route, [t]))[0] if t else "" for t, _ in heard]
                    row["cascade"] = {
                        "engine": route.engine,
                        "chrf": chrf(translated, refs),
                        "rtf": round(sum(s for _, s in heard) / audio_s, 3),
                        "mt_s": round(time.perf_counter() - mt_started, 2),
                        "transcripts": [t for t, _ in heard], "hypotheses": translated}
                rows.append(row)
                cascade = row["cascade"]["chrf"]
                print(f"{lang} beam {beam}: speech translation chrF {row['speech_translation']['chrf']}, "
                      f"cascade {cascade if cascade is not None else 'n/a'}", file=sys.stderr, flush=True)
    finally:
        await router.close()
    return rows


# -- 2. wall time of `dragoman interpret` ---------------------------------------------


def mesh_env(db_env: dict[str, str]) -> dict[str, str]:
    return service_env({name: free_address() for name in SERVICES}, db_env)


async def interpret_once(env: dict[str, str], clip: Path, language: str, speed: float,
                         gateway: str = "") -> dict[str, Any]:
    """Runs the command; its wall time, when its first line came, what it printed."""
    args = [sys.executable, "-m", "dragoman_tools.cli", "interpret", str(clip), "--from", language,
            "--to", "en", "--speed", f"{speed:g}", *(["--gateway", gateway] if gateway else [])]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    lines, first = [], None
    errors = asyncio.create_task(proc.stderr.read())
    while line := await proc.stdout.readline():
        first = first if first is not None else time.monotonic() - started
        lines.append(line.decode().strip())
    await proc.wait()
    wall = time.monotonic() - started
    log = (await errors).decode()
    if proc.returncode != 0:
        raise RuntimeError(f"interpret exited with {proc.returncode}:\n{log[-2000:]}")
    ready = [ln for ln in log.splitlines() if ln.startswith("ready (")]
    return {"speed": speed, "mesh": "external" if gateway else "own", "wall_s": round(wall, 1),
            "first_line_s": round(first, 1) if first is not None else None,
            "mesh_ready_s": float(ready[0][7:].split()[0]) if ready else None, "lines": lines}


async def interpret_times(clip: Path, language: str, speeds: list[float]) -> list[dict[str, Any]]:
    runs = []
    work = Path(tempfile.mkdtemp(prefix="st-bench-"))
    for speed in speeds:  # own mesh: mesh start included
        with scratch_database("stbench") as db_env:
            runs.append(await interpret_once(mesh_env(db_env), clip, language, speed))
            print(f"own mesh, speed {speed:g}: {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
    with scratch_database("stbench") as db_env:  # mesh already up: excluded
        env = mesh_env(db_env)
        children = Children(work / "logs", env)
        up = children.spawn("up", ["-m", "dragoman_tools.cli", "up"], env["DRAGOMAN_ADDRESSES_GATEWAY"])
        try:
            await children.wait_serving(up)  # the gateway serves before the services behind it
            for name in SERVICES:
                await rpc.wait_serving(env[f"DRAGOMAN_ADDRESSES_{name.upper()}"], timeout_s=240)
            for speed in speeds:
                runs.append(await interpret_once(env, clip, language, speed, up.address))
                print(f"mesh up, speed {speed:g}: {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
        finally:
            await children.stop(grace_s=20.0)
    return runs


# -- output -----------------------------------------------------------------------------


def quality_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        c = r["cascade"]
        st = r["speech_translation"]
        body.append([r["language"], str(r["beam"]), r["clips"], f"{st['chrf']:.1f}", f"{st['rtf']:.2f}",
                     f"{c['chrf']:.1f}" if c["chrf"] is not None else "n/a",
                     f"{c['rtf']:.2f}" if "rtf" in c else "n/a", c["engine"] or "no text route"])
    return table(["lang", "beam", "clips", "ST chrF", "ST RTF", "cascade chrF", "STT RTF", "cascade MT"],
                 body)


def interpret_table(runs: list[dict[str, Any]], refs: list[str]) -> str:
    body = [[r["mesh"], f"{r['speed']:g}x", f"{r['wall_s']:.1f}",
             f"{r['mesh_ready_s']:.1f}" if r["mesh_ready_s"] else "-", f"{r['first_line_s']:.1f}",
             f"{chrf([' '.join(r['lines'])], refs):.1f}"] for r in runs]
    return table(["mesh", "speed", "wall s", "mesh ready s", "first line s", "chrF"], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.st_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="de,fr,es,pt", help="source languages (default de,fr,es,pt)")
    parser.add_argument("--beams", default="1,5", help="Whisper beam widths (default 1,5)")
    parser.add_argument("--clips", type=int, default=5, help="FLEURS clips per language (default 5)")
    parser.add_argument("--no-quality", action="store_true", help="skip part 1")
    parser.add_argument("--interpret", action="store_true", help="also time `dragoman interpret` (part 2)")
    parser.add_argument("--clip", default="fleurs-pt-003",
                        help="clip of part 2 (default fleurs-pt-003, 10.7 s)")
    parser.add_argument("--speed", type=float, default=2.0, help="the faster pace of part 2 (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"directory of {NAME}.json (default {RESULTS})")
    args = parser.parse_args(argv)
    settings = config.load()
    result: dict[str, Any] = {
        "benchmark": "speech_translation",
        "settings": {"model": choice(settings).default, "compute_type": "int8",
                     "cpu_threads": settings.stt.cpu_threads, "mt_engines": settings.mt.engines,
                     "data": str(FLEURS)},
        "metrics": {"chrf": f"sacrebleu {sacrebleu.__version__} corpus_chrf (chrF2)"},
    }
    command = " ".join(["python -m bench.st_bench", *(argv if argv is not None else sys.argv[1:])])
    if not args.no_quality:
        beams = [int(b) for b in args.beams.split(",")]
        rows = asyncio.run(quality(settings, args.languages.split(","), beams, args.clips))
        result["quality"] = {"command": command, "rows": rows,
                             "machine": {**machine(), "cores": len(os.sched_getaffinity(0))}}
        print(quality_table(rows))
    if args.interpret:
        clip = FLEURS / f"{args.clip}.ogg"
        runs = asyncio.run(interpret_times(clip, args.clip.split("-")[1], [1.0, args.speed]))
        result["interpret"] = {"command": command, "clip": args.clip, "machine": machine(),
                               "audio_s": round(len(audio.decode_file(clip)) / audio.STT_RATE_HZ, 1),
                               "runs": runs}
        print(interpret_table(runs, [references()[args.clip]]))
    # parts run separately keep each other's numbers
    print(f"wrote {write_result(NAME, {**(read_result(NAME, args.out) or {}), **result}, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
