"""Ear-voice span (EVS) and chrF of long-form speech, in utterance and simultaneous mode.

Issue #20 part 3. Per direction, one person says a 60-90 s monologue (the
FLEURS clips of their language, trimmed to their speech and joined with
seeded 150-400 ms pauses; when those make less than 60 s, the sentences of
the generated long clip, bench.speechgen, that fit in 90 s are added) at
real-time pace to a partner, once per `session.mode` on the same audio (a
fresh mesh per mode, real engines). The partner records the arrival of
every SpeechAudio chunk.

EVS, as interpreting research measures it: the listener plays the chunks
back to back (a chunk starts at its arrival or when the one before it ends,
whichever is later); for each source word, EVS = when the listener starts
hearing the piece (or the whole utterance) whose source_text contains it,
minus when the word ended in the speaker's stream (the send time of the
100 ms chunk holding its last sample). Source words and their ends come from
Whisper word timestamps on the monologue's sentences, computed offline
(cached under the dragoman cache folder); they are aligned to the heard
source_text words with difflib on normalised words, and a word left out of
the alignment takes the next aligned word's piece. Start offset: the first
source word's start to the first translated audio; listener lag: the end of
the last source word to the end of the translated speech.

chrF (sacrebleu chrF2, one document per direction and mode): the spoken
translation (SpeechAudio text, in order) and the final captions (final
Translation events joined) against the FLORES references of the sentences
joined. A short-utterance pass before the monologue (the first four words
of each FLEURS sentence, each said alone) gives the server's end of speech
-> first audio per mode: simultaneous mode must not slow short utterances.
WER heard: whisper-base transcribes the audio of each piece (or whole
utterance) as the listener got it, against the text it was synthesised
from; catch-up speech (faster speaking rates) trades it for EVS.

    python -m bench.simultaneous [--pairs en-pt,pt-en] [--modes utterance,simultaneous]
        [--set session.piece_max_words=8 ...] [--smoke]

--set applies a setting to the simultaneous mode's mesh only. --smoke: fake
engines, a few seconds of speech: plumbing only.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    TESTDATA,
    Participant,
    latency_ms,
    machine,
    summary,
    table,
    write_result,
)
from bench.e2e_latency import (
    CHUNK_SAMPLES,
    PAD_CHUNKS,
    RATE_HZ,
    TURN_TIMEOUT_S,
    pair_up,
    part,
    serve,
    speak,
    speech_span,
)
from bench.mesh_chrf import flores
from bench.st_bench import chrf
from bench.stt_bench import normalise, wer
from dragoman import audio, config
from dragoman.stats import percentile
from dragoman.v1 import conversation_pb2 as pb

MODES = ("utterance", "simultaneous")
MIN_MONOLOGUE_S, MAX_MONOLOGUE_S = 60.0, 90.0
PAUSE_S = (0.15, 0.4)
MARGIN_S = 0.1
"""Kept around a clip's loud frames (bench.e2e_latency.speech_span) so soft word edges stay."""
TIMING_MODEL = "whisper-base"
SHORT_CLIPS = 5
SHORT_WORDS = 4
"""Words of a short utterance: too few for a piece to end at the length cap."""
TAIL_S = 3.0
"""Silence streamed after the monologue, so the last utterance ends."""
SMOKE_S = 4.0
GOAL_EVS_P50_MS = 2500.0
GOAL_EVS_RATIO = 2.0
GOAL_CHRF_GAP = 3.0


# -- the monologue ---------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One stretch of the monologue: a FLEURS clip or one sentence of a generated clip."""

    name: str
    samples: np.ndarray = field(repr=False)
    source: str
    reference: str


@dataclass(frozen=True)
class Monologue:
    language: str
    sentences: tuple[Sentence, ...]
    starts: tuple[int, ...]
    """Sample where each sentence starts in `samples`."""
    samples: np.ndarray = field(repr=False)

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE_HZ


def _trim(samples: np.ndarray) -> np.ndarray:
    start, end = speech_span(samples)
    margin = int(MARGIN_S * RATE_HZ)
    return samples[max(0, start - margin):end + margin]


