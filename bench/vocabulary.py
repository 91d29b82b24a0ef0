"""Hidden-term recall of names in real speech, with and without a custom vocabulary.

Ten English sentences, each with one or two product or proper names that Whisper
has no reason to spell right (Siobhan, Kubernetes, Zylofex, ...), are read by a
TTS voice (bench.speechgen.Voices: Kokoro, or Piper for en_US-joe-medium) and
streamed through a real stt_svc (the configured Whisper model for English)
twice: with no hotwords, and with every name as hotwords, as a user's
vocabulary gives them (session_svc.lexicon: the speaker's terms become
StreamingRecognitionConfig.hotwords). Recall is the share of names whose exact
spelling (case-insensitive, punctuation aside) is in the final transcript.

    python -m bench.vocabulary [--voice af_heart] [--model whisper-base]
    # writes bench/results/vocabulary.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, publish, table
from bench.speechgen import RATE_HZ, Voices
from bench.stt_bench import wer
from dragoman import audio, config, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import engines as engine_loader
from stt_svc import server

SENTENCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Please send the invoice to Siobhan before Friday.", ("Siobhan",)),
    ("Our new scheduler runs on Kubernetes in the Frankfurt region.", ("Kubernetes",)),
    ("We ordered the parts from Xiomara at Quetzal Logistics.", ("Xiomara", "Quetzal")),
    ("The Dragoman app translates calls in real time.", ("Dragoman",)),
    ("Wojciech will present the Zylofex roadmap tomorrow.", ("Wojciech", "Zylofex")),
    ("The meeting with Ngozi Okonjo moved to Thursday.", ("Ngozi", "Okonjo")),
    ("Tell Aoife that the Vantrexa license expired.", ("Aoife", "Vantrexa")),
    ("The Nginx proxy in front of Grafana keeps timing out.", ("Nginx", "Grafana")),
    ("We drove from Llanelli to Aberystwyth last weekend.", ("Llanelli", "Aberystwyth")),
    ("Ask Tadhg whether Plivora shipped the firmware.", ("Tadhg", "Plivora")),
)
"""Each sentence and its hidden terms: the names a vocabulary would hold."""


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.casefold())


def found(term: str, transcript: str) -> bool:
    """Whether the term's words appear in order, spelt exactly (case aside)."""
    want, got = words(term), words(transcript)
    return any(got[i:i + len(want)] == want for i in range(len(got) - len(want) + 1))


async def _requests(samples: np.ndarray, hotwords: Sequence[str]
                    ) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
        language_code="en", encoding=stt_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE_HZ,
        hotwords=list(hotwords)))
    pad = np.zeros(RATE_HZ // 2, np.float32)
    tail = np.zeros(2 * RATE_HZ, np.float32)  # the end of speech on audio time
    pcm = audio.float_to_pcm16(np.concatenate([pad, samples, tail]))
    for chunk in audio.chunks(pcm, RATE_HZ, 100):
        yield stt_pb2.StreamingRecognizeRequest(audio=chunk)


async def transcript(stub: stt_pb2_grpc.SpeechToTextServiceStub, samples: np.ndarray,
                     hotwords: Sequence[str]) -> str:
    finals = [r.result.transcript.strip()
              async for r in stub.StreamingRecognize(_requests(samples, hotwords), wait_for_ready=True)
              if r.HasField("result") and r.result.is_final and r.result.transcript.strip()]
    return " ".join(finals)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = config.load()
    stt = dataclasses.replace(settings.stt, engine="whisper")
    if args.model:
        stt = dataclasses.replace(stt, model=args.model, english_model=args.model)
    settings = dataclasses.replace(settings, stt=stt)
    vocabulary = [t for _, terms in SENTENCES for t in terms]
    with ThreadPoolExecutor(1) as executor:
        voices = Voices(executor)
        try:
            speech = [await voices.speak(text, args.voice) for text, _ in SENTENCES]
        finally:
            await voices.close()
    loaded = await asyncio.to_thread(engine_loader.load, settings)
    service = await server.create(settings, engine=loaded)
    port = await service.start("127.0.0.1:0")
    rows: list[dict[str, Any]] = []
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 300)  # a busy machine loads slowly
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            for (text, terms), samples in zip(SENTENCES, speech, strict=True):
                row: dict[str, Any] = {"sentence": text, "terms": list(terms)}
                for mode, hotwords in (("without", ()), ("with", vocabulary)):
                    heard = await transcript(stub, samples, hotwords)
                    row[mode] = {
                        "transcript": heard, "found": [found(t, heard) for t in terms],
                        # the prompt's failure mode: a name of another sentence written in
                        "inserted": [t for t in vocabulary if t not in terms and found(t, heard)],
                        "wer": round(wer([text], [heard], "en"), 3)}
                rows.append(row)
                print(f"{row['without']['transcript']!r} -> {row['with']['transcript']!r}",
                      file=sys.stderr)
    finally:
        await service.stop(0)
    total = sum(len(r["terms"]) for r in rows)
    return {
        "benchmark": "vocabulary",
        "machine": machine(),
        "models": [e.capabilities.name for e in loaded],
        "voice": args.voice,
        "hotwords": vocabulary,
        "terms": total,
        "recall": {mode: round(sum(sum(r[mode]["found"]) for r in rows) / total, 3)
                   for mode in ("without", "with")},
        "inserted": {mode: sum(len(r[mode]["inserted"]) for r in rows) for mode in ("without", "with")},
        "wer": {mode: round(wer([r["sentence"] for r in rows], [r[mode]["transcript"] for r in rows],
                                "en"), 3) for mode in ("without", "with")},
        "rows": rows,
    }


def report(result: dict[str, Any], command: str) -> str:
    recall = result["recall"]
    lines = [
        "# Hidden-term recall with and without a vocabulary (bench/vocabulary.py)", "",
        f"    {command}", "",
        f"Models: {', '.join(result['models'])}; voice {result['voice']}; "
        f"{len(result['rows'])} sentences, {result['terms']} names; the vocabulary holds all "
        f"{len(result['hotwords'])} names (sent as StreamingRecognitionConfig.hotwords, as "
        "session_svc sends a speaker's vocabulary terms).", "",
        table(["vocabulary", "name recall", "names of other sentences written in", "WER"], [
            [mode, recall[mode], result["inserted"][mode], result["wer"][mode]]
            for mode in ("without", "with")]),
        "", "Per sentence (names found without / with):", "",
        table(["names", "without", "with", "WER without", "WER with", "transcript with the vocabulary"], [
            [", ".join(r["terms"]), sum(r["without"]["found"]), sum(r["with"]["found"]),
             r["without"]["wer"], r["with"]["wer"], r["with"]["transcript"]] for r in result["rows"]]),
        "", "Transcripts without the vocabulary:", "",
        *[f"- {r['without']['transcript']}" for r in result["rows"]],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", default="af_heart", help="Kokoro voice, or en_US-joe-medium (Piper)")
    p.add_argument("--model", default="", help="Whisper model (default: the configured English one)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = p.parse_args()
    result = asyncio.run(run(args))
    command = "python -m bench.vocabulary" + "".join(
        f" --{k} {v}" for k, v in (("voice", args.voice), ("model", args.model))
        if v and not (k == "voice" and v == "af_heart"))
    text = report(result, command)
    last = f"recall without {result['recall']['without']}, with {result['recall']['with']}"
    publish("vocabulary", result, args.out, text, text, last)


if __name__ == "__main__":
    main()
