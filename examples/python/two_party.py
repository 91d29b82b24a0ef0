"""Two people, one session: Alice says a WAV file in English, Bruno hears it in Portuguese.

    python examples/python/two_party.py 127.0.0.1:50051 hello.wav [--speed X] [--out DIR]

Registers both users on first use (logs in after), pairs them by code, and prints
one JSON line per event Bruno gets; his translated speech lands in DIR as
bruno-<utterance>.wav. `--speed 4` sends the file at four times real-time pace (for a
gateway whose session.max_audio_speed allows it; 2 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import dragoman_client
from dragoman_client import audio

PASSWORD = "correct horse battery"


async def signed_in(gateway: str, name: str, language: str) -> dragoman_client.Client:
    client = await dragoman_client.connect(gateway)
    await client.sign_in(name, PASSWORD, email=f"{name}@example.org", language=language)
    return client


async def main(gateway: str, wav: Path, out: Path, speed: float, alice_name: str, bruno_name: str) -> None:
    alice = await signed_in(gateway, alice_name, "en")
    bruno = await signed_in(gateway, bruno_name, "pt-BR")
    hosted = await alice.create_session("en")
    joined = await bruno.join_session(hosted.code, language="pt-BR")

    ended: set[str] = set()
    speech: dict[str, bytearray] = {}
    progress = asyncio.Event()

    async def listen() -> None:
        async for event in joined.converse(output_sample_rate=24_000):
            fields = {k: v for k, v in dataclasses.asdict(event).items() if k not in ("raw", "data")}
            print(json.dumps({"type": type(event).__name__, **fields}), flush=True)
            if isinstance(event, dragoman_client.SpeechAudio):
                speech.setdefault(event.utterance_id, bytearray()).extend(event.data)
                if event.is_last:
                    audio.write_wav(out / f"bruno-{event.utterance_id}.wav",
                                    bytes(speech[event.utterance_id]), event.sample_rate)
            elif isinstance(event, dragoman_client.ProcessingEnded):
                ended.add(event.utterance_id)
                progress.set()

    listening = asyncio.create_task(listen())
    spoken = set()
    # Alice's stream ends once her last utterance is done
    async for event in hosted.converse(audio.wav_chunks(wav, speed=speed, silence_ms=1500),
                                       sample_rate=audio.read_wav(wav)[1]):
        if isinstance(event, dragoman_client.ProcessingStarted) and event.own:
            spoken.add(event.utterance_id)
    while not spoken <= ended and not listening.done():
        progress.clear()
        await asyncio.wait_for(progress.wait(), timeout=120)
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    transcript = await hosted.export_transcript("txt")
    print(json.dumps({"type": "done", "spoken": sorted(spoken), "transcript": transcript.content.decode()}))
    for client in (alice, bruno):
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway")
    parser.add_argument("wav", type=Path)
    parser.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--names", nargs=2, default=("alice", "bruno"), metavar=("ALICE", "BRUNO"))
    args = parser.parse_args()
    asyncio.run(main(args.gateway, args.wav, args.out, args.speed, *args.names))
    sys.exit(0)