def sentences(source: str, target: str) -> list[Sentence]:
    """The FLEURS clips of `source`, then, if they make less than MIN_MONOLOGUE_S, the
    sentences of its generated clips that fit in MAX_MONOLOGUE_S, with their FLORES
    translations into `target`."""
    rows = flores()
    out = []
    for path in sorted((TESTDATA / "speech" / "fleurs").glob(f"fleurs-{source}-*.ogg")):
        row = rows[path.stem]
        out.append(Sentence(path.stem, _trim(audio.decode_file(path, RATE_HZ)), row[source], row[target]))
    by_source = {r[source].strip(): r[target] for r in rows.values()}
    seconds = sum(len(s.samples) for s in out) / RATE_HZ + PAUSE_S[1] * len(out)
    if seconds >= MIN_MONOLOGUE_S:
        return out
    for path in sorted((TESTDATA / "speech" / "generated").glob(f"gen-{source}-*.ogg")):
        samples = audio.decode_file(path, RATE_HZ)
        meta = json.loads(path.with_suffix(".json").read_text())
        for n, s in enumerate(meta["sentences"]):
            if s["text"].strip() not in by_source:
                raise SystemExit(f"{path.name}: no FLORES translation of {s['text']!r}")
            cut = _trim(samples[int(s["start_s"] * RATE_HZ):int(s["end_s"] * RATE_HZ)])
            seconds += len(cut) / RATE_HZ + PAUSE_S[1]
            if seconds > MAX_MONOLOGUE_S:
                return out
            out.append(Sentence(f"{path.stem}#{n}", cut, s["text"], by_source[s["text"].strip()]))
    return out


def monologue(language: str, parts: Sequence[Sentence], seed: int) -> Monologue:
    """The sentences joined with seeded pauses of PAUSE_S."""
    rng = random.Random(seed)
    pieces, starts, at = [], [], 0
    for n, s in enumerate(parts):
        if n:
            gap = np.zeros(int(rng.uniform(*PAUSE_S) * RATE_HZ), np.float32)
            pieces.append(gap)
            at += len(gap)
        starts.append(at)
        pieces.append(s.samples.astype(np.float32))
        at += len(s.samples)
    return Monologue(language, tuple(parts), tuple(starts), np.concatenate(pieces))


# -- source words, timed offline --------------------------------------------------


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    """Seconds from the start of the monologue."""


def source_words(mono: Monologue, fake: bool, cache: Path, model: str = TIMING_MODEL) -> list[Word]:
    """Whisper's words of each sentence with their timestamps, offset by the sentence's place
    in the monologue. Cached per sentence audio and model in `cache`."""
    engine: Any = None
    words: list[Word] = []
    for sentence, start in zip(mono.sentences, mono.starts, strict=True):
        key = hashlib.sha256(sentence.samples.tobytes() + f"{model}/{fake}/{mono.language}".encode())
        path = cache / f"{key.hexdigest()[:24]}.json"
        try:
            timed = json.loads(path.read_text())
        except (OSError, ValueError):
            if engine is None:
                engine = _timing_engine(model, fake)
            from stt_svc.engines.base import DecodeOptions

            result = engine.transcribe(sentence.samples, DecodeOptions(
                language=mono.language, word_timestamps=True))
            timed = [[w.word.strip(), w.start_s, w.end_s] for w in result.words]
            cache.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(timed))
        offset = start / RATE_HZ
        words += [Word(t, offset + a, offset + b) for t, a, b in timed
                  if t and offset + b <= mono.seconds]  # a smoke run cuts the monologue short
    return words


def _timing_engine(model: str, fake: bool) -> Any:
    if fake:
        from stt_svc.engines.fake import FakeEngine

        return FakeEngine()
    from stt_svc.engines.whisper import WhisperEngine

    return WhisperEngine(Path(config.load().models_dir) / model, name=model, cpu_threads=2)


