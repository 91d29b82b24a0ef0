"""Translation quality of streamed speech through the whole mesh (chrF), and what it costs.

Starts stt/mt/tts once (real engines, separate processes) and, per setting of
`session.sentence_wait_ms` given, a session_svc and gateway with it. For each
direction, one person says the FLEURS clips of their language at real-time
pace (bench.e2e_latency.say) to a partner, who keeps the Translation events.
Per clip the partner's translations are joined and scored (sacrebleu chrF2,
corpus level per direction) against the FLORES sentence in the target
language (tests/data/speech/fleurs/translations.tsv). In the same run mt_svc
translates, as one text each:

* the reference transcript (the FLORES source sentence): "clean", the ceiling;
* the normalised transcript (NAME.txt: lower case, little punctuation) that
  earlier measurements of issue #28 translated: "clean (normalised)";
* the STT finals of the clip joined: "streamed transcript". Clean minus
  streamed transcript is what recognition loses; streamed transcript minus
  speech is what translating fragments apart loses.

Generated long clips (tests/data/speech/generated/gen-LANG-*.ogg, from
bench.speechgen: several FLORES sentences read by a TTS voice, one a line in
the .txt) are scored against the FLORES translations of their sentences
joined; a sentence not in translations.tsv makes mt_svc's translation of the
.txt the clip's reference (clean is then 100 by construction).

Latency: per utterance, end of speech -> its translation (endpointing +
recognition + translation stages of ProcessingEnded), over all utterances and
over those whose translation was held for the rest of their sentence.

    python -m bench.mesh_chrf [--waits 0,1500] [--pairs en-pt,pt-en,en-es,es-en] [--smoke]

--smoke: one clip, first 3 s, fake engines: plumbing only.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sacrebleu

from bench.common import (
    TESTDATA,
    Children,
    Participant,
    free_address,
    latency_ms,
    machine,
    scratch_database,
    service_env,
    summary,
    table,
    write_result,
)
from bench.e2e_latency import (
    FAKE_ENGINES,
    SERVICES,
    SMOKE_CLIP_S,
    TURN_TIMEOUT_S,
    pair_up,
    part,
    say,
)
from dragoman import mux
from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc
from dragoman.v1 import conversation_pb2 as pb

PAIRS = ("en-pt", "pt-en", "en-es", "es-en")
GOAL_GAP = 5.0
"""Issue #28: streamed speech within this many chrF points of translating the reference text."""
MODEL_SERVICES = SERVICES[:3]
EDGE_SERVICES = SERVICES[3:]


@dataclass(frozen=True)
class Clip:
    path: Path
    source: str
    """What is said: the FLORES sentence, or a generated clip's .txt."""
    normalised: str
    """The clip's .txt."""
    reference: str | None
    """The human translation; None where there is none (mt_svc's of `source` stands in)."""


def flores() -> dict[str, dict[str, str]]:
    """FLORES translations by FLEURS clip: {clip: {language: sentence}}."""
    with open(TESTDATA / "speech" / "fleurs" / "translations.tsv", newline="") as f:
        return {r["clip"]: r for r in csv.DictReader(f, delimiter="\t")}


def fleurs_clips(source: str, target: str, count: int) -> list[Clip]:
    folder = TESTDATA / "speech" / "fleurs"
    rows = flores()
    names = sorted(p.stem for p in folder.glob(f"fleurs-{source}-*.ogg"))[:count]
    return [Clip(folder / f"{n}.ogg", rows[n][source], (folder / f"{n}.txt").read_text().strip(),
                 rows[n][target]) for n in names]


def generated_clips(source: str, target: str) -> list[Clip]:
    folder = TESTDATA / "speech" / "generated"
    by_source = {r[source].strip(): r[target] for r in flores().values()}
    clips = []
    for path in sorted(folder.glob(f"gen-{source}-*.ogg")):
        lines = [t.strip() for t in path.with_suffix(".txt").read_text().splitlines() if t.strip()]
        refs = [by_source.get(t) for t in lines]
        text = " ".join(lines)
        clips.append(Clip(path, text, text, None if None in refs else " ".join(map(str, refs))))
    return clips


