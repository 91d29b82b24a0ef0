"""`dragoman interpret`: the translation a partner would hear of a recorded speaker.

Two people pair through the public API exactly as `dragoman demo`'s do
(dragoman_tools.demo.converse): the speaker, in the audio's language,
streams the file as a live microphone would (real-time pace, or `speed`
times it), and the listener, in the target language, receives what the mesh
makes of it. Each final translation goes to `out` on its own line as it
arrives; progress, transcripts and errors go to `log`. The translated speech
the listener hears can be written to one WAV file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dragoman_client
import numpy as np
from dragoman_client import events

from dragoman import audio, rpc
from dragoman.errors import DragomanError, InvalidArgument, Unavailable
from dragoman_tools.demo import RATE_HZ, Person, Printer, converse

REACH_TIMEOUT_S = 15.0
"""How long the gateway may take to answer its health check before it counts as unreachable."""


class InterpretError(DragomanError):
    """The mesh reported an error on one of the speaker's utterances."""


@dataclass
class Listener(Person):
    """The partner: prints each final translation and keeps the speech they hear."""

    out: TextIO = sys.stdout
    translations: list[str] = field(default_factory=list)
    speech: list[bytes] = field(default_factory=list)
    speech_rate_hz: int = 0

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Translation) and not event.own and event.is_final and event.text.strip():
            self.translations.append(event.text.strip())
            self.out.write(event.text.strip() + "\n")
            self.out.flush()
            engine = event.raw.translation.engine  # which MT engine: not typed by the SDK
            self.printer.line(self.name, f"hears {event.utterance_id} (by {engine or '?'})", True)
        super().on_event(event)

    def on_speech(self, utterance_id: str, pcm16: bytes, rate_hz: int, speaker: str = "") -> None:
        if self.speech_rate_hz and rate_hz != self.speech_rate_hz:  # one WAV, one rate
            pcm16 = audio.float_to_pcm16(audio.resample(audio.pcm16_to_float(pcm16), rate_hz,
                                                        self.speech_rate_hz))
        self.speech_rate_hz = self.speech_rate_hz or rate_hz
        self.speech.append(pcm16)


def check_speed(speed: float, max_audio_speed: float) -> float:
    """`--speed`: positive, and no faster than the mesh takes audio (0: no limit)."""
    if not speed > 0:
        raise InvalidArgument(f"--speed must be positive, got {speed:g}")
    if max_audio_speed > 0 and speed > max_audio_speed:
        raise InvalidArgument(
            f"--speed {speed:g} is faster than the mesh takes audio: at most {max_audio_speed:g} "
            "(setting session.max_audio_speed)")
    return speed


def read_audio(path: str) -> np.ndarray:
    """The file as mono float32 at the recogniser's rate; INVALID_ARGUMENT when unreadable or silent."""
    samples = audio.decode_file(path, RATE_HZ)
    if samples.size == 0:
        raise InvalidArgument(f"{path}: no audio in the file")
    return samples


async def reachable(gateway: str) -> None:
    try:
        await rpc.wait_serving(gateway, timeout_s=REACH_TIMEOUT_S)
    except TimeoutError:
        raise Unavailable(f"cannot reach the gateway at {gateway} (not serving after "
                          f"{REACH_TIMEOUT_S:.0f} s); is `dragoman up` running there?") from None


async def run(gateway: str, samples: np.ndarray, name: str, source: str, target: str, *,
              speed: float = 1.0, speech_out: Path | None = None,
              out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> list[str]:
    """Interprets `samples` (mono float32 at RATE_HZ) from `source` into `target` through the
    mesh at `gateway`; returns the final translations (also written to `out`)."""
    await reachable(gateway)
    printer = Printer(log)
    speaker = Person("Speaker", source, await dragoman_client.connect(gateway), None, printer, speed=speed)
    listener = Listener("Hearer", target, await dragoman_client.connect(gateway), None, printer, out=out)
    try:
        ended = await converse([speaker, listener], [(speaker, name, samples)], one_way=True)
    except TimeoutError:
        if not speaker.started:
            raise InvalidArgument(f"{name}: no speech recognised in the audio") from None
        raise
    errors = speaker.errors + listener.errors
    if errors:
        raise InterpretError("; ".join(dict.fromkeys(errors)))
    m = ended.metrics
    log.write(f"{m.utterance_count} utterances, end of speech → translated speech delivered: "
              f"mean {m.mean_latency_ms:.0f} ms, max {m.max_latency_ms:.0f} ms\n")
    if speech_out is not None:
        path = audio.write_wav(speech_out, b"".join(listener.speech), listener.speech_rate_hz or RATE_HZ)
        log.write(f"translated speech → {path}\n")
    return listener.translations