# -- what the listener hears ------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One SpeechAudio chunk as the listener got it."""

    arrived_s: float
    utterance_id: str
    piece_index: int
    chunk_index: int
    source_text: str
    text: str
    duration_s: float
    is_last: bool
    pcm: bytes = field(default=b"", repr=False)
    """The chunk's audio (PCM16), kept for `heard_wer`; not in the JSON."""
    rate_hz: int = 0


@dataclass
class Listener(Participant):
    """A Participant that keeps every SpeechAudio chunk and the partner's finals."""

    chunks: list[Chunk] = field(default_factory=list)
    transcripts: dict[str, str] = field(default_factory=dict)
    captions: dict[str, pb.Translation] = field(default_factory=dict)
    partial_translations: int = 0

    def on_event(self, event: pb.ConversationEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "speech_audio":
            a = event.speech_audio
            rate = a.sample_rate_hertz or 1
            self.chunks.append(Chunk(time.monotonic(), a.utterance_id, a.piece_index, a.chunk_index,
                                     a.source_text, a.text, len(a.data) / 2 / rate, a.is_last,
                                     a.data, a.sample_rate_hertz))
        elif kind == "transcription" and event.transcription.speaker == pb.SPEAKER_PARTNER:
            if event.transcription.is_final:
                self.transcripts[event.transcription.utterance_id] = event.transcription.text
        elif kind == "translation" and event.translation.speaker == pb.SPEAKER_PARTNER:
            if event.translation.is_final:
                self.captions[event.translation.utterance_id] = event.translation
            else:
                self.partial_translations += 1
        super().on_event(event)

    def all_heard(self) -> bool:
        """Every utterance whose speech began has had its last chunk."""
        begun = {c.utterance_id for c in self.chunks}
        return begun <= {c.utterance_id for c in self.chunks if c.is_last}


def heard_wer(chunks: Sequence[Chunk], language: str, engine: Any) -> float | None:
    """How much of what was said to the listener a machine listener misses: `engine`
    (Whisper) transcribes the audio of each piece (or whole utterance) as it arrived, and
    the WER is pooled over the pieces against the text they were synthesised from. Catch-up
    speech trades this for ear-voice span (bench/results/simultaneous.md). None: no audio."""
    from stt_svc.engines.base import DecodeOptions

    audio_of: dict[tuple[str, int], list[Chunk]] = {}
    for c in chunks:
        audio_of.setdefault((c.utterance_id, c.piece_index), []).append(c)
    references, hypotheses = [], []
    for piece in audio_of.values():
        piece = sorted(piece, key=lambda c: c.chunk_index)
        said: list[str] = []
        for c in piece:  # each chunk carries the text of the sentence it speaks
            if c.text and (not said or said[-1] != c.text):
                said.append(c.text)
        text, rate = " ".join(said), piece[0].rate_hz
        pcm = b"".join(c.pcm for c in piece)
        if not text or not pcm or not rate:
            continue
        samples = audio.resample(audio.pcm16_to_float(pcm), rate, RATE_HZ)
        result = engine.transcribe(samples, DecodeOptions(language=language))
        references.append(text)
        hypotheses.append(result.text)
    return round(wer(references, hypotheses, language), 4) if references else None


# -- ear-voice span ----------------------------------------------------------------


def playback(chunks: Sequence[Chunk]) -> list[float]:
    """When each chunk starts playing when they are played back to back in arrival order."""
    starts, end = [], float("-inf")
    for c in chunks:
        start = max(c.arrived_s, end)
        starts.append(start)
        end = start + c.duration_s
    return starts


@dataclass(frozen=True)
class Unit:
    """A piece (or a whole utterance) as heard: when it starts playing and the source words
    it translates."""

    utterance_id: str
    piece_index: int
    start_s: float
    source_text: str
    text: str
    arrived_s: float = 0.0
    """When its first chunk arrived (it starts playing then, or once the audio before it ends)."""


def units(chunks: Sequence[Chunk], fallback: dict[str, str] | None = None) -> list[Unit]:
    """The pieces in the order heard. A piece with no source_text (an utterance spoken whole
    before simultaneous mode set it) takes `fallback[utterance_id]` (its final transcript)."""
    starts = playback(chunks)
    out: list[Unit] = []
    seen: dict[tuple[str, int], int] = {}
    texts: dict[int, list[str]] = {}
    for c, start in zip(chunks, starts, strict=True):
        key = (c.utterance_id, c.piece_index)
        if key not in seen:
            source = c.source_text
            if not source and not c.piece_index:
                source = (fallback or {}).get(c.utterance_id, "")
            seen[key] = len(out)
            out.append(Unit(c.utterance_id, c.piece_index, start, source, "", c.arrived_s))
            texts[seen[key]] = []
        spoken = texts[seen[key]]
        if c.text and (not spoken or spoken[-1] != c.text):  # TTS repeats a sentence's text per chunk
            spoken.append(c.text)
    return [replace(u, text=" ".join(texts[i])) for i, u in enumerate(out)]


def align(words: Sequence[str], heard: Sequence[Unit], language: str) -> list[int | None]:
    """For each source word, the index of the unit whose source_text holds it (difflib on
    normalised words); a word left out takes the next aligned word's unit, None if none follows."""
    norm = [" ".join(normalise(w, language).split()) for w in words]
    target: list[str] = []
    owner: list[int] = []
    for i, u in enumerate(heard):
        for w in normalise(u.source_text, language).split():
            target.append(w)
            owner.append(i)
    found: list[int | None] = [None] * len(norm)
    matcher = difflib.SequenceMatcher(None, norm, target, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            found[block.a + k] = owner[block.b + k]
    following: int | None = None
    for n in range(len(found) - 1, -1, -1):
        if found[n] is None:
            found[n] = following
        else:
            following = found[n]
    return found


def evs(words: Sequence[Word], word_end_s: Sequence[float], word_start_s: Sequence[float],
        chunks: Sequence[Chunk], language: str,
        fallback: dict[str, str] | None = None) -> dict[str, Any]:
    """Ear-voice span of each source word, given when each ended (and started) in the
    speaker's stream, in the clock of the chunks' arrivals."""
    heard = units(chunks, fallback)
    owner = align([w.text for w in words], heard, language)
    mapped = [(o, end) for o, end in zip(owner, word_end_s, strict=True) if o is not None]
    spans = [(heard[o].start_s - end) * 1000 for o, end in mapped]
    starts = playback(chunks)
    # Where each word's EVS goes: waiting in its piece for the piece's last word, from that
    # word's end to the piece's first chunk (stable prefix, MT, TTS), queued behind audio.
    last_end: dict[int, float] = {}
    for o, end in mapped:
        last_end[o] = max(last_end.get(o, end), end)
    parts: dict[str, list[float]] = {
        "in_piece": [(last_end[o] - end) * 1000 for o, end in mapped],
        "to_arrival": [(heard[o].arrived_s - last_end[o]) * 1000 for o, _ in mapped],
        "queued": [(heard[o].start_s - heard[o].arrived_s) * 1000 for o, _ in mapped],
    }
    # The same speech with no processing time: each piece arrives as its last word ends. What
    # is left is the voice's length: speech longer than the source's keeps the listener behind.
    unit_of = {(u.utterance_id, u.piece_index): i for i, u in enumerate(heard)}
    instant = units([replace(c, arrived_s=last_end.get(unit_of[(c.utterance_id, c.piece_index)],
                                                       c.arrived_s)) for c in chunks], fallback)
    out: dict[str, Any] = {
        "words": len(words), "unmapped": sum(o is None for o in owner), "pieces": len(heard),
        "evs": summary(spans),
        "evs_instant": summary([(instant[o].start_s - end) * 1000 for o, end in mapped]),
        "evs_p90_ms": percentile(spans, 90),
        "start_offset_ms": (starts[0] - word_start_s[0]) * 1000 if starts and words else None,
        "listener_lag_ms": ((starts[-1] + chunks[-1].duration_s - word_end_s[-1]) * 1000
                            if starts and words else None),
        "translated_speech_s": sum(c.duration_s for c in chunks),
        "evs_parts_ms": {name: summary(values) for name, values in parts.items()},
    }
    third = len(spans) // 3
    if third:
        out["evs_p50_by_third_ms"] = [summary(spans[i * third:(i + 1) * third])["p50_ms"]
                                      for i in range(3)]
    return out


def stream_times(words: Sequence[Word], sent: Sequence[float]) -> tuple[list[float], list[float]]:
    """When each word started and ended in the speaker's stream: the send time of the chunk
    holding its first / last sample (`sent`: bench.e2e_latency.speak's)."""
    def at(seconds: float, last: bool) -> float:
        sample = max(0, round(seconds * RATE_HZ) - (1 if last else 0))
        return sent[min(len(sent) - 1, PAD_CHUNKS + sample // CHUNK_SAMPLES)]

    return [at(w.start_s, False) for w in words], [at(w.end_s, True) for w in words]


# -- a run -----------------------------------------------------------------------


async def say_monologue(gateway: str, mono: Monologue, target: str, words: list[Word],
                        tail_s: float, listener_engine: Any) -> dict[str, Any]:
    speaker, listener, session_id = await pair_up(gateway, mono.language, target, "simul", Listener)
    try:
        sent = await speak(speaker, mono.samples, tail_s)
        quiet = await speaker.wait_quiet(TURN_TIMEOUT_S)
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while not listener.all_heard() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await part(speaker, listener, session_id)
    chunks = listener.chunks
    fallback = {u: (t.source_text if u in listener.captions and (t := listener.captions[u]).source_text
                    else listener.transcripts.get(u, "")) for u in {c.utterance_id for c in chunks}}
    starts, ends = stream_times(words, sent)
    spans = evs(words, ends, starts, chunks, mono.language, fallback)
    order = sorted(listener.captions, key=lambda u: int(u.rsplit("-", 1)[1]))
    heard = units(chunks, fallback)
    reference = " ".join(s.reference for s in mono.sentences)
    spoken = " ".join(u.text for u in heard if u.text)
    captions = " ".join(listener.captions[u].text for u in order if listener.captions[u].text)
    return {
        "completed": quiet and listener.all_heard(),
        "utterances": len(speaker.started),
        "piece_counts": _piece_counts(heard),
        "partial_translations": listener.partial_translations,
        **spans,
        "chrf_speech": chrf([spoken], [reference]),
        "chrf_captions": chrf([captions], [reference]),
        "wer_heard": await asyncio.to_thread(heard_wer, chunks, target, listener_engine),
        "speech": spoken,
        "captions": captions,
        "pieces": [{"utterance_id": u.utterance_id, "piece_index": u.piece_index,
                    "start_s": round(u.start_s - sent[0], 3), "source_text": u.source_text,
                    "text": u.text} for u in heard],
        # seconds from the first chunk sent: what evs() needs to recompute the spans
        "chunks": [{**_json_chunk(c), "arrived_s": c.arrived_s - sent[0]} for c in chunks],
        "word_start_s": [t - sent[0] for t in starts],
        "word_end_s": [t - sent[0] for t in ends],
        "fallback": fallback,
        "errors": speaker.errors + listener.errors,
    }


def _json_chunk(c: Chunk) -> dict[str, Any]:
    return {k: v for k, v in asdict(c).items() if k not in ("pcm", "rate_hz")}


def _piece_counts(heard: Sequence[Unit]) -> dict[str, int]:
    """Utterances spoken whole (piece 0) and in pieces, and the pieces those made."""
    pieces = [u for u in heard if u.piece_index]
    return {"whole": sum(not u.piece_index for u in heard),
            "in_pieces": len({u.utterance_id for u in pieces}), "pieces": len(pieces)}


def short_utterances(mono: Monologue, words: Sequence[Word], count: int) -> list[np.ndarray]:
    """The first SHORT_WORDS words of each of the first `count` sentences of the monologue,
    cut halfway between the last of them and the next word."""
    out = []
    for start, end in zip(mono.starts, [*mono.starts[1:], len(mono.samples)], strict=True):
        inside = [w for w in words if start <= w.start_s * RATE_HZ < end]
        if len(inside) <= SHORT_WORDS or len(out) == count:
            continue
        cut = (inside[SHORT_WORDS - 1].end_s + inside[SHORT_WORDS].start_s) / 2
        out.append(mono.samples[start:int(cut * RATE_HZ)])
    return out


async def short_turns(gateway: str, source: str, target: str,
                      clips: Sequence[np.ndarray]) -> list[float]:
    """The server's end of speech -> first audio (ms) of each short utterance, said alone
    with silence around it."""
    speaker, listener, session_id = await pair_up(gateway, source, target, "short", Listener)
    totals = []
    try:
        for samples in clips:
            before = set(speaker.started)
            await speak(speaker, samples)
            await speaker.wait_quiet(TURN_TIMEOUT_S)
            totals += [latency_ms(speaker.latencies[u])["total"]
                       for u in speaker.started - before if u in speaker.latencies]
    finally:
        await part(speaker, listener, session_id)
    return totals


def env_settings(assignments: Sequence[str]) -> dict[str, str]:
    """`section.field=value` settings as DRAGOMAN_SECTION_FIELD variables (dragoman.config)."""
    out = {}
    known = config.env_names()
    for item in assignments:
        name, sep, value = item.partition("=")
        var = "DRAGOMAN_" + name.replace(".", "_").upper()
        if not sep or var not in known:
            raise SystemExit(f"--set wants section.field=value of a known setting, got {item!r}")
        out[var] = value
    return out


async def run(pairs: list[str], modes: list[str], tuned: dict[str, str], fake: bool, seed: int,
              short: int, cache: Path, work: Path) -> dict[str, Any]:
    monologues = {}
    for pair in pairs:
        source, target = pair.split("-")
        parts = sentences(source, target)
        mono = monologue(source, parts[:1] if fake else parts, seed)
        if fake:
            mono = Monologue(source, mono.sentences, mono.starts, mono.samples[:int(SMOKE_S * RATE_HZ)])
        words = await asyncio.to_thread(source_words, mono, fake, cache)
        monologues[pair] = (mono, words)
        sys.stderr.write(f"{pair}: {mono.seconds:.1f} s, {len(mono.sentences)} sentences, "
                         f"{len(words)} words\n")
    results: dict[str, Any] = {}
    listener_engine = await asyncio.to_thread(_timing_engine, TIMING_MODEL, fake)
    for mode in modes:
        env = {"DRAGOMAN_SESSION_MODE": mode, **(tuned if mode == "simultaneous" else {})}
        async with serve(work / mode, fake, env) as gateway:
            for pair, (mono, words) in monologues.items():
                target = pair.split("-")[1]
                started = time.monotonic()
                # short ones first, on an idle mesh: the monologue can leave a backlog
                shorts = await short_turns(gateway, mono.language, target,
                                           short_utterances(mono, words, short))
                row = await say_monologue(gateway, mono, target, words, 1.0 if fake else TAIL_S,
                                          listener_engine)
                row["short_total_ms"] = summary(shorts)
                results.setdefault(pair, {})[mode] = row
                sys.stderr.write(f"{mode} {pair}: {time.monotonic() - started:.0f} s\n")
    return {
        "benchmark": "simultaneous",
        "machine": machine(),
        "engines": "fake (smoke: plumbing only)" if fake else "real (settings defaults)",
        "settings": {"simultaneous": tuned},
        "method": ("services as separate processes, a fresh mesh per mode; the monologue at "
                   "real-time pace in 100 ms chunks; EVS per source word (Whisper "
                   f"{TIMING_MODEL} word timestamps offline) to the playback start of the piece "
                   "holding it, chunks played back to back; sacrebleu chrF2, one document"),
        "goal": {"evs_p50_ms": GOAL_EVS_P50_MS, "evs_ratio": GOAL_EVS_RATIO,
                 "chrf_gap": GOAL_CHRF_GAP},
        "monologues": {pair: {"seconds": round(m.seconds, 2), "seed": seed,
                              "sentences": [s.name for s in m.sentences],
                              "words": [asdict(w) for w in w_]}
                       for pair, (m, w_) in monologues.items()},
        "results": results,
    }


def report(result: dict[str, Any]) -> str:
    rows, lines, notes = [], [], []
    for pair, by_mode in result["results"].items():
        for mode, r in by_mode.items():
            e = r["evs"]
            rows.append([f"{pair.replace('-', ':')} {mode}" + ("" if r["completed"] else "*"),
                         e["p50_ms"], e["mean_ms"], r["evs_p90_ms"], r["start_offset_ms"],
                         r["listener_lag_ms"], f"{r['unmapped']}/{r['words']}",
                         f"{r['piece_counts']['whole']}/{r['piece_counts']['pieces']}",
                         r["chrf_speech"], r["chrf_captions"], _pct(r.get("wer_heard")),
                         r["short_total_ms"]["p50_ms"]])
            parts = r.get("evs_parts_ms")
            if parts:
                notes.append(f"{pair.replace('-', ':')} {mode}: EVS mean " + ", ".join(
                    f"{name.replace('_', ' ')} {_int(s['mean_ms'])}" for name, s in parts.items())
                    + f"; EVS p50 with no processing time {_int(r['evs_instant']['p50_ms'])}")
        modes = {m: by_mode.get(m) for m in reversed(MODES)}  # the order
        lines.append(f"{pair.replace('-', ':')} " + " ".join(
            f"{m} evs_p50_ms={_int(r['evs']['p50_ms'])} chrf={r['chrf_speech']}"
            if r else f"{m} evs_p50_ms=- chrf=-" for m, r in modes.items()))
    m = result["machine"]
    return "\n".join([
        f"engines: {result['engines']}; load average {m['load_average']} on {m['cpu_count']} cores; "
        f"simultaneous settings: {result['settings']['simultaneous'] or 'defaults'}",
        table(["direction mode", "evs p50", "evs mean", "evs p90", "start", "lag end", "unmapped",
               "whole/pieces", "chrF speech", "chrF captions", "WER heard %", "short p50"], rows),
        "ms: EVS per source word; start = first source word -> first translated audio; "
        "lag end = last source word -> end of the translated speech; short p50 = server's end "
        "of speech -> first audio of short utterances said alone; WER heard = whisper-base on "
        "each piece's audio against its text. *: not every utterance was heard.",
        *notes,
        "(ms: waiting in the piece for its last word; that word's end -> the piece's first "
        "chunk; queued behind the audio before it; no processing time: each piece arriving "
        "as its last word ends, what the translated speech's length alone costs)"
        if notes else "",
        "",
        *lines,
    ])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _int(value: float | None) -> str:
    return "-" if value is None else str(round(value))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="fake engines, seconds of speech")
    parser.add_argument("--pairs", default="en-pt,pt-en")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting of the simultaneous mode's mesh (repeatable)")
    parser.add_argument("--seed", type=int, default=20, help="of the pauses between sentences")
    parser.add_argument("--short", type=int, default=SHORT_CLIPS,
                        help="short utterances said alone per direction and mode (0: none)")
    parser.add_argument("--cache", type=Path, default=config.cache_dir() / "bench-simultaneous",
                        help="where the offline word timestamps are kept")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    pairs = ["en-pt"] if args.smoke else args.pairs.split(",")
    modes = args.modes.split(",")
    if set(modes) - set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")
    tuned = env_settings(args.set)
    with tempfile.TemporaryDirectory(prefix="dragoman-simul-") as tmp:
        cache = Path(tmp) / "words" if args.smoke else args.cache
        result = asyncio.run(run(pairs, modes, tuned, args.smoke, args.seed,
                                 min(args.short, 1) if args.smoke else args.short, cache, Path(tmp)))
    result["smoke"] = args.smoke
    path = write_result("simultaneous", result, **({"out_dir": args.out} if args.out else {}))
    sys.stdout.write(f"written to {path}\n\n" + report(result) + "\n")


if __name__ == "__main__":
    main()
