"""Speech synthesis latency, speed and intelligibility, per language and engine.

    python -m bench.tts_bench [--smoke] [--repeats N] [--sentences N] [--languages en,es,...] [--out FILE]

Runs one tts_svc in this process (the engines of settings.tts.engines plus
espeak-ng, warmed up, audio cache off) and, over real gRPC, for each
product language and each engine that speaks it (its default voice for
that language):

* time to the first audio chunk, p50 and p95 over N requests, of a short
  sentence (at most 12 words) and of a long text (three sentences);
* real-time factor: time to the last chunk / seconds of audio, over the
  same requests;
* round-trip intelligibility: the first N Tatoeba sentences of the
  language (tests/data/mt/tatoeba, or $DRAGOMAN_TESTDATA/mt/tatoeba;
  EN, ES, PT, FR, DE, IT) are synthesised at 16 kHz and transcribed by
  Whisper base (faster-whisper, greedy, language given); WER over all of
  them (jiwer, lower case, punctuation removed).

Also, on the Kokoro engine itself, how its time grows with the words of
the first piece and with ONNX Runtime threads (the choice behind Kokoro's
3-word first piece), as ratios of variants measured in the same run.

Prints a table and the targets (first chunk p50 <= 200 ms in English and
<= 400 ms in Spanish for a short sentence, WER <= 15 % for neural voices)
and writes JSON (default bench/results/tts.json). `--smoke`: the default
voices of EN, ES and DE, 1 request per text, 2 sentences: a quick check that
every part runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jiwer
import numpy as np

from bench.common import TESTDATA, machine, percentile, table
from dragoman import config, rpc
from dragoman.languages import LANGUAGES
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc
from tts_svc import server
from tts_svc.cache import MemoryCache
from tts_svc.engines.base import SynthesisRequest

if TYPE_CHECKING:
    from dragoman.tts.v1.tts_pb2_grpc import TextToSpeechServiceAsyncStub as Stub

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "tts.json"
WHISPER = "whisper-base"
STT_RATE_HZ = 16_000
TARGETS = {"en_first_chunk_p50_ms": 200.0, "es_first_chunk_p50_ms": 400.0, "neural_wer": 0.15}
SMOKE_LANGUAGES = ("en", "es", "de")
PREFERRED = frozenset({"af_heart"})
"""Voices measured for an engine whose voice is not the language's default (Kokoro's best English)."""

# At most 12 words each.
SHORT = {
    "en": "Good morning, I would like a table for two people, please.",
    "es": "Buenos días, me gustaría reservar una mesa para dos personas.",
    "pt": "Bom dia, eu gostaria de reservar uma mesa para duas pessoas.",
    "fr": "Bonjour, je voudrais réserver une table pour deux personnes.",
    "de": "Guten Morgen, ich möchte einen Tisch für zwei Personen reservieren.",
    "it": "Buongiorno, vorrei prenotare un tavolo per due persone.",
    "ru": "Доброе утро, я хотел бы заказать столик на двоих.",
    "ar": "صباح الخير، أريد حجز طاولة لشخصين من فضلك.",
    "zh": "早上好，我想预订一张两个人的桌子。",
    "ja": "おはようございます、二人用のテーブルを予約したいです。",
    "ko": "안녕하세요, 두 사람 자리를 예약하고 싶습니다.",
    "hi": "सुप्रभात, मैं दो लोगों के लिए एक मेज़ बुक करना चाहता हूँ।",
    "tr": "Günaydın, iki kişilik bir masa ayırtmak istiyorum.",
    "nl": "Goedemorgen, ik wil graag een tafel voor twee personen reserveren.",
    "pl": "Dzień dobry, chciałbym zarezerwować stolik dla dwóch osób.",
}
# Three sentences; languages without one here use their short sentence three times.
LONG = {
    "en": "Good morning, I would like a table for two people tonight at nine. We would prefer a quiet "
    "place near the window, if that is possible. Could you also tell me whether you have a "
    "vegetarian menu?",
    "es": "Buenos días, quisiera una mesa para dos personas esta noche a las nueve. Preferimos un "
    "lugar tranquilo cerca de la ventana, si es posible. ¿Podría decirme también si tienen un "
    "menú vegetariano?",
    "pt": "Bom dia, eu queria uma mesa para duas pessoas hoje à noite, às nove. Preferimos um lugar "
    "tranquilo perto da janela, se for possível. Você poderia me dizer também se vocês têm um "
    "cardápio vegetariano?",
    "fr": "Bonjour, je voudrais une table pour deux personnes ce soir à neuf heures. Nous préférons "
    "un endroit calme près de la fenêtre, si possible. Pourriez-vous aussi me dire si vous avez "
    "un menu végétarien ?",
    "de": "Guten Morgen, ich hätte gern einen Tisch für zwei Personen heute Abend um neun. Wir "
    "möchten lieber einen ruhigen Platz am Fenster, wenn das möglich ist. Können Sie mir auch "
    "sagen, ob Sie ein vegetarisches Menü haben?",
    "it": "Buongiorno, vorrei un tavolo per due persone stasera alle nove. Preferiremmo un posto "
    "tranquillo vicino alla finestra, se possibile. Potrebbe anche dirmi se avete un menù "
    "vegetariano?",
}
TATOEBA = {
    "en": "eng-spa.eng",
    "es": "eng-spa.spa",
    "pt": "eng-por.por",
    "fr": "eng-fra.fra",
    "de": "deu-eng.deu",
    "it": "eng-ita.ita",
}
_WORDS = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def tatoeba_dir() -> Path:
    return TESTDATA / "mt" / "tatoeba"


def long_text(language: str) -> str:
    return LONG.get(language) or " ".join([SHORT[language]] * 3)


@dataclass(frozen=True, slots=True)
class Run:
    """How much to measure."""

    repeats: int
    sentences: int
    languages: tuple[str, ...]
    default_voices_only: bool = False
    smoke: bool = False


@dataclass(frozen=True, slots=True)
class Timing:
    """One request: when its first and last chunk came, and how much audio it held."""

    first_chunk_ms: float
    total_ms: float
    audio_s: float
    chunks: int


async def synthesize(
    tts: Stub, text: str, language: str, voice: str, rate_hz: int = 0
) -> tuple[Timing, list[tts_pb2.SynthesizeResponse]]:
    request = tts_pb2.SynthesizeRequest(
        text=text, language_code=language, voice=voice, sample_rate_hertz=rate_hz
    )
    started = time.perf_counter()
    first = 0.0
    responses: list[tts_pb2.SynthesizeResponse] = []
    async for response in tts.Synthesize(request):
        if not responses:
            first = time.perf_counter() - started
        responses.append(response)
    total = time.perf_counter() - started
    audio_s = sum(len(r.audio) / 2 / r.sample_rate_hertz for r in responses)
    return Timing(1000 * first, 1000 * total, audio_s, len(responses)), responses


def _ms(values: Sequence[float], q: float) -> float:
    return round(percentile(values, q) or 0.0, 1)


def latency(timings: Sequence[Timing], text: str) -> dict[str, Any]:
    """First-chunk percentiles and real-time factor of repeated requests for one text."""
    firsts = [t.first_chunk_ms for t in timings]
    return {
        "words": len(text.split()),
        "requests": len(timings),
        "chunks": timings[0].chunks,
        "audio_s": round(timings[0].audio_s, 2),
        "first_chunk_ms": {"p50": _ms(firsts, 50), "p95": _ms(firsts, 95)},
        "rtf": round(sum(t.total_ms for t in timings) / 1000 / sum(t.audio_s for t in timings), 3),
    }


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return float(
        jiwer.wer(
            list(references),
            list(hypotheses),
            reference_transform=_WORDS,
            hypothesis_transform=_WORDS,
        )
    )


async def round_trip(
    tts: Stub, whisper: Any, language: str, voice: str, sentences: list[str]
) -> dict[str, Any]:
    """WER of Whisper's transcripts of the synthesised sentences."""
    heard = []
    for sentence in sentences:
        _, responses = await synthesize(tts, sentence, language, voice, STT_RATE_HZ)
        pcm = b"".join(r.audio for r in responses)
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        segments, _ = await asyncio.to_thread(
            whisper.transcribe, samples, language=language, beam_size=1, without_timestamps=True
        )
        heard.append(" ".join(s.text.strip() for s in segments))
    return {
        "sentences": len(sentences),
        "wer": round(word_error_rate(sentences, heard), 4),
        "examples": [{"text": t, "heard": h} for t, h in list(zip(sentences, heard, strict=True))[:3]],
    }


