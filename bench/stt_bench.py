"""Streaming recognition benchmark: FLEURS speech through stt_svc at real-time pace.

    python -m bench.stt_bench [--smoke] [--streams N] [--languages en,de] [--clips K]
                              [--seconds S] [--out FILE]
    python -m bench.stt_bench --diagnose [--smoke] [--languages ...] [--clips K] [--passes N]
                              [--levels DB,...] [--no-generated] [--out FILE]

Starts stt_svc in this process on a free loopback port with the configured
models (config.load(): whisper-tiny.en for English, whisper-base for the
rest, by default) and streams, as a live microphone would, 100 ms LINEAR16
chunks, each sent when its 100 ms have been "recorded", interim results on:

1. Per language, each FLEURS clip of tests/data/speech/fleurs (or
   $DRAGOMAN_TESTDATA/speech/fleurs; the clips the repo ships in
   dragoman_tools/demo_data are copies of some of them) in a stream of its own,
   one stream at a time, with 0.5 s of silence before and 1.5 s after. It
   reports
   * WER of the finals against the reference, over all clips of the language
     (jiwer, after the `normalise` below, named in the output);
   * RTF: seconds spent decoding finals per second of utterance audio, and
     CPU RTF: CPU seconds of this process (server and client) per second of
     audio streamed, partial decodes, VAD and gRPC included;
   * first partial: from the moment speech starts (the VAD's onset, i.e. the
     SPEECH_STARTED offset plus the segmenter's pre-roll) to the first
     partial result of the clip's first utterance;
   * speech end -> final, p50/p95: from the moment the speaker spoke the last
     speech sample (the VAD's end of speech, on the stream's real-time clock) to
     receiving the final, the endpoint silence included: what a speaker waits,
     and what issue #28's 600 ms goal is judged on;
   * endpoint -> final, p50: from sending the chunk that completes the endpoint
     silence to receiving the final (the wait for silence left out); over every
     utterance the endpointer closed, and over those of at most 10 s of audio;
   * the GPU cost proxies, partials and finals apart (stt_svc's
     dragoman_stt_*_total counters): decodes per utterance, encoder seconds
     (windows with their padding) per second of speech (the finals' audio),
     decoder tokens per utterance; and partials sent per second of speech.
2. Concurrency: 1, 2, 4 (up to --streams) streams at once, each in its own
   language (en, de, es, fr, pt in turn), each playing that language's clips
   back to back for --seconds, started 0.37 s apart. A level keeps up when
   95 % of the finals arrive within LAG_LIMIT_S of their endpoint chunk (one
   long utterance may take longer) and every stream's last result within
   LAG_LIMIT_S of the end of its audio (no backlog). Streams per core: the
   largest level that keeps up, divided by the cores this process may use.
   Model calls and decodes show the cross-stream batching at work.

No assertions: prints tables and writes JSON (default bench/results/stt.json)
with the machine's load average, since latency on a shared machine moves with
it. `--smoke`: one short English clip, one stream: checks that every part runs.

`--diagnose`: where the streamed finals lose words. Each clip (the FLEURS
clips and, unless --no-generated, the long generated ones of
tests/data/speech/generated, made by bench.speechgen) is streamed alone as
in 1., recording every partial, every final with its audio span and every
cut between utterances; then the same engine decodes the clip's whole audio
once, greedily, with no prefix (in windows of at most 30 s, cut at the
quietest moment, for longer clips). Both are aligned with the reference and
each streamed error gets one class (bench.stt_errors). Prints a table per
language and set (counts per class, streamed and whole-utterance WER) and
writes the per-clip detail (default bench/results/stt_diagnostic.json).
`--passes N` streams every clip N times and pools them: one language's 6-10
finals give a median whose 95 % interval spans most of their range
(bench.common.median_interval, printed beside the p50), too wide to show a
50 ms change. Passes add latencies, hardly words: the same audio streamed
again gives the same finals but where a partial lands a chunk apart.
`--levels 0,-6,-12` plays (and decodes whole) every clip at each level, and
Whisper errs differently at each: three levels make about three times the
evidence on WER (bench/results/stt_levels.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from prometheus_client import REGISTRY

from bench.common import (
    ROOT,
    TESTDATA,
    load_average,
    machine,
    median_interval,
    percentile,
    summary,
    table,
    write_result,
)
from bench.stt_errors import CLASSES, classify
from dragoman import audio, config, metrics, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import engines as engine_loader
from stt_svc import server
from stt_svc.engines.base import (
    Capabilities,
    DecodeOptions,
    DecodeRequest,
    SpeechRecognizer,
    Transcription,
)
from stt_svc.loaded import MAX_BATCH, Models
from stt_svc.segmenter import SegmenterOptions
from stt_svc.vad import FRAME_SAMPLES

RATE_HZ = 16_000
CHUNK_S = 0.1
CHUNK_SAMPLES = int(RATE_HZ * CHUNK_S)
CUT_EVENTS_S = 0.05
"""An utterance whose successor's SPEECH_STARTED came this soon after its END_OF_SPEECH was
cut for length (see `StreamRun.cut`)."""
LEAD_S = 0.5
TAIL_S = 1.5
LAG_LIMIT_S = 2.0
"""Streams keep up while 95 % of finals arrive within this of their endpoint chunk."""
STAGGER_S = 0.37
SMOKE_MIN_S = 5.0
"""--smoke's clip is at least this long: whisper-base hears the first seconds of the 4.3 s
fleurs-en-004, whose speech starts right after the pre-roll, as noise ("N N N N"), so the
guards drop most or all of its partials; fleurs-en-003 (5.8 s) has 5 in every run."""
LANGUAGES = ("en", "de", "es", "fr", "pt")
PRE_ROLL_S = SegmenterOptions().pre_roll_ms / 1000
TARGETS = {
    "speech_end_to_final_p50_ms": 600,  # issue #28: the endpoint wait included
    "first_partial_ms": 1000,
    "wer_en": 0.12,
    "concurrent_streams": 4,
}
NORMALISER = (
    "basic: NFKC, lower case, bracketed text dropped, punctuation and symbols to spaces "
    "(apostrophes kept, ’ as '), elisions split (qu'on -> qu' on) except in English, "
    "numbers left as written"
)
_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")
_ELISION = re.compile(r"(\w)'(\w)")


def normalise(text: str, language: str) -> str:
    """The WER normaliser (NORMALISER), like Whisper's BasicTextNormalizer but keeping apostrophes."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    text = _BRACKETED.sub(" ", text)
    text = "".join(
        " " if c != "'" and unicodedata.category(c)[0] in "PSM" else c for c in text
    )
    if language != "en":
        text = _ELISION.sub(r"\1' \2", text)
    return " ".join(text.split())


