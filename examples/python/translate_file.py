"""Translate a recording: stream a WAV or Ogg Opus file into a session, print what the
mesh understood and its translation, and save the translated speech as one WAV file.

    python examples/python/translate_file.py 127.0.0.1:50051 talk.ogg --to pt-BR --out talk.pt.wav

The file is said by a speaker of `--from` (default en); a listener of `--to` hears it
(both accounts are registered on first use, logged into after). WAV must be mono 16-bit;
Ogg must hold Opus. `--speed 2` sends at twice real time (the gateway's default limit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import dragoman_client
from dragoman_client import audio


async def main(gateway: str, path: Path, source: str, target: str, out: Path, speed: float,
               user: str, password: str) -> int:
    if path.suffix.lower() in (".ogg", ".opus"):
        chunks, encoding, rate = audio.ogg_chunks(path, speed=speed), "ogg_opus", 0
    else:
        chunks, encoding, rate = audio.wav_chunks(path, speed=speed, silence_ms=1500), "linear16", \
            audio.read_wav(path)[1]
    speaker, listener = await dragoman_client.connect(gateway), await dragoman_client.connect(gateway)
    await speaker.sign_in(f"{user}-{source}", password, email=f"{user}-{source}@example.org", language=source)
    await listener.sign_in(f"{user}-{target}", password, email=f"{user}-{target}@example.org",
                           language=target)
    hosted = await speaker.create_session(source)
    joined = await listener.join_session(hosted.code, language=target, allow_one_way=True)

    spoken: set[str] = set()
    ended: set[str] = set()
    speech = bytearray()
    speech_rate = 24_000
    done = asyncio.Event()

    async def listen() -> None:
        nonlocal speech_rate
        async for event in joined.converse(output_sample_rate=speech_rate):
            if isinstance(event, dragoman_client.Transcription) and event.is_final:
                print(f"[{event.language}] {event.text}", flush=True)
            elif isinstance(event, dragoman_client.Translation) and event.is_final:
                print(f"[{event.target_language}] {event.text}", flush=True)
            elif isinstance(event, dragoman_client.SpeechAudio):
                speech.extend(event.data)
                speech_rate = event.sample_rate or speech_rate
            elif isinstance(event, dragoman_client.ConversationError):
                print(f"error: {event.code}: {event.message}", file=sys.stderr, flush=True)
            elif isinstance(event, dragoman_client.ProcessingEnded):
                ended.add(event.utterance_id)
            if spoken and spoken <= ended:
                done.set()

    listening = asyncio.create_task(listen())
    # the speaker's stream ends once the last utterance is done
    async for event in hosted.converse(chunks, encoding=encoding, sample_rate=rate):
        if isinstance(event, dragoman_client.ProcessingStarted) and event.own:
            spoken.add(event.utterance_id)
    if spoken and not spoken <= ended:
        await asyncio.wait_for(done.wait(), timeout=120)
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    await hosted.end()
    audio.write_wav(out, bytes(speech), speech_rate)
    print(f"{len(spoken)} utterance(s); translated speech: {out} ({len(speech) / 2 / speech_rate:.1f} s)")
    for client in (speaker, listener):
        await client.close()
    return 0 if spoken else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway", help="host:port, or grpcs://host:port")
    parser.add_argument("file", type=Path, help="a mono 16-bit WAV or an Ogg Opus file")
    parser.add_argument("--from", dest="source", default="en", help="the language spoken (default en)")
    parser.add_argument("--to", dest="target", default="pt-BR", help="the language wanted (default pt-BR)")
    parser.add_argument("--out", type=Path, default=Path("translated.wav"))
    parser.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")
    parser.add_argument("--user", default="translate-file", help="account name prefix")
    parser.add_argument("--password", default="correct horse battery")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.gateway, args.file, args.source, args.target, args.out, args.speed,
                              args.user, args.password)))
