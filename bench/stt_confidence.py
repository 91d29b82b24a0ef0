"""Where to put the low-confidence threshold (setting stt.low_confidence_below).

Streams FLEURS clips through a real stt_svc (Whisper, as configured) faster than
real time, and reads each final's confidence (stt_svc.stream.confidence: mean word
probability x (1 - no-speech probability)):

* `right`: each clip in its own language; the clip's WER, and each final word's
  probability split by whether the word is right (jiwer alignment with the
  reference, bench.stt_bench normaliser);
* `wrong_language`: the non-English clips decoded as English, what a speaker in
  the wrong language gets (Whisper translates and transliterates: every word wrong);
* `noise`: 5 s of white noise, pink noise and plucked music as English.

Then, for each candidate threshold, the share of finals of each kind under it.

    python -m bench.stt_confidence      # writes bench/results/stt_confidence.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

from bench.common import machine, publish, table
from bench.stt_bench import load_clips, normalise, wer
from dragoman import audio, config, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import engines as engine_loader
from stt_svc import server
from tests.stt_svc.conftest import music, pink_noise, white_noise

RATE_HZ = 16_000
LANGUAGES = ("en", "de", "es", "fr", "pt")
THRESHOLDS = (0.4, 0.5, 0.55, 0.6, 0.65, 0.7)
Final = stt_pb2.RecognitionResult


def noises(seconds: float = 5.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"white": white_noise(seconds, rng), "pink": pink_noise(seconds, rng),
            "music": music(seconds, rng)}


async def _requests(language: str, samples: np.ndarray) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
        language_code=language, encoding=stt_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE_HZ))
    tail = np.zeros(2 * RATE_HZ, np.float32)  # the end of speech on audio time
    pcm = audio.float_to_pcm16(np.concatenate([samples, tail]))
    for chunk in audio.chunks(pcm, RATE_HZ, 100):
        yield stt_pb2.StreamingRecognizeRequest(audio=chunk)


async def finals(stub: stt_pb2_grpc.SpeechToTextServiceStub, language: str,
                 samples: np.ndarray) -> list[Final]:
    return [r.result async for r in stub.StreamingRecognize(_requests(language, samples))
            if r.HasField("result") and r.result.is_final and r.result.transcript.strip()]


def word_probabilities(
    reference: str, results: Sequence[Final], language: str
) -> tuple[list[float], list[float]]:
    """Probabilities of the final words that match the reference, and of those that do not."""
    hypothesis, probabilities = [], []
    for result in results:
        for w in result.words:
            for token in normalise(w.word, language).split():
                hypothesis.append(token)
                probabilities.append(w.confidence)
    right: list[float] = []
    wrong: list[float] = []
    if not hypothesis:
        return right, wrong
    out = jiwer.process_words(normalise(reference, language), " ".join(hypothesis))
    for chunk in out.alignments[0]:
        for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
            (right if chunk.type == "equal" else wrong).append(probabilities[j])
    return right, wrong


def _row(kind: str, name: str, result: Final) -> dict[str, Any]:
    return {"kind": kind, "clip": name, "confidence": round(result.confidence, 4),
            "words": len(result.transcript.split()), "text": result.transcript}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = config.load()
    settings = dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, engine="whisper"))
    clips = load_clips(LANGUAGES, args.per_language)
    loaded = await asyncio.to_thread(engine_loader.load, settings)
    service = await server.create(settings, engine=loaded)
    port = await service.start("127.0.0.1:0")
    rows: list[dict[str, Any]] = []
    per_clip: list[dict[str, Any]] = []
    right_words: list[float] = []
    wrong_words: list[float] = []
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            for language, some in clips.items():
                for clip in some:
                    got = await finals(stub, language, clip.audio)
                    rows += [_row("right", clip.name, f) for f in got]
                    good, bad = word_probabilities(clip.reference, got, language)
                    right_words += good
                    wrong_words += bad
                    text = " ".join(f.transcript for f in got)
                    per_clip.append({
                        "clip": clip.name, "wer": round(wer([clip.reference], [text], language), 3),
                        "confidence": [round(f.confidence, 3) for f in got]})
                    if language != "en":
                        rows += [_row("wrong_language", clip.name, f)
                                 for f in await finals(stub, "en", clip.audio)]
                    print(clip.name, per_clip[-1], file=sys.stderr)
            for name, samples in noises().items():
                rows += [_row("noise", name, f) for f in await finals(stub, "en", samples)]
    finally:
        await service.stop(0)
    kinds = ("right", "wrong_language", "noise")
    return {
        "benchmark": "stt_confidence",
        "machine": machine(),
        "models": [e.capabilities.name for e in loaded],
        "score": "mean final-word probability x (1 - no_speech_prob) (stt_svc.stream.confidence)",
        "words": {"right": _stats(right_words), "wrong": _stats(wrong_words)},
        "finals": {k: _stats([r["confidence"] for r in rows if r["kind"] == k]) for k in kinds},
        "under_threshold": {
            str(t): {k: _share([r["confidence"] < t for r in rows if r["kind"] == k]) for k in kinds}
            for t in THRESHOLDS},
        "clips": per_clip,
        "rows": rows,
    }


def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "min": None, "max": None}
    return {"n": len(values), "mean": round(float(np.mean(values)), 4),
            "p50": round(float(np.median(values)), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def report(result: dict[str, Any]) -> str:
    words = result["words"]
    finals_ = result["finals"]
    lines = [
        "# STT confidence on FLEURS (bench/stt_confidence.py)", "",
        f"Models: {', '.join(result['models'])}. Score: {result['score']}.", "",
        "Final words by whether they match the reference (clips in their own language):", "",
        table(["words", "n", "mean", "p50"],
              [[k, words[k]["n"], words[k]["mean"], words[k]["p50"]] for k in ("right", "wrong")]),
        "", "Finals' confidence by kind:", "",
        table(["kind", "n", "mean", "p50", "min", "max"],
              [[k, *(v[s] for s in ("n", "mean", "p50", "min", "max"))] for k, v in finals_.items()]),
        "", "Share of finals under each threshold:", "",
        table(["threshold", "right", "wrong_language", "noise"], [
            [t, *(v[k] for k in ("right", "wrong_language", "noise"))]
            for t, v in result["under_threshold"].items()]),
        "", "Right-language clips, WER and their finals' confidence:", "",
        table(["clip", "WER", "confidence"], [
            [c["clip"], f"{c['wer']:.2f}", " ".join(f"{x:.2f}" for x in c["confidence"])]
            for c in sorted(result["clips"], key=lambda c: c["wer"])]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-language", type=int, default=5, help="FLEURS clips per language")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = p.parse_args()
    result = asyncio.run(run(args))
    text = report(result)
    publish("stt_confidence", result, args.out, text, text, "")


if __name__ == "__main__":
    main()