def wer(references: Sequence[str], hypotheses: Sequence[str], language: str) -> float:
    """Corpus WER (errors over reference words) after `normalise`."""
    refs = [normalise(r, language) for r in references]
    hyps = [normalise(h, language) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


# -- clips ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    language: str
    reference: str
    audio: np.ndarray = field(repr=False)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE_HZ

    def at_level(self, db: float) -> Clip:
        """The clip `db` decibels louder (negative: quieter)."""
        if db == 0:
            return self
        return replace(self, audio=(self.audio * 10 ** (db / 20)).astype(np.float32))


def speech_dirs() -> list[Path]:
    return [TESTDATA / "speech" / "fleurs", ROOT / "dragoman" / "demo_data"]


def generated_dir() -> Path:
    return TESTDATA / "speech" / "generated"


def load_clips(
    languages: Sequence[str], per_language: int, directories: Sequence[Path] | None = None
) -> dict[str, list[Clip]]:
    """Clips named `<set>-<lang>-NNN.ogg` with a `.txt` reference; first copy of a name wins."""
    found: dict[str, Path] = {}
    for directory in speech_dirs() if directories is None else directories:
        for path in sorted(directory.glob("*.ogg")):
            if path.with_suffix(".txt").is_file():
                found.setdefault(path.stem, path)
    clips: dict[str, list[Clip]] = {}
    for name, path in sorted(found.items()):
        language = name.split("-")[1] if name.count("-") >= 2 else ""
        if language not in languages or len(clips.get(language, [])) >= per_language:
            continue
        clips.setdefault(language, []).append(Clip(
            name, language, path.with_suffix(".txt").read_text().strip(),
            audio.decode_file(path, RATE_HZ),
        ))
    return clips


def smoke_clip() -> Clip:
    """The shortest English clip of SMOKE_MIN_S or more, for --smoke."""
    clips = load_clips(["en"], 99)["en"]
    return min([c for c in clips if c.seconds >= SMOKE_MIN_S] or clips, key=lambda c: c.seconds)


# -- one stream -----------------------------------------------------------------------------------


@dataclass
class Utterance:
    index: int
    start_s: float
    started_at: float = 0.0
    """Loop time its SPEECH_STARTED arrived."""
    end_s: float | None = None
    ended_at: float | None = None
    """Loop time its END_OF_SPEECH arrived."""
    first_partial_at: float | None = None
    final_at: float | None = None
    final: stt_pb2.RecognitionResult | None = None
    partials: list[tuple[float, stt_pb2.RecognitionResult]] = field(default_factory=list)
    """Each partial with the loop time it arrived."""


@dataclass
class StreamRun:
    """What one real-time stream sent and received, with wall times (loop.time())."""

    language: str
    clips: list[Clip]
    clip_starts: list[int]
    """Sample offset of each clip's lead silence in the stream."""
    endpoint_s: float
    t0: float = 0.0
    """Wall time the stream's audio starts: sample s is spoken at t0 + s / RATE_HZ, and the
    chunk holding it is due when the chunk's last sample is."""
    send_times: list[float] = field(default_factory=list)
    utterances: dict[int, Utterance] = field(default_factory=dict)
    closed_at: float = 0.0
    cpu_s: float = 0.0

    @property
    def audio_s(self) -> float:
        return len(self.send_times) * CHUNK_S

    def clip_of(self, u: Utterance) -> int:
        sample = round(u.start_s * RATE_HZ)
        return max(i for i, start in enumerate(self.clip_starts) if start <= sample)

    def hypotheses(self) -> list[str]:
        texts: list[list[str]] = [[] for _ in self.clips]
        for u in sorted(self.utterances.values(), key=lambda u: u.index):
            if u.final is not None and u.final.transcript:
                texts[self.clip_of(u)].append(u.final.transcript)
        return [" ".join(t) for t in texts]

    def endpoint_chunk_sent(self, u: Utterance) -> float | None:
        """When the chunk that completed `u`'s endpoint silence was sent (None: no endpoint)."""
        if u.end_s is None or self.cut(u):
            return None
        end = round(u.end_s * RATE_HZ)
        fired = math.ceil((end + round(self.endpoint_s * RATE_HZ)) / FRAME_SAMPLES) * FRAME_SAMPLES
        chunk = (fired - 1) // CHUNK_SAMPLES
        return self.send_times[chunk] if chunk < len(self.send_times) else None

    def cut(self, u: Utterance) -> bool:
        """Whether `u` was cut for length (max_utterance_ms), not endpointed: the segmenter
        starts the next utterance with the same audio frame, so both events come at once
        (an endpointed utterance's successor needs min_speech_ms of new speech first)."""
        following = self.utterances.get(u.index + 1)
        return (following is not None and u.ended_at is not None
                and following.started_at - u.ended_at < CUT_EVENTS_S)

    def speech_ended_at(self, u: Utterance) -> float | None:
        """Wall time the speaker spoke the last speech sample of `u` (None: not endpointed).
        From the stream's clock, not from when its chunk was sent: the bench's client shares
        the event loop with the service, and a chunk sent late is late for the speaker too."""
        if self.endpoint_chunk_sent(u) is None or u.end_s is None:
            return None
        return self.t0 + u.end_s

    def endpoint_to_final_ms(self, max_audio_s: float = math.inf) -> list[float]:
        """Per endpointed utterance: from sending the chunk that completes the endpoint
        silence to receiving the final (the endpoint wait left out)."""
        return self._to_final_ms(self.endpoint_chunk_sent, max_audio_s)

    def speech_end_to_final_ms(self, max_audio_s: float = math.inf) -> list[float]:
        """Per endpointed utterance: from its last speech sample to receiving the final, the
        endpoint wait included (issue #28's "end of speech -> final")."""
        return self._to_final_ms(self.speech_ended_at, max_audio_s)

    def _to_final_ms(
        self, since: Callable[[Utterance], float | None], max_audio_s: float
    ) -> list[float]:
        out = []
        for u in self.utterances.values():
            start = since(u)
            if start is None or u.final_at is None or u.end_s is None:
                continue
            if u.end_s - u.start_s <= max_audio_s:
                out.append(1000 * (u.final_at - start))
        return out

    def first_partial_ms(self, t0: float) -> list[float]:
        """Per clip: speech onset (wall time of its audio) to the first partial of its first utterance."""
        out = []
        seen: set[int] = set()
        for u in sorted(self.utterances.values(), key=lambda u: u.index):
            clip = self.clip_of(u)
            if clip in seen:
                continue
            seen.add(clip)
            if u.first_partial_at is not None:
                onset = t0 + u.start_s + PRE_ROLL_S
                out.append(1000 * (u.first_partial_at - onset))
        return out

    def finals(self) -> list[stt_pb2.RecognitionResult]:
        return [u.final for u in self.utterances.values() if u.final is not None]


def _duration_s(d: Any) -> float:
    return float(d.ToNanoseconds()) / 1e9


async def play(
    stub: stt_pb2_grpc.SpeechToTextServiceStub,
    language: str,
    clips: list[Clip],
    endpoint_s: float,
    t0: float,
) -> StreamRun:
    """Streams `clips` back to back from loop time `t0`, chunk k sent at t0 + (k + 1) * 100 ms."""
    parts, starts, position = [], [], 0
    for clip in clips:
        starts.append(position)
        part = np.concatenate([
            np.zeros(int(LEAD_S * RATE_HZ), np.float32), clip.audio,
            np.zeros(int(TAIL_S * RATE_HZ), np.float32),
        ])
        parts.append(part)
        position += len(part)
    pcm = audio.float_to_pcm16(np.concatenate(parts))
    chunk_bytes = 2 * CHUNK_SAMPLES
    run = StreamRun(language, clips, starts, endpoint_s, t0)
    loop = asyncio.get_running_loop()
    cfg = stt_pb2.StreamingRecognitionConfig(
        language_code=language, encoding=stt_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=RATE_HZ, interim_results=True,
    )

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=cfg)
        for k, offset in enumerate(range(0, len(pcm), chunk_bytes)):
            await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_S - loop.time()))
            run.send_times.append(loop.time())
            yield stt_pb2.StreamingRecognizeRequest(audio=pcm[offset : offset + chunk_bytes])

    async for response in stub.StreamingRecognize(requests()):
        now = loop.time()
        if response.HasField("speech_event"):
            event = response.speech_event
            offset_s = _duration_s(event.audio_offset)
            if event.type == stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED:
                run.utterances[event.utterance_index] = Utterance(
                    event.utterance_index, offset_s, started_at=now
                )
            elif event.type == stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH:
                ended = run.utterances[event.utterance_index]
                ended.end_s, ended.ended_at = offset_s, now
            continue
        result = response.result
        u = run.utterances[result.utterance_index]
        if result.is_final:
            u.final_at, u.final = now, result
            continue
        u.partials.append((now, result))
        if u.first_partial_at is None:
            u.first_partial_at = now
    run.closed_at = loop.time()
    return run