@dataclass
class Listener(Participant):
    """A Participant that also keeps the partner's final transcripts and translations."""

    finals: dict[str, str] = field(default_factory=dict)
    translations: dict[str, pb.Translation] = field(default_factory=dict)

    def on_event(self, event: pb.ConversationEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "transcription" and event.transcription.speaker == pb.SPEAKER_PARTNER:
            if event.transcription.is_final:
                self.finals[event.transcription.utterance_id] = event.transcription.text
        elif kind == "translation" and event.translation.speaker == pb.SPEAKER_PARTNER:
            self.translations[event.translation.utterance_id] = event.translation
        super().on_event(event)


async def translate(mt: mt_pb2_grpc.TranslationServiceStub, source: str, target: str,
                    text: str) -> str:
    if not text.strip():
        return ""
    reply = await mt.Translate(mt_pb2.TranslateRequest(
        source_language_code=source, target_language_code=target, segments=[text]), timeout=60)
    return str(reply.translations[0].text)


def _order(utterance_id: str) -> int:
    return int(utterance_id.rsplit("-", 1)[1])


async def direction(gateway: str, mt: mt_pb2_grpc.TranslationServiceStub, pair: str,
                    clips: list[Clip], max_s: float) -> list[dict[str, Any]]:
    """One session: the first person says every clip, the second listens."""
    source, target = pair.split("-")
    speaker, listener, session_id = await pair_up(gateway, source, target, "chrf", Listener)
    rows = []
    try:
        for clip in clips:
            before = set(speaker.started)
            await say(speaker, clip.path, max_s)
            quiet = await speaker.wait_quiet(TURN_TIMEOUT_S)
            new = sorted(speaker.started - before, key=_order)
            # A translation covering several utterances comes under the last one's id.
            heard = [listener.translations[u] for u in new if u in listener.translations]
            held = {c for t in heard for c in t.covers_utterance_ids if c != t.utterance_id}
            streamed = " ".join(listener.finals[u] for u in new if listener.finals.get(u))
            clean = await translate(mt, source, target, clip.source)
            rows.append({
                "direction": pair, "clip": clip.path.name, "completed": quiet,
                "source": clip.source, "reference": clip.reference,
                "speech": " ".join(t.text.strip() for t in heard if t.text.strip()),
                "streamed_transcript": streamed,
                "clean": clean,
                "clean_normalised": await translate(mt, source, target, clip.normalised),
                "streamed_transcript_translation": await translate(mt, source, target, streamed),
                "utterances": new, "held": sorted(held, key=_order),
                "fragments": [listener.finals.get(u, "") for u in new],
                "to_translation_ms": {u: _to_translation(speaker.latencies[u])
                                      for u in new if u in speaker.latencies},
                "total_ms": {u: latency_ms(speaker.latencies[u])["total"]
                             for u in new if u in speaker.latencies},
            })
    finally:
        await part(speaker, listener, session_id)
    return rows


def _to_translation(latency: pb.UtteranceLatency) -> float:
    """End of speech -> translation: what holding a fragment for its sentence adds to."""
    ms = latency_ms(latency)
    return ms["endpointing"] + ms["recognition"] + ms["translation"]


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """chrF of the three ways, corpus level over the rows (one direction, one kind of clip)."""
    refs = [r["reference"] if r["reference"] is not None else r["clean"] for r in rows]
    out: dict[str, Any] = {"clips": len(rows), "incomplete": sum(not r["completed"] for r in rows)}
    for way in ("clean", "clean_normalised", "streamed_transcript_translation", "speech"):
        out[way] = round(sacrebleu.corpus_chrf([r[way] for r in rows], [refs]).score, 1)
    out["gap"] = round(out["clean"] - out["speech"], 1)
    out["recognition_loss"] = round(out["clean"] - out["streamed_transcript_translation"], 1)
    out["fragment_loss"] = round(out["streamed_transcript_translation"] - out["speech"], 1)
    to_tr = [v for r in rows for v in r["to_translation_ms"].values()]
    held = [r["to_translation_ms"][u] for r in rows for u in r["held"] if u in r["to_translation_ms"]]
    out["utterances"] = len(to_tr)
    out["held"] = len(held)
    out["to_translation"] = summary(to_tr)
    out["held_to_translation"] = summary(held)
    out["total"] = summary([v for r in rows for v in r["total_ms"].values()])
    return out


async def run(waits: list[int], pairs: list[str], count: int, fake: bool, work: Path) -> dict[str, Any]:
    addresses = {name: free_address() for name, _ in SERVICES}
    variants: dict[str, Any] = {}
    with scratch_database("bench") as db_env:
        env = service_env(addresses, {**db_env, **(FAKE_ENGINES if fake else {}),
                                      "DRAGOMAN_LIMITS_SESSIONS_PER_HOUR": "1000"})
        models = Children(work / "logs", env)
        channel = mux.channel(addresses["mt"], trunk=False)
        try:
            for name, module in MODEL_SERVICES:
                models.spawn(name, ["-m", module], addresses[name])
            for child in models.children:
                await models.wait_serving(child, 600.0)
            mt = mt_pb2_grpc.TranslationServiceStub(channel)
            for wait in waits:
                edge = Children(work / f"logs-{wait}", {
                    **env, "DRAGOMAN_SESSION_SENTENCE_WAIT_MS": str(wait)})
                try:
                    for name, module in EDGE_SERVICES:
                        await edge.wait_serving(edge.spawn(name, ["-m", module], addresses[name]))
                    rows = []
                    for pair in pairs:
                        source, target = pair.split("-")
                        clips = fleurs_clips(source, target, count)
                        if not fake:
                            clips += generated_clips(source, target)
                        started = time.monotonic()
                        rows += await direction(addresses["gateway"], mt, pair, clips,
                                                SMOKE_CLIP_S if fake else 0.0)
                        sys.stderr.write(f"wait {wait} ms, {pair}: {time.monotonic() - started:.0f} s\n")
                finally:
                    await edge.stop(5.0)
                variants[str(wait)] = {"scores": _scores(rows), "rows": rows}
        finally:
            await channel.close()
            await models.stop(5.0)
    return {
        "benchmark": "mesh_chrf",
        "machine": machine(),
        "engines": "fake (smoke: plumbing only)" if fake else "real (settings defaults)",
        "metric": f"sacrebleu {sacrebleu.__version__} corpus_chrf (chrF2) per direction",
        "method": ("services as separate processes; clips at real-time pace in 100 ms chunks "
                   "(bench.e2e_latency.say); the partner's Translation events joined per clip"),
        "goal": f"speech within {GOAL_GAP} chrF of clean",
        "variants": variants,
    }


def _scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per direction: FLEURS clips and generated clips apart."""
    out = {}
    for pair in dict.fromkeys(r["direction"] for r in rows):
        for kind in ("fleurs", "gen"):
            chosen = [r for r in rows if r["direction"] == pair and r["clip"].startswith(kind)]
            if chosen:
                out[f"{pair} {kind}"] = score(chosen)
    return out


def report(result: dict[str, Any]) -> str:
    rows = []
    for wait, variant in result["variants"].items():
        for name, s in variant["scores"].items():
            rows.append([f"{wait}", name, f"{s['clips']}" + "*" * s["incomplete"], s["clean"],
                         s["clean_normalised"],
                         s["streamed_transcript_translation"],
                         s["speech"], s["gap"], s["utterances"], s["held"],
                         s["to_translation"]["p50_ms"], s["to_translation"]["p95_ms"],
                         s["held_to_translation"]["p50_ms"], s["held_to_translation"]["max_ms"]])
    m = result["machine"]
    return "\n".join([
        f"engines: {result['engines']}; load average {m['load_average']} on {m['cpu_count']} cores",
        table(["wait ms", "direction", "clips", "clean", "clean norm", "stream text", "speech",
               "gap", "utts", "held", "to-tr p50", "to-tr p95", "held p50", "held max"], rows),
        "chrF: clean = mt_svc on the reference transcript (clean norm: on its normalised .txt); "
        "stream text = on the STT finals joined; speech = the partner's Translation events "
        "joined. to-tr: end of speech -> translation (ms), all utterances / held ones. "
        f"*: a clip whose utterances had not all ended {TURN_TIMEOUT_S:.0f} s after it.",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--waits", default="0,1500",
                        help="values of session.sentence_wait_ms to compare (0: translate every final)")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--clips", type=int, default=5, help="FLEURS clips per direction")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    waits = [int(w) for w in args.waits.split(",")]
    pairs = ["en-pt"] if args.smoke else args.pairs.split(",")
    with tempfile.TemporaryDirectory(prefix="dragoman-chrf-") as tmp:
        result = asyncio.run(run(waits, pairs, 1 if args.smoke else args.clips, args.smoke, Path(tmp)))
    result["smoke"] = args.smoke
    path = write_result("mesh_chrf", result, **({"out_dir": args.out} if args.out else {}))
    sys.stdout.write(report(result) + f"\n\nwritten to {path}\n")


if __name__ == "__main__":
    main()
