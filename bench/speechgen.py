"""Long synthetic speech with an exact reference: FLORES sentences read by a TTS voice.

    python -m bench.speechgen --language es [--voice ef_dora] [--seconds 40] [--seed 0]
                              [--out DIR] [--name NAME]
    python -m bench.speechgen --fixed      # rewrites the set in tests/data/speech/generated/

Sentences come from tests/data/speech/fleurs/translations.tsv (FLORES-200
devtest, one column per language), skipping those with digits or brackets
(the WER normaliser leaves numbers as written and drops bracketed text, so
either would count a correct reading as wrong). Each sentence is synthesised
alone with Kokoro or Piper (loaded through tts_svc's engines from the models
directory), resampled to 16 kHz, its leading and trailing silence trimmed,
and the sentences joined with pauses of 0.3-0.8 s, except that one pair
(the second and third sentence) is joined by a short 150-250 ms pause, shorter
than the endpointer's silence, to provoke a cut inside what the segmenter
sees as one long utterance. Sentences are added until the audio lasts
--seconds.

Writes NAME.ogg (Opus in Ogg, 16 kHz mono, 24 kbit/s), NAME.txt (the
reference: one sentence per line) and NAME.json (voice, seed, and each
sentence's span in the audio and the pause before it).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, TESTDATA
from dragoman import audio, config
from dragoman.devices import Device
from tts_svc.encoding import OggOpusEncoder
from tts_svc.engines.base import SynthesisRequest, TtsEngine

RATE_HZ = 16_000
BITRATE_BPS = 24_000
"""As the FLEURS clips: about 3 kB a second of speech."""
TRANSLATIONS = TESTDATA / "speech" / "fleurs" / "translations.tsv"
GENERATED = ROOT / "tests" / "data" / "speech" / "generated"
PAUSE_S = (0.3, 0.8)
SHORT_PAUSE_S = (0.15, 0.25)
SHORT_PAUSE_AFTER = 1
"""The pause after this sentence (0-based) is the short one."""
EDGE_S = 0.03
"""Silence kept at each end of a sentence after trimming."""
VOICES = {"en": "af_heart", "es": "ef_dora", "fr": "ff_siwis", "pt": "pf_dora", "it": "if_sara"}
"""Default Kokoro voice per language; en_US-joe-medium is the Piper voice."""
PIPER_JOE = "en_US-joe-medium"
FIXED = (
    # the committed set: (name, language, voice, seconds, seed)
    ("gen-en-000", "en", PIPER_JOE, 38.0, 1),
    ("gen-es-000", "es", "ef_dora", 34.0, 2),
    ("gen-pt-000", "pt", "pf_dora", 38.0, 3),
    ("gen-fr-000", "fr", "ff_siwis", 38.0, 4),
)
_UNREADABLE = re.compile(r"[\d()\[\]]")


def sentences(language: str, seed: int) -> list[str]:
    """The usable FLORES sentences of `language`, in an order fixed by `seed`."""
    with TRANSLATIONS.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or language not in rows[0]:
        raise SystemExit(f"no column {language!r} in {TRANSLATIONS}")
    texts = [r[language].strip() for r in rows]
    usable = [t for t in texts if t and not _UNREADABLE.search(t)]
    random.Random(seed).shuffle(usable)
    return usable


def trim(samples: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """`samples` without leading and trailing silence (10 ms frames quieter than
    `threshold_db` below the peak), keeping EDGE_S at each end."""
    frame = RATE_HZ // 100
    n = len(samples) // frame
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    edge = round(EDGE_S * RATE_HZ)
    start = max(0, loud[0] * frame - edge)
    end = min(len(samples), (loud[-1] + 1) * frame + edge)
    return samples[start:end]


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    start_s: float
    end_s: float
    pause_before_s: float


def join(pieces: Sequence[tuple[str, np.ndarray]], seed: int) -> tuple[np.ndarray, list[Span]]:
    """The sentences' audio joined by pauses (see the module's docstring), and each one's span."""
    rng = random.Random(seed)
    parts: list[np.ndarray] = []
    spans: list[Span] = []
    position = 0
    for i, (text, samples) in enumerate(pieces):
        pause = 0.0
        if i > 0:
            low, high = SHORT_PAUSE_S if i - 1 == SHORT_PAUSE_AFTER else PAUSE_S
            pause = round(rng.uniform(low, high), 3)
            parts.append(np.zeros(round(pause * RATE_HZ), np.float32))
            position += len(parts[-1])
        spans.append(Span(text, position / RATE_HZ, (position + len(samples)) / RATE_HZ, pause))
        parts.append(samples.astype(np.float32))
        position += len(samples)
    return np.concatenate(parts), spans