# -- counting model calls -------------------------------------------------------------------------


class CountingEngine:
    """Passes calls to a real engine, counting model calls and the decodes in them."""

    def __init__(self, engine: SpeechRecognizer) -> None:
        self.engine = engine
        self.calls = 0
        self.decodes = 0

    @property
    def capabilities(self) -> Capabilities:
        return self.engine.capabilities

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        self.calls, self.decodes = self.calls + 1, self.decodes + 1
        return self.engine.transcribe(audio, options)

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        self.calls, self.decodes = self.calls + 1, self.decodes + len(requests)
        return self.engine.transcribe_batch(requests)

    async def close(self) -> None:
        """Nothing: the engine it wraps belongs to the caller."""

    def reset(self) -> None:
        self.calls = self.decodes = 0


# -- the runs -------------------------------------------------------------------------------------


KINDS = ("partial", "final")
COST_COUNTERS = {
    "decodes": "dragoman_stt_decodes_total",
    "encoder_s": "dragoman_stt_encoder_audio_seconds_total",
    "decoder_tokens": "dragoman_stt_decoder_tokens_total",
}


def cost_counters() -> dict[str, dict[str, float]]:
    """stt_svc's cost counters now (this process's registry), per counter and kind."""
    return {name: {kind: REGISTRY.get_sample_value(metric, {"kind": kind}) or 0.0 for kind in KINDS}
            for name, metric in COST_COUNTERS.items()}


