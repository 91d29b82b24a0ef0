"""STT, MT and TTS through Triton on this machine's GPU: throughput at batch 1/8/32, streams at real time.

Prepared for a GPU box that has the models (`dragoman models install`) and
the triton extra; it starts `dragoman triton` itself on a free port, so
nothing else needs to run. Writes rows the capacity model reads
(bench/capacity.py: model, role, batch, seconds_per_call and
utterances_per_s / sentences_per_s / audio_seconds_per_s) into
bench/results/gpu.json, replacing earlier rows of the same model and role
and keeping the others.

    python -m bench.triton_gpu [--rounds 5] [--stream-s 10] [--out bench/results/gpu.json]

A "batch" of b is b concurrent one-row requests: Triton's dynamic batcher
forms the batches, as it does for b service replicas calling at once.
"Streams at real-time pace": STT streams each send a growing window every
partial interval (0.6 s, as stt_svc does) and the largest stream count whose
p95 decode latency stays under that interval is recorded; for TTS the
audio seconds made per second is the number of real-time voices.

`--device cuda` (the default when nvidia-smi sees a GPU) puts every role
on it (DRAGOMAN_STT_DEVICE / _MT_DEVICE / _TTS_DEVICE, see
dragoman.devices; ONNX voices need onnxruntime-gpu there); the JSON also
records `engine_device` from nvidia-smi's view of the Triton process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, TESTDATA, machine, read_result, write_result
from dragoman import audio, config
from dragoman.triton_client import INFO_MODEL, TritonClient
from dragoman_tools.triton.server import free_port_triple
from mt_svc.engines import triton as mt_triton
from mt_svc.engines.base import TranslationBatch
from stt_svc.engines import triton as stt_triton
from stt_svc.engines.base import DecodeOptions
from tts_svc.engines import triton as tts_triton
from tts_svc.engines.base import SynthesisRequest

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 8, 32)
PARTIAL_INTERVAL_S = 0.6
STREAM_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
SENTENCE = "The train to Lisbon leaves at nine, so please be at the station on time."


def _speech() -> np.ndarray:
    """About 8 s of English speech (FLEURS when present, else a voiced tone)."""
    clips = sorted((TESTDATA / "speech" / "fleurs").glob("fleurs-en-*.ogg"))
    if clips:
        return audio.decode_file(clips[0], audio.STT_RATE_HZ)[: 8 * audio.STT_RATE_HZ]
    t = np.arange(8 * audio.STT_RATE_HZ, dtype=np.float32) / audio.STT_RATE_HZ
    return (0.1 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


async def _rounds(call: Callable[[], Awaitable[float]], batch: int, rounds: int) -> tuple[float, float]:
    """Seconds per round of `batch` concurrent calls (median) and units per round (sum)."""
    await asyncio.gather(*(call() for _ in range(batch)))  # warm-up at this batch size
    times, units = [], 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        done = await asyncio.gather(*(call() for _ in range(batch)))
        times.append(time.perf_counter() - start)
        units = float(sum(done))
    return statistics.median(times), units


def _row(model: str, role: str, batch: int, seconds: float, units: float, unit: str, **extra: Any) -> dict:
    return {"model": model, "role": role, "batch": batch, "seconds_per_call": seconds,
            unit: units / seconds, "via": "triton", **extra}


async def _stt(client: TritonClient, rounds: int, stream_s: float) -> list[dict[str, Any]]:
    speech = _speech()
    rows: list[dict[str, Any]] = []
    options = DecodeOptions(language="en")
    for engine in await asyncio.to_thread(stt_triton.load, client):

        async def decode(engine: Any = engine) -> float:
            await engine.transcribe_async(speech, options)
            return 1.0

        for batch in BATCHES:
            seconds, units = await _rounds(decode, batch, rounds)
            rows.append(_row(engine.capabilities.name, "stt", batch, seconds, units, "utterances_per_s",
                             window_s=round(len(speech) / audio.STT_RATE_HZ, 1)))
        rows[-1]["streams_realtime"] = await _stt_streams(engine, speech, stream_s)
    return rows


async def _stt_streams(engine: Any, speech: np.ndarray, stream_s: float) -> int:
    """Most concurrent streams whose partial decodes keep p95 latency under the partial interval."""
    best = 0
    step = int(PARTIAL_INTERVAL_S * audio.STT_RATE_HZ)
    for count in STREAM_COUNTS:
        latencies: list[float] = []

        async def stream(offset_s: float, latencies: list[float] = latencies) -> None:
            await asyncio.sleep(offset_s)
            loop = asyncio.get_running_loop()
            end = loop.time() + stream_s
            heard = step
            while loop.time() < end:
                tick = loop.time()
                window = speech[: min(heard, len(speech))]
                await engine.transcribe_async(window, DecodeOptions(language="en"))
                latencies.append(loop.time() - tick)
                heard = heard + step if heard < len(speech) else step  # a new utterance
                await asyncio.sleep(max(0.0, PARTIAL_INTERVAL_S - (loop.time() - tick)))

        await asyncio.gather(*(stream(i * PARTIAL_INTERVAL_S / count) for i in range(count)))
        p95 = float(np.percentile(latencies, 95))
        print(f"stt {engine.capabilities.name}: {count} streams, p95 {p95 * 1000:.0f} ms", file=sys.stderr)
        if p95 > PARTIAL_INTERVAL_S:
            break
        best = count
    return best


async def _mt(client: TritonClient, rounds: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for engine in await mt_triton.load(client):
        source, target = sorted(engine.capabilities.pairs)[0]
        batch_in = TranslationBatch(source, target, (SENTENCE,))

        async def translate(engine: Any = engine, batch_in: TranslationBatch = batch_in) -> float:
            await engine.translate(batch_in)
            return 1.0

        for batch in BATCHES:
            seconds, units = await _rounds(translate, batch, rounds)
            rows.append(_row(engine.capabilities.name, "mt", batch, seconds, units, "sentences_per_s",
                             pair=f"{source}-{target}"))
    return rows


async def _tts(client: TritonClient, rounds: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for engine in await tts_triton.load(client):
        voice = engine.capabilities.voices[0]
        request = SynthesisRequest(SENTENCE, voice.name)

        async def speak(engine: Any = engine, request: SynthesisRequest = request) -> float:
            return sum([c.duration_s async for c in engine.synthesize(request)])

        for batch in BATCHES:
            seconds, units = await _rounds(speak, batch, rounds)
            row = _row(engine.capabilities.name, "tts", batch, seconds, units, "audio_seconds_per_s",
                       voice=voice.name)
            row["streams_realtime"] = int(row["audio_seconds_per_s"])
            rows.append(row)
    return rows


def _gpu_processes() -> str:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _device() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "no GPU found"


async def measure(url: str, rounds: int, stream_s: float) -> dict[str, Any]:
    client = TritonClient(config.TritonSettings(url=url, timeout_s=120, retries=0))
    await client.wait_ready([INFO_MODEL], timeout_s=600)
    rows = [*await _stt(client, rounds, stream_s), *await _mt(client, rounds), *await _tts(client, rounds)]
    apps = _gpu_processes()
    await client.close()
    return {"rows": rows, "engine_device": "gpu" if apps else "cpu", "gpu_processes": apps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--stream-s", type=float, default=10.0, help="length of each paced-streams step")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N for every role "
                   "(default: cuda when nvidia-smi sees a GPU, else cpu)")
    args = p.parse_args()

    device = args.device or ("cpu" if _device() == "no GPU found" else "cuda")
    url = f"127.0.0.1:{free_port_triple()}"
    env = {**os.environ, "DRAGOMAN_TRITON_URL": url,
           **{f"DRAGOMAN_{role}_DEVICE": device for role in ("STT", "MT", "TTS")}}
    server = subprocess.Popen([sys.executable, "-m", "dragoman_tools.triton.server"], cwd=ROOT, env=env,
                              start_new_session=True)
    try:
        result = asyncio.run(measure(url, args.rounds, args.stream_s))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)

    previous = read_result(args.out.stem, args.out.parent) or {}
    mine = {(r["model"], r["role"]) for r in result["rows"]}
    kept = [r for r in previous.get("rows", []) if (r.get("model"), r.get("role")) not in mine]
    data = {
        **{k: v for k, v in previous.items() if k != "rows"},
        "device": _device(),
        "triton": {"kind": "triton", "engine_device": result["engine_device"],
                   "gpu_processes": result["gpu_processes"], "machine": machine(),
                   "settings": config.describe(config.load())["stt"]},
        "rows": kept + result["rows"],
    }
    path = write_result(args.out.stem, data, args.out.parent)
    print(json.dumps({"wrote": str(path), "rows": len(result["rows"])}))


if __name__ == "__main__":
    main()
