"""tts_svc's resident memory under a stream of distinct and hostile requests: bounded or a leak?

Starts tts_svc (real engines, the settings in force) as a child process, then
runs `--rounds` rounds of the same mix, each with texts never seen before:
`--phrases` short phrases (they fill the audio cache), `--long` texts of
`--long-chars` characters (the largest inputs the engines see), and the
probe's hostile requests (kilobyte language codes and voices, empty text).
It prints the child's RSS after start-up and after each round. Memory that
stops growing after the first rounds is caches and arenas filling to their
bound; growth that goes on round after round is a leak.

    python -m bench.tts_memory                       # default cache (memory)
    DRAGOMAN_TTS_CACHE=off python -m bench.tts_memory
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from dragoman import rpc
from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def say(stub: tts_pb2_grpc.TextToSpeechServiceStub, text: str, language: str = "en",
              voice: str = "") -> int:
    """Bytes of audio received, or -1 for a refused request."""
    total = 0
    try:
        async for reply in stub.Synthesize(tts_pb2.SynthesizeRequest(
                text=text, language_code=language, voice=voice, sample_rate_hertz=24000)):
            total += len(reply.audio)
    except grpc.aio.AioRpcError:
        return -1
    return total


def long_text(tag: str, chars: int, one_sentence: bool = False) -> str:
    words = (f"In round {tag} the traveller counted {{n}} lanterns along the quiet harbour "
             f"before the evening ferry left{' and' if one_sentence else '.'} ")
    out: list[str] = []
    while sum(len(part) for part in out) < chars:
        out.append(words.format(n=len(out)))
    return "".join(out)[:chars]


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    env = {**os.environ, "DRAGOMAN_ADDRESSES_TTS": f"127.0.0.1:{port}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")])}
    child = subprocess.Popen([sys.executable, "-m", "tts_svc.server"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await rpc.wait_serving(f"127.0.0.1:{port}", timeout_s=300)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
            await say(stub, "Warm up.")
            print(f"started: RSS {rss_mb(child.pid):.0f} MB", flush=True)
            for r in range(args.rounds):
                start = time.monotonic()
                for i in range(args.phrases):
                    await say(stub, f"Phrase {i} of round {r}: the number is {r * 1000 + i}.")
                for i in range(args.long):
                    await say(stub, long_text(f"{r}-{i}", args.long_chars, args.one_sentence))
                for _ in range(20):  # the probe's hostile requests
                    await say(stub, "hello", language="x" * 1000)
                    await say(stub, "hello", voice="v" * 1000)
                    await say(stub, "")
                print(f"round {r + 1}: RSS {rss_mb(child.pid):.0f} MB "
                      f"({time.monotonic() - start:.0f} s)", flush=True)
    finally:
        child.terminate()
        child.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--phrases", type=int, default=100)
    parser.add_argument("--long", type=int, default=3)
    parser.add_argument("--long-chars", type=int, default=1500)
    parser.add_argument("--one-sentence", action="store_true",
                        help="long texts without a sentence end (one piece to synthesise)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