def voices_to_measure(voices: Sequence[tts_pb2.Voice], run: Run) -> list[tts_pb2.Voice]:
    """Per language, one voice per engine: the language's default voice for its engine, else
    one of `PREFERRED`, else the engine's first voice of the language (only the default voices
    when the run says so)."""
    languages = run.languages
    chosen: dict[tuple[str, str], tts_pb2.Voice] = {}
    for voice in sorted(voices, key=lambda v: not (v.is_default or v.name in PREFERRED)):
        language = voice.language_code.split("-")[0].lower()
        if language in languages and (voice.is_default or not run.default_voices_only):
            chosen.setdefault((language, voice.engine), voice)
    return sorted(
        chosen.values(), key=lambda v: (languages.index(v.language_code.split("-")[0].lower()), v.engine)
    )


async def measure(tts: Stub, whisper: Any, voice: tts_pb2.Voice, run: Run) -> dict[str, Any]:
    """One row: a language spoken by one engine."""
    language = voice.language_code.split("-")[0].lower()
    row: dict[str, Any] = {
        "language": language,
        "engine": voice.engine,
        "voice": voice.name,
        "quality": voice.quality,
        "default": voice.is_default,
    }
    for name, text in (("short", SHORT[language]), ("long", long_text(language))):
        await synthesize(tts, text, language, voice.name)  # the first request of a text may load buffers
        timings = [(await synthesize(tts, text, language, voice.name))[0] for _ in range(run.repeats)]
        row[name] = latency(timings, text)
    path = tatoeba_dir() / TATOEBA[language] if language in TATOEBA else None
    if path is not None and path.is_file():
        sentences = path.read_text(encoding="utf-8").splitlines()[: run.sentences]
        row["round_trip"] = await round_trip(tts, whisper, language, voice.name, sentences)
    else:
        row["round_trip"] = None
    return row