def ogg_opus(samples: np.ndarray) -> bytes:
    return OggOpusEncoder(RATE_HZ, BITRATE_BPS).encode(samples, last=True).data


class Voices:
    """The TTS engines, loaded once; `speak` gives 16 kHz float32 audio of one sentence."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._engines: dict[str, TtsEngine] = {}

    def _engine(self, voice: str) -> TtsEngine:
        name = "piper" if voice.startswith("en_") else "kokoro"
        if name not in self._engines:
            settings = config.load()
            models_dir, threads = Path(settings.models_dir), settings.tts.cpu_threads
            device = Device.parse("cpu", "tts.device")
            if name == "piper":
                from tts_svc.engines.piper import PiperEngine

                self._engines[name] = PiperEngine.load(models_dir, threads, self._executor, device)
            else:
                from tts_svc.engines.kokoro import KokoroEngine

                self._engines[name] = KokoroEngine.load(models_dir, threads, self._executor, device)
        engine = self._engines[name]
        if voice not in {v.name for v in engine.capabilities.voices}:
            raise SystemExit(f"no voice {voice!r} in {name}: "
                             f"{', '.join(v.name for v in engine.capabilities.voices)}")
        return engine

    async def speak(self, text: str, voice: str) -> np.ndarray:
        chunks = [
            audio.resample(np.asarray(c.samples, np.float32), c.sample_rate_hz, RATE_HZ)
            async for c in self._engine(voice).synthesize(SynthesisRequest(text, voice))
        ]
        return trim(np.concatenate(chunks))

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()


async def generate(voices: Voices, language: str, voice: str, seconds: float, seed: int
                   ) -> tuple[np.ndarray, list[Span]]:
    """Sentences of `language` read by `voice` until about `seconds` of audio."""
    pieces: list[tuple[str, np.ndarray]] = []
    total = 0.0
    for text in sentences(language, seed):
        samples = await voices.speak(text, voice)
        pieces.append((text, samples))
        total += len(samples) / RATE_HZ + sum(PAUSE_S) / 2
        print(f"  {len(samples) / RATE_HZ:5.1f} s  {text}", file=sys.stderr)
        if total >= seconds:
            break
    return join(pieces, seed)


def write(out: Path, name: str, language: str, voice: str, seed: int,
          samples: np.ndarray, spans: list[Span]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.ogg"
    path.write_bytes(ogg_opus(samples))
    path.with_suffix(".txt").write_text("".join(s.text + "\n" for s in spans), encoding="utf-8")
    meta: dict[str, Any] = {
        "language": language, "voice": voice, "seed": seed, "rate_hz": RATE_HZ,
        "seconds": round(len(samples) / RATE_HZ, 3),
        "sentences": [{"text": s.text, "start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3),
                       "pause_before_s": s.pause_before_s} for s in spans],
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return path


async def run(args: argparse.Namespace) -> None:
    if args.fixed:
        jobs = [(n, lang, v, s, seed, GENERATED) for n, lang, v, s, seed in FIXED]
    else:
        if args.language is None:
            raise SystemExit("give --language (or --fixed)")
        voice = args.voice or VOICES.get(args.language)
        if voice is None:
            raise SystemExit(f"no default voice for {args.language!r}: give --voice")
        name = args.name or f"gen-{args.language}-{args.seed:03d}"
        jobs = [(name, args.language, voice, args.seconds, args.seed, args.out)]
    with ThreadPoolExecutor(1) as executor:
        voices = Voices(executor)
        try:
            for name, language, voice, seconds, seed, out in jobs:
                print(f"{name}: {language}, {voice}", file=sys.stderr)
                samples, spans = await generate(voices, language, voice, seconds, seed)
                path = write(out, name, language, voice, seed, samples, spans)
                print(f"wrote {path} ({len(samples) / RATE_HZ:.1f} s, {len(spans)} sentences, "
                      f"{path.stat().st_size // 1024} KiB)")
        finally:
            await voices.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.speechgen", description=__doc__.split("\n")[0],
        epilog=f"default voices: {', '.join(f'{k} {v}' for k, v in VOICES.items())}; "
               f"Piper: {PIPER_JOE} (en)",
    )
    parser.add_argument("--language", help="column of translations.tsv: en, es, fr, pt, it")
    parser.add_argument("--voice", help="Kokoro voice (af_heart, ef_dora, ...) or en_US-joe-medium")
    parser.add_argument("--seconds", type=float, default=40.0, help="about this much audio")
    parser.add_argument("--seed", type=int, default=0, help="sentence order and pauses")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder to write into")
    parser.add_argument("--name", help="file name without suffix (default gen-LANG-SEED)")
    parser.add_argument("--fixed", action="store_true",
                        help=f"regenerate the committed set in {GENERATED.relative_to(ROOT)}")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