FINAL_PATHS = ("idle_beam", "busy_greedy", "fixed", "doubt_beam")


def final_paths() -> dict[str, float]:
    """Finals sent so far by how they were decoded (dragoman_stt_finals_total{path})."""
    return {path: REGISTRY.get_sample_value("dragoman_stt_finals_total", {"path": path}) or 0.0
            for path in FINAL_PATHS}


def unrecognised_speech() -> dict[str, float]:
    """Seconds of speech that ended in no final text so far, by reason
    (dragoman_stt_unrecognised_speech_seconds_total{reason})."""
    return {sample.labels["reason"]: sample.value
            for family in metrics.STT_UNRECOGNISED_SPEECH.collect()
            for sample in family.samples if sample.name.endswith("_total")}


def unrecognised_since(before: dict[str, float]) -> dict[str, float]:
    return {reason: round(seconds - before.get(reason, 0.0), 2)
            for reason, seconds in unrecognised_speech().items()
            if seconds - before.get(reason, 0.0) > 0}


def paths_since(before: dict[str, float]) -> dict[str, int]:
    now = final_paths()
    return {path: round(now[path] - before[path]) for path in FINAL_PATHS}


def cost_proxies(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], utterances: int,
    speech_s: float,
) -> dict[str, Any]:
    """The counters' growth between two readings, per utterance or per second of speech."""
    def per(value: float, unit: float) -> float | None:
        return round(value / unit, 3) if unit else None

    grew = {name: {k: after[name][k] - before[name][k] for k in KINDS} for name in COST_COUNTERS}
    return {
        "decodes_per_utterance": {k: per(grew["decodes"][k], utterances) for k in KINDS},
        "encoder_s_per_speech_s": {k: per(grew["encoder_s"][k], speech_s) for k in KINDS},
        "decoder_tokens_per_utterance": {k: per(grew["decoder_tokens"][k], utterances) for k in KINDS},
        "totals": {name: {k: round(v, 3) for k, v in by_kind.items()} for name, by_kind in grew.items()},
    }


def _ms(values: Sequence[float]) -> dict[str, float | int | None]:
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in summary(values).items()}