async def kokoro_variants(settings: config.Settings, repeats: int) -> dict[str, Any] | None:
    """Kokoro's synthesis time by words in the piece and by ONNX Runtime threads, interleaved."""
    from dragoman.devices import Device
    from tts_svc.engines.kokoro import KokoroEngine

    models_dir = Path(settings.models_dir)
    if not (models_dir / "kokoro").is_dir():
        return None
    words = SHORT["es"].replace(",", "").split()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        engines = {
            threads: await asyncio.to_thread(KokoroEngine.load, models_dir, threads, pool, Device("cpu"))
            for threads in (2, 1)
        }
        variants = {f"{n} words, 2 threads": (2, " ".join(words[:n])) for n in (2, 3, 4, 6, len(words))}
        variants["3 words, 1 thread"] = (1, " ".join(words[:3]))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats + 1):  # the first round warms up and is dropped
            for name, (threads, text) in variants.items():
                started = time.perf_counter()
                async for _chunk in engines[threads].synthesize(SynthesisRequest(text, "ef_dora")):
                    pass
                times[name].append(1000 * (time.perf_counter() - started))
        base = percentile(times[f"{len(words)} words, 2 threads"][1:], 50) or 1.0
        rows = {
            name: {"p50_ms": _ms(t[1:], 50), "ratio_to_whole_sentence": round(_ms(t[1:], 50) / base, 2)}
            for name, t in times.items()
        }
        for engine in engines.values():
            await engine.close()
        return {"voice": "ef_dora", "text": SHORT["es"], "repeats": repeats, "variants": rows}
    finally:
        pool.shutdown()


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, for the default voices of EN and ES and every neural voice."""
    out: dict[str, Any] = {}
    for language in ("en", "es"):
        row = next((r for r in rows if r["language"] == language and r["default"]), None)
        if row is not None:
            value, target = row["short"]["first_chunk_ms"]["p50"], TARGETS[f"{language}_first_chunk_p50_ms"]
            out[f"{language}_first_chunk_p50_ms"] = {
                "voice": row["voice"],
                "value": value,
                "target": target,
                "met": value <= target,
            }
    for row in rows:
        if row["quality"] == "neural" and row["round_trip"]:
            wer = row["round_trip"]["wer"]
            out[f"wer_{row['language']}_{row['voice']}"] = {
                "value": wer,
                "target": TARGETS["neural_wer"],
                "met": wer <= TARGETS["neural_wer"],
            }
    return out


async def bench(run: Run, settings: config.Settings) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    service = await server.create(settings, cache=MemoryCache(0))
    whisper = WhisperModel(
        str(Path(settings.models_dir) / WHISPER), device="cpu", compute_type="int8", cpu_threads=2
    )
    port = await service.start("127.0.0.1:0")
    rows = []
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            tts = cast("Stub", tts_pb2_grpc.TextToSpeechServiceStub(channel))
            voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest())).voices
            for voice in voices_to_measure(voices, run):
                rows.append(await measure(tts, whisper, voice, run))
                print(f"measured {voice.name} ({voice.engine}, {voice.language_code})", file=sys.stderr)
    finally:
        await service.stop(0)
    variants = await kokoro_variants(settings, run.repeats)
    return {
        "benchmark": "tts",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "smoke": run.smoke,
        "machine": machine(),
        "settings": {**dataclasses.asdict(run), "engines": settings.tts.engines, "stt": WHISPER},
        "targets": targets(rows),
        "results": rows,
        "kokoro_variants": variants,
    }


HEADERS = (
    "language",
    "engine",
    "voice",
    "short p50 ms",
    "short p95 ms",
    "short RTF",
    "long p50 ms",
    "long p95 ms",
    "long RTF",
    "WER",
    "n",
)


def rows_of(results: list[dict[str, Any]]) -> list[list[object]]:
    """The printed table's rows."""
    out: list[list[object]] = []
    for r in results:
        short, long, trip = r["short"], r["long"], r["round_trip"]
        out.append(
            [
                r["language"],
                r["engine"],
                r["voice"] + (" *" if r["default"] else ""),
                f"{short['first_chunk_ms']['p50']:.0f}",
                f"{short['first_chunk_ms']['p95']:.0f}",
                f"{short['rtf']:.3f}",
                f"{long['first_chunk_ms']['p50']:.0f}",
                f"{long['first_chunk_ms']['p95']:.0f}",
                f"{long['rtf']:.3f}",
                f"{100 * trip['wer']:.1f} %" if trip else "-",
                str(trip["sentences"]) if trip else "-",
            ]
        )
    return out