async def per_language(
    stub: stt_pb2_grpc.SpeechToTextServiceStub,
    clips: dict[str, list[Clip]],
    models: dict[str, str],
    endpoint_s: float,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {}
    for language, items in clips.items():
        runs: list[tuple[StreamRun, float]] = []
        cpu_start = time.process_time()
        counted, paths = cost_counters(), final_paths()
        for clip in items:
            t0 = loop.time() + 0.05
            runs.append((await play(stub, language, [clip], endpoint_s, t0), t0))
            print(f"  {clip.name}: {runs[-1][0].hypotheses()[0]!r}", file=sys.stderr)
        cpu_s = time.process_time() - cpu_start
        finals = [f for run, _ in runs for f in run.finals()]
        decode_s = sum(_duration_s(f.processing_time) for f in finals)
        utterance_s = sum(_duration_s(f.end_offset) - _duration_s(f.start_offset) for f in finals)
        costs = cost_proxies(counted, cost_counters(), len(finals), utterance_s)
        partials_sent = sum(len(u.partials) for run, _ in runs for u in run.utterances.values())
        references = [c.reference for c in items]
        hypotheses = [h for run, _ in runs for h in run.hypotheses()]
        out[language] = {
            "model": models[language],
            "clips": len(items),
            "audio_s": round(sum(c.seconds for c in items), 1),
            "utterances": len(finals),
            "wer": round(wer(references, hypotheses, language), 4),
            "rtf": round(decode_s / utterance_s, 3) if utterance_s else None,
            "cpu_rtf": round(cpu_s / sum(run.audio_s for run, _ in runs), 3),
            "first_partial_ms": _ms([v for run, t0 in runs for v in run.first_partial_ms(t0)]),
            "speech_end_to_final_ms": _ms(
                [v for run, _ in runs for v in run.speech_end_to_final_ms()]
            ),
            "endpoint_to_final_ms": _ms([v for run, _ in runs for v in run.endpoint_to_final_ms()]),
            "endpoint_to_final_le10s_ms": _ms(
                [v for run, _ in runs for v in run.endpoint_to_final_ms(10)]
            ),
            "speech_s": round(utterance_s, 2),
            "partials_per_speech_s": round(partials_sent / utterance_s, 3) if utterance_s else None,
            "cost": costs,
            "final_paths": paths_since(paths),
            "transcripts": [
                {"clip": c.name, "reference": c.reference, "hypothesis": h,
                 "wer": round(wer([c.reference], [h], language), 4)}
                for c, h in zip(items, hypotheses, strict=True)
            ],
        }
    return out


def playlist(clips: list[Clip], seconds: float, rotate: int) -> list[Clip]:
    """Clips from `rotate` on, cycled, until they last `seconds` (at least one)."""
    out: list[Clip] = []
    i = rotate
    while not out or sum(c.seconds + LEAD_S + TAIL_S for c in out) < seconds:
        out.append(clips[i % len(clips)])
        i += 1
    return out


async def concurrency(
    stub: stt_pb2_grpc.SpeechToTextServiceStub,
    clips: dict[str, list[Clip]],
    levels: Sequence[int],
    seconds: float,
    endpoint_s: float,
    counters: Sequence[CountingEngine],
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    languages = [lang for lang in LANGUAGES if lang in clips] or list(clips)
    out = []
    for level in levels:
        for counter in counters:
            counter.reset()
        base = loop.time() + 0.1
        plays, played = [], []
        for i in range(level):
            language = languages[i % len(languages)]
            items = playlist(clips[language], seconds, rotate=i // len(languages))
            played.append(items)
            plays.append(play(stub, language, items, endpoint_s, base + i * STAGGER_S))
        cpu_start, paths = time.process_time(), final_paths()
        runs = await asyncio.gather(*plays)
        cpu_s = time.process_time() - cpu_start
        lags = [v for run in runs for v in run.endpoint_to_final_ms()]
        drains = [1000 * (run.closed_at - run.send_times[-1]) for run in runs]
        p95 = percentile(lags, 95)
        keeps_up = p95 is not None and max(p95, *drains) <= 1000 * LAG_LIMIT_S
        audio_s = sum(run.audio_s for run in runs)
        out.append({
            "streams": level,
            "languages": [run.language for run in runs],
            "audio_s": round(audio_s, 1),
            "keeps_up": keeps_up,
            "endpoint_to_final_ms": _ms(lags),
            "speech_end_to_final_ms": _ms([v for run in runs for v in run.speech_end_to_final_ms()]),
            "max_lag_ms": round(max(lags), 1) if lags else None,
            "drain_ms": _ms(drains),
            "first_partial_ms": _ms(
                [v for run in runs for v in run.first_partial_ms(base)]
            ) if level == 1 else _ms([]),
            "cpu_rtf": round(cpu_s / audio_s, 3),
            "model_calls": sum(c.calls for c in counters),
            "decodes": sum(c.decodes for c in counters),
            "wer": _level_wer(runs, played),
            "final_paths": paths_since(paths),
        })
        row = out[-1]
        print(f"  {level} stream(s): keeps up {keeps_up}, max lag {row['max_lag_ms']} ms, "
              f"{row['model_calls']} calls for {row['decodes']} decodes", file=sys.stderr)
    return out


def _level_wer(runs: Sequence[StreamRun], played: Sequence[list[Clip]]) -> dict[str, float]:
    """WER per language of the streams of one concurrency level, over every clip played."""
    pairs: dict[str, tuple[list[str], list[str]]] = {}
    for run, items in zip(runs, played, strict=True):
        references, hypotheses = pairs.setdefault(run.language, ([], []))
        references += [c.reference for c in items]
        hypotheses += run.hypotheses()
    return {lang: round(wer(refs, hyps, lang), 4) for lang, (refs, hyps) in pairs.items()}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def levels_up_to(n: int) -> list[int]:
    levels = [1]
    while levels[-1] * 2 <= n:
        levels.append(levels[-1] * 2)
    return levels if levels[-1] == n else [*levels, n]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = config.load()
    languages = ["en"] if args.smoke else args.languages.split(",")
    clips = load_clips(languages, 1 if args.smoke else args.clips)
    if args.smoke:
        clips = {"en": [smoke_clip()]}
    if not clips:
        raise SystemExit(f"no clips for {languages} in {[str(d) for d in speech_dirs()]}")
    print(f"loading models from {settings.models_dir}", file=sys.stderr)
    loaded = await asyncio.to_thread(engine_loader.load, settings)
    counters = [CountingEngine(e) for e in loaded]
    chooser = Models(loaded, max_pending=1)
    models = {lang: chooser.for_language(lang).capabilities.name for lang in clips}
    await chooser.close()
    endpoint_s = settings.stt.endpoint_silence_ms / 1000
    levels = [1] if args.smoke else levels_up_to(args.streams)
    load_before = load_average()
    service = await server.create(settings, engine=counters)
    port = await service.start("127.0.0.1:0")
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            print("per language, one real-time stream at a time:", file=sys.stderr)
            languages_out = await per_language(stub, clips, models, endpoint_s)
            print("concurrent real-time streams:", file=sys.stderr)
            seconds = 4.0 if args.smoke else args.seconds
            concurrent = await concurrency(stub, clips, levels, seconds, endpoint_s, counters)
    finally:
        await service.stop(0)
    cores = _cores()
    sustained = max((c["streams"] for c in concurrent if c["keeps_up"]), default=0)
    info = machine()
    info["load_average_before"] = load_before
    return {
        "benchmark": "stt",
        "smoke": bool(args.smoke),
        "machine": info,
        "settings": {
            "model": settings.stt.model,
            "english_model": settings.stt.english_model,
            "beam_size": settings.stt.beam_size,
            "final_beam_when_idle": settings.stt.final_beam_when_idle,
            "cpu_threads": settings.stt.cpu_threads,
            "endpoint_silence_ms": settings.stt.endpoint_silence_ms,
            "partial_interval_ms": settings.stt.partial_interval_ms,
            "final_context_s": settings.stt.final_context_s,
            "max_batch": MAX_BATCH,
            "chunk_ms": round(CHUNK_S * 1000),
        },
        "normaliser": NORMALISER,
        "targets": TARGETS,
        "languages": languages_out,
        "concurrency": concurrent,
        "lag_limit_ms": round(LAG_LIMIT_S * 1000),
        "cores": cores,
        "streams_sustained": sustained,
        "streams_per_core": round(sustained / cores, 2),
    }


def _paths(row: dict[str, Any]) -> str:
    paths = row.get("final_paths", {})
    beam = paths.get("idle_beam", 0) + paths.get("doubt_beam", 0)  # greedy, then the beam
    return f"{beam}/{paths.get('busy_greedy', 0) + paths.get('fixed', 0)}"


def report(result: dict[str, Any]) -> str:
    rows = []
    for language, r in result["languages"].items():
        rows.append([
            language, r["model"], r["clips"], r["utterances"], 100 * r["wer"], r["rtf"],
            r["cpu_rtf"], r["first_partial_ms"]["p50_ms"], r["first_partial_ms"]["p95_ms"],
            r["speech_end_to_final_ms"]["p50_ms"], r["speech_end_to_final_ms"]["p95_ms"],
            r["endpoint_to_final_ms"]["p50_ms"], r["endpoint_to_final_le10s_ms"]["p50_ms"],
            _paths(r),
        ])
    first = table(
        ["lang", "model", "clips", "utts", "WER %", "RTF", "CPU RTF", "1st partial p50",
         "p95", "speech end->final p50", "p95", "endpoint->final p50", "p50 (<=10 s)",
         "finals beam/greedy"],
        rows,
    )
    proxies = table(
        ["lang", "decodes/utt partial", "final", "enc s/speech s partial", "final",
         "dec tokens/utt partial", "final", "partials sent/speech s"],
        [[language, *(r["cost"][key][k] for key in ("decodes_per_utterance",
                                                   "encoder_s_per_speech_s",
                                                   "decoder_tokens_per_utterance") for k in KINDS),
          r["partials_per_speech_s"]]
         for language, r in result["languages"].items() if "cost" in r],
    )
    second = table(
        ["streams", "keeps up", "speech end->final p50", "endpoint->final p50", "p95", "max lag",
         "drain p95", "CPU RTF", "model calls", "decodes", "WER % by language",
         "finals beam/greedy"],
        [[c["streams"], "yes" if c["keeps_up"] else "NO", c["speech_end_to_final_ms"]["p50_ms"],
          c["endpoint_to_final_ms"]["p50_ms"], c["endpoint_to_final_ms"]["p95_ms"],
          c["max_lag_ms"], c["drain_ms"]["p95_ms"], c["cpu_rtf"],
          c["model_calls"], c["decodes"],
          " ".join(f"{lang} {100 * w:.1f}" for lang, w in c.get("wer", {}).items()),
          _paths(c)] for c in result["concurrency"]],
    )
    m = result["machine"]
    return "\n".join([
        f"stt_svc streaming benchmark ({'smoke' if result['smoke'] else 'full'}), "
        f"{m['cpu_count']} CPUs ({result['cores']} usable), {m['cpu_model']}",
        f"load average before {m['load_average_before']}, after {m['load_average']}",
        f"WER normaliser: {result['normaliser']}",
        "times in ms; speech end->final from the last speech sample (the endpoint wait "
        "included), endpoint->final from sending the chunk that completes the endpoint silence",
        "",
        first,
        "",
        "GPU cost proxies (stt_svc counters; encoder seconds count the padded windows):",
        proxies,
        "",
        second,
        "",
        f"streams sustained at real-time pace: {result['streams_sustained']} "
        f"= {result['streams_per_core']} per core (keeping up: endpoint->final p95 and drain "
        f"within {result['lag_limit_ms']} ms)",
    ])


# -- diagnosis (--diagnose) -----------------------------------------------------------------------



def whole_windows(samples: np.ndarray, max_s: float) -> list[np.ndarray]:
    """`samples` in pieces of at most `max_s`, each cut at the quietest 200 ms in the second
    half of the window (a pause between sentences, in speech that has them)."""
    limit, frame = int(max_s * RATE_HZ), RATE_HZ // 100
    pieces = []
    while len(samples) > limit:
        window = samples[:limit]
        n = len(window) // frame
        energy = np.convolve((window[: n * frame].reshape(n, frame) ** 2).mean(axis=1),
                             np.ones(20), mode="same")
        half = n // 2
        cut = (half + int(np.argmin(energy[half:]))) * frame
        pieces.append(samples[:cut])
        samples = samples[cut:]
    return [*pieces, samples]


def _words(text: str, language: str) -> list[str]:
    return normalise(text, language).split()


@dataclass(frozen=True)
class Whole:
    """A clip decoded whole: the text, in how many windows, in how many seconds."""

    text: str
    windows: int
    seconds: float


async def decode_whole(engine: SpeechRecognizer, clip: Clip) -> Whole:
    options = DecodeOptions(language=clip.language, beam_size=1, temperatures=(0.0,))  # greedy
    started = time.perf_counter()
    whole = [
        await asyncio.to_thread(engine.transcribe, piece, options)
        for piece in whole_windows(clip.audio, engine.capabilities.max_audio_s)
    ]
    return Whole(" ".join(w.text for w in whole), len(whole), time.perf_counter() - started)


async def diagnose_clip(
    stub: stt_pb2_grpc.SpeechToTextServiceStub, clip: Clip, endpoint_s: float, whole: Whole,
) -> tuple[dict[str, Any], StreamRun]:
    """Streams `clip` alone and classifies the stream's errors, beside `whole`, the clip
    decoded whole."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    run = await play(stub, clip.language, [clip], endpoint_s, t0)
    whole_text = whole.text

    def clip_s(stream_s: float) -> float:  # stream time -> time in the clip's audio
        return round(stream_s - LEAD_S, 3)

    utterances = sorted(run.utterances.values(), key=lambda u: u.index)
    finals: list[dict[str, Any]] = []
    partials: list[dict[str, Any]] = []
    boundaries: list[dict[str, Any]] = []
    texts: dict[int, list[str]] = {}
    forced: dict[int, int] = {}  # the stable prefix each final had to start with: the last partial's
    for u in utterances:
        texts[u.index] = [" ".join(_words(r.transcript, clip.language)) for _, r in u.partials]
        if u.partials:
            forced[u.index] = len(_words(u.partials[-1][1].stable_prefix, clip.language))
        partials += [{
            "utterance": u.index, "text": r.transcript, "stable_prefix": r.stable_prefix,
            "at_s": clip_s(at - t0), "audio_end_s": clip_s(_duration_s(r.end_offset)),
        } for at, r in u.partials]
        if u.final is not None:
            finals.append({
                "utterance": u.index, "text": u.final.transcript,
                "start_s": clip_s(u.start_s), "end_s": clip_s(u.end_s) if u.end_s is not None else None,
                "at_s": clip_s(u.final_at - t0) if u.final_at is not None else None,
                "confidence": round(u.final.confidence, 3),
            })
    for u, following in zip(utterances, utterances[1:], strict=False):
        if u.end_s is not None:
            boundaries.append({
                "after_utterance": u.index, "speech_end_s": clip_s(u.end_s),
                "next_start_s": clip_s(following.start_s),
                "cut": "max_utterance" if run.cut(u) else "endpoint",
            })
    final_words = [
        (w, u.index) for u in utterances if u.final is not None
        for w in _words(u.final.transcript, clip.language)
    ]
    diagnosis = classify(_words(clip.reference, clip.language), final_words, texts,
                         _words(whole_text, clip.language), forced)
    print(f"  {clip.name}: {diagnosis.errors} errors (whole {diagnosis.whole_errors}) of "
          f"{diagnosis.reference_words} words, {len(boundaries)} cuts: "
          f"{ {k: v for k, v in diagnosis.counts.items() if v} }", file=sys.stderr)
    return {
        "clip": clip.name,
        "seconds": round(clip.seconds, 2),
        "reference": clip.reference,
        "streamed": " ".join(f["text"] for f in finals),
        "whole": whole_text,
        "whole_windows": whole.windows,
        "whole_decode_s": round(whole.seconds, 3),
        "streamed_wer": round(diagnosis.errors / max(1, diagnosis.reference_words), 4),
        "whole_wer": round(diagnosis.whole_errors / max(1, diagnosis.reference_words), 4),
        "finals": finals,
        "partials": partials,
        "boundaries": boundaries,
        **diagnosis.to_json(),
    }, run


def _notes(clips: Sequence[dict[str, Any]]) -> dict[str, int]:
    """What the `other` errors look like."""
    notes: dict[str, int] = {}
    for c in clips:
        for a in c["alignment"]:
            if a.get("label") == "other":
                notes[a.get("note", "")] = notes.get(a.get("note", ""), 0) + 1
    return notes


async def diagnose(
    stub: stt_pb2_grpc.SpeechToTextServiceStub,
    sets: dict[str, dict[str, list[Clip]]],
    engines: dict[str, SpeechRecognizer],
    endpoint_s: float,
    passes: int = 1,
    levels_db: Sequence[float] = (0.0,),
) -> dict[str, dict[str, Any]]:
    """Per language and set (fleurs, generated): the pooled counts and each clip's detail,
    over `passes` streams of every clip at each of `levels_db` (each level decoded whole
    once)."""
    out: dict[str, dict[str, Any]] = {}
    for set_name, clips in sets.items():
        for language, items in clips.items():
            details, runs, paths, lost = [], [], final_paths(), unrecognised_speech()
            for level in levels_db:
                played = [clip.at_level(level) for clip in items]
                wholes = [await decode_whole(engines[language], clip) for clip in played]
                for number in range(passes):
                    if passes > 1 or len(levels_db) > 1:
                        print(f" {language} {set_name}, {level:+g} dB, pass {number + 1} of "
                              f"{passes}:", file=sys.stderr)
                    for clip, whole in zip(played, wholes, strict=True):
                        detail, run = await diagnose_clip(stub, clip, endpoint_s, whole)
                        details.append({"pass": number + 1, "level_db": level, **detail})
                        runs.append(run)
            words = sum(d["reference_words"] for d in details)
            errors = sum(d["errors"] for d in details)
            whole = sum(d["whole_errors"] for d in details)
            out.setdefault(language, {})[set_name] = {
                "model": engines[language].capabilities.name,
                "clips": len(items),
                "passes": passes,
                "levels_db": list(levels_db),
                "audio_s": round(sum(c.seconds for c in items), 1),
                "utterances": sum(len(d["finals"]) for d in details),
                "cuts": sum(len(d["boundaries"]) for d in details),
                "reference_words": words,
                "streamed_wer": round(errors / max(1, words), 4),
                "whole_wer": round(whole / max(1, words), 4),
                "counts": {k: sum(d["counts"][k] for d in details) for k in CLASSES},
                "other_notes": _notes(details),
                "speech_end_to_final_ms": _ms(
                    ended := [v for run in runs for v in run.speech_end_to_final_ms()]
                ),
                "speech_end_to_final_p90_ms": percentile(ended, 90),
                "speech_end_to_final_p50_interval_ms": median_interval(ended),
                "endpoint_to_final_ms": _ms(
                    endpointed := [v for run in runs for v in run.endpoint_to_final_ms()]
                ),
                "endpoint_to_final_p90_ms": percentile(endpointed, 90),
                "final_paths": paths_since(paths),
                "unrecognised_speech_s": unrecognised_since(lost),
                "clip_details": details,
            }
    return out


async def run_diagnose(args: argparse.Namespace) -> dict[str, Any]:
    settings = config.load()
    languages = ["en"] if args.smoke else args.languages.split(",")
    sets = {"fleurs": load_clips(languages, args.clips)}
    if args.smoke:
        sets = {"fleurs": {"en": [smoke_clip()]}}
    elif args.generated:
        sets["generated"] = load_clips(languages, 99, [generated_dir()])
    sets = {name: clips for name, clips in sets.items() if clips}
    if not sets:
        raise SystemExit(f"no clips for {languages}")
    print(f"loading models from {settings.models_dir}", file=sys.stderr)
    loaded = await asyncio.to_thread(engine_loader.load, settings)
    chooser = Models(loaded, max_pending=1)
    by_name = {e.capabilities.name: e for e in loaded}
    engines = {
        lang: by_name[chooser.for_language(lang).capabilities.name]
        for clips in sets.values() for lang in clips
    }
    await chooser.close()
    load_before = load_average()
    service = await server.create(settings, engine=loaded)
    port = await service.start("127.0.0.1:0")
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            print("one real-time stream per clip, then one whole decode:", file=sys.stderr)
            languages_out = await diagnose(
                stub, sets, engines, settings.stt.endpoint_silence_ms / 1000, args.passes,
                args.levels)
    finally:
        await service.stop(0)
    info = machine()
    info["load_average_before"] = load_before
    return {
        "benchmark": "stt_diagnostic",
        "smoke": bool(args.smoke),
        "machine": info,
        "settings": {
            "model": settings.stt.model,
            "english_model": settings.stt.english_model,
            "beam_size": settings.stt.beam_size,
            "final_beam_when_idle": settings.stt.final_beam_when_idle,
            "final_beam_when_doubtful": settings.stt.final_beam_when_doubtful,
            "endpoint_silence_ms": settings.stt.endpoint_silence_ms,
            "partial_interval_ms": settings.stt.partial_interval_ms,
            "max_utterance_s": settings.stt.max_utterance_s,
            "final_context_s": settings.stt.final_context_s,
            "chunk_ms": round(CHUNK_S * 1000),
        },
        "whole_decode": "the engine's transcribe() on the clip's whole audio (windows of at most "
                        "30 s cut at the quietest 200 ms), language given, beam 1, temperature 0, "
                        "no prefix",
        "normaliser": NORMALISER,
        "classes": list(CLASSES),
        "languages": languages_out,
    }


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if not bounds else f"{bounds[0]:.0f}-{bounds[1]:.0f}"


def diagnose_report(result: dict[str, Any]) -> str:
    short = {"boundary_loss": "b.loss", "boundary_duplicate": "b.dup", "forced_prefix": "prefix",
             "premature_end": "prem.end", "tail_hallucination": "tail", "model_error": "model",
             "other": "other"}
    rows = []
    for language, by_set in result["languages"].items():
        for set_name, r in by_set.items():
            rows.append([
                language, set_name, r["model"], r["clips"], r["utterances"], r["cuts"],
                r["reference_words"], 100 * r["streamed_wer"], 100 * r["whole_wer"],
                *[r["counts"][k] for k in CLASSES], r["speech_end_to_final_ms"]["p50_ms"],
                _interval(r.get("speech_end_to_final_p50_interval_ms")),
                r["endpoint_to_final_ms"]["p50_ms"],
                round(sum(r.get("unrecognised_speech_s", {}).values()), 1),
            ])
    m = result["machine"]
    others = [f"  {lang} {s}: {r['other_notes']}" for lang, by_set in result["languages"].items()
              for s, r in by_set.items() if r["other_notes"]]
    return "\n".join([
        f"stt_svc streamed-error diagnosis ({'smoke' if result['smoke'] else 'full'}), "
        f"{m['cpu_count']} CPUs, load average before {m['load_average_before']}, "
        f"after {m['load_average']}",
        f"WER normaliser: {result['normaliser']}",
        f"whole: {result['whole_decode']}",
        "",
        table(["lang", "set", "model", "clips", "utts", "cuts", "words", "WER %", "whole WER %",
               *[short[k] for k in CLASSES], "speech end->final p50", "95% CI",
               "endpoint->final p50", "unrec. s"], rows),
        "(95% CI: distribution-free interval of the speech end->final median; -: too few "
        "finals. Utterances, words and errors count every pass. unrec. s: seconds of speech "
        "left without words, dragoman_stt_unrecognised_speech_seconds_total.)",
        "",
        "what the `other` errors are:",
        *(others or ["  none"]),
    ])


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels in dB, comma-separated: {text!r}") from None
    if any(not -40 <= db <= 0 for db in levels):
        raise argparse.ArgumentTypeError("levels lie between -40 and 0 dB: louder could clip")
    return levels


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stt_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one short English clip, one stream")
    parser.add_argument("--streams", type=int, default=4,
                        help="most concurrent streams (1, 2, 4, ... up to it)")
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated")
    parser.add_argument("--clips", type=int, default=5, help="clips per language")
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="audio per stream in the concurrency runs")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default bench/results/stt.json, stt_diagnostic.json)")
    parser.add_argument("--diagnose", action="store_true",
                        help="stream each clip alone, decode it whole too, and classify "
                             "every streamed error (boundary_loss, forced_prefix, ...)")
    parser.add_argument("--generated", action=argparse.BooleanOptionalAction, default=True,
                        help="with --diagnose: the generated long clips too (not with --smoke)")
    parser.add_argument("--passes", type=_positive, default=1,
                        help="with --diagnose: stream every clip this many times and pool "
                             "all passes' finals (errors and latencies): the confidence "
                             "interval of a language's speech end->final median narrows "
                             "about as 1/sqrt(passes)")
    parser.add_argument("--levels", type=_levels, default=(0.0,), metavar="DB[,DB...]",
                        help="with --diagnose: play every clip (and decode it whole) at each "
                             "of these levels, in dB against the recording, e.g. 0,-6,-12. "
                             "The same audio streamed again gives the same words: other "
                             "levels make Whisper err differently, so each level adds "
                             "words' worth of evidence where passes add only latencies")
    args = parser.parse_args(argv)
    result = asyncio.run(run_diagnose(args) if args.diagnose else run(args))
    if args.out is None:
        path = write_result("stt_diagnostic" if args.diagnose else "stt", result)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        path = args.out
    print(diagnose_report(result) if args.diagnose else report(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