def report(result: dict[str, Any]) -> str:
    lines = [table(HEADERS, rows_of(result["results"])), "(* default voice of the language)", ""]
    for name, t in result["targets"].items():
        unit = " ms" if name.endswith("_ms") else ""
        lines.append(
            f"target {name}: {t['value']}{unit} (<= {t['target']}{unit}) {'met' if t['met'] else 'MISSED'}"
        )
    variants = result["kokoro_variants"]
    if variants:
        lines += [
            "",
            f"kokoro {variants['voice']}, synthesis time of a piece (p50 of {variants['repeats']}):",
        ]
        lines += [
            f"  {name}: {v['p50_ms']:.0f} ms ({v['ratio_to_whole_sentence']:.2f} x whole sentence)"
            for name, v in variants["variants"].items()
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tts_bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="default voices of EN, ES, DE; 1 request, 2 sentences"
    )
    parser.add_argument("--repeats", type=int, default=10, help="requests per text (default 10)")
    parser.add_argument("--sentences", type=int, default=40, help="Tatoeba sentences per voice (default 40)")
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="languages (default: all 15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.smoke:
        run = Run(1, 2, SMOKE_LANGUAGES, default_voices_only=True, smoke=True)
    else:
        languages = tuple(code.strip() for code in args.languages.split(",") if code.strip())
        unknown = [code for code in languages if code not in LANGUAGES]
        if unknown:
            parser.error(f"unknown languages {unknown}; known: {', '.join(LANGUAGES)}")
        run = Run(args.repeats, args.sentences, languages)
    result = asyncio.run(bench(run, config.load()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(report(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
