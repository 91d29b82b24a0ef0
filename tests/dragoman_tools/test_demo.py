"""`dragoman demo --participants 3` against the real mesh on loopback (tests.mesh).

The in-process mesh takes audio at any pace (the test settings lift
session.max_audio_speed), so the people speak at SPEED times real time.
The README's demo of two runs as a user runs it in tests/deploy/test_demo.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import dragoman_client
import numpy as np
import pytest
from dragoman_client import conversation_pb2 as pb
from dragoman_client import events

from dragoman import config
from dragoman_tools import cli, demo
from tests.mesh import MeshAddresses, serve_mesh

pytestmark = [pytest.mark.models, pytest.mark.slow]

SPEED = 4.0


async def test_three_people_each_hear_the_two_others(mesh: MeshAddresses, tmp_path: Path) -> None:
    printed = io.StringIO()
    result = await demo.run(mesh.gateway, tmp_path, participants=3, stream=printed, speed=SPEED)
    text = printed.getvalue()
    speakers = re.findall(r"^\s*[\d.]+s\s+(\w+)\s+speaks fleurs-(\w+)-", text, re.M)
    assert speakers == [("Alice", "en"), ("Bruno", "pt"), ("Carla", "es"), ("Alice", "en")], text
    ended = re.search(r"session ended: (\d+) utterances, .* errors (\d+)", text)
    assert ended and int(ended[1]) >= 4 and ended[2] == "0", text
    # each translation the speaker sees is in one of the two others' languages
    targets = {(who, lang) for who, lang in re.findall(r"^\s*[\d.]+s\s+(\w+)\s+→ (\w+):", text, re.M)}
    assert targets == {("Alice", "pt"), ("Alice", "es"), ("Bruno", "en"), ("Bruno", "es"),
                       ("Carla", "en"), ("Carla", "pt")}, text
    heard = {(m[1], m[2]) for path in result.wavs if (m := re.match(r"(\w+)-hears-(\w+)-", path.name))}
    assert heard == {(a, b) for a in ("alice", "bruno", "carla") for b in ("alice", "bruno", "carla")
                     if a != b}, result.wavs
    assert all(path.stat().st_size > 1000 for path in result.wavs)
    # it ends with each listener's latency table
    tail = text[text.index("per stage, per listener"):]
    headers = re.findall(r"^(\w+) \((\w+)\) hearing (.+):$", tail, re.M)
    assert headers == [("Alice", "en", "Bruno, Carla"), ("Bruno", "pt", "Alice, Carla"),
                       ("Carla", "es", "Alice, Bruno")], tail
    assert len(re.findall(r"^total\s+\d+\s+\d+\s+\d+$", tail, re.M)) == 3, tail


async def test_a_simultaneous_demo_hears_turns_in_pieces(
        settings: config.Settings, models_dir: Path, tmp_path: Path) -> None:
    """A mesh in simultaneous mode with one-word pieces: the demo's turns of 4-8 s are
    spoken in pieces as soon as stt_svc has stable words. They speak at half real time and
    early partials come every 300 ms, so that stable words come before the final even on a
    busy CPU."""
    simultaneous = dataclasses.replace(
        settings, stt=dataclasses.replace(settings.stt, early_partial_interval_ms=300),
        session=dataclasses.replace(settings.session, mode="simultaneous", piece_min_words=1,
                                    piece_max_words=1))
    printed = io.StringIO()
    async with serve_mesh(simultaneous) as mesh:
        result = await demo.run(mesh.gateway, tmp_path, stream=printed, speed=0.5)
    text = printed.getvalue()
    ended = re.search(r"session ended: (\d+) utterances, .* errors (\d+)", text)
    assert ended and int(ended[1]) >= 3 and ended[2] == "0", text
    pieces = re.findall(r"^\s*[\d.]+s\s+(\w+)\s+hears piece (\d+) of (\w+)'s ([\w-]+): '(.+)'$",
                        text, re.M)
    assert pieces, text
    assert {(listener, speaker) for listener, _, speaker, _, _ in pieces} <= {
        ("Bruno", "Alice"), ("Alice", "Bruno")}, text
    assert re.search(r"^\s*[\d.]+s\s+\w+\s+partial → (en|pt): '.+'$", text, re.M), text
    # each utterance heard in pieces, in order (a piece whose translation is empty has no
    # audio, so numbers may skip), makes one WAV of real speech
    wavs = re.findall(r"^\s*[\d.]+s\s+(\w+)\s+hears translated speech → (.+-hears-([\w-]+)\.wav)$",
                      text, re.M)
    assert len({utterance for _, _, utterance in wavs}) == len(wavs), text
    by_utterance = {(listener, utterance): path for listener, path, utterance in wavs}
    for listener, utterance in {(listener, utterance) for listener, _, _, utterance, _ in pieces}:
        numbers = [int(n) for who, n, _, u, _ in pieces if (who, u) == (listener, utterance)]
        assert numbers == sorted(set(numbers)) and numbers[0] >= 1, (utterance, numbers)
        with wave.open(by_utterance[listener, utterance]) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert samples.size > w.getframerate() // 2 and np.abs(samples).max() > 1000, utterance
    assert sorted(str(p) for p in result.wavs) == sorted(path for _, path, _ in wavs)


def test_partner_language_is_for_a_demo_of_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["demo", "--participants", "3", "--partner-language", "es", "--gateway", "127.0.0.1:1"])
    assert "--partner-language is for a demo of two" in str(refused.value.code)
    with pytest.raises(SystemExit) as refused:
        cli.main(["demo", "--participants", "4"])
    assert refused.value.code == 2
    assert "argument --participants: invalid choice: 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--participants {2,3}" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _audio(index: int, piece: int, samples: list[int], last: bool = False, source: str = "",
           rate_hz: int = 16_000) -> events.Event | None:
    return events.from_proto(pb.ConversationEvent(sequence=index + 1, speech_audio=pb.SpeechAudio(
        utterance_id="u-1", speaker_participant_id="p-alice",
        chunk_index=index, piece_index=piece, is_last=last, source_text=source,
        sample_rate_hertz=rate_hz, data=np.array(samples, "<i2").tobytes())))


async def test_an_utterance_heard_in_pieces_is_one_wav_in_order(tmp_path: Path) -> None:
    printed = io.StringIO()
    bruno = demo.Person("Bruno", "pt", await dragoman_client.connect("127.0.0.1:1"), tmp_path,
                        demo.Printer(printed))
    bruno.names = {"p-alice": "Alice", "p-bruno": "Bruno"}
    try:
        # chunk_index counts on across pieces; the last piece had nothing new: one empty chunk
        for event in (_audio(0, 1, [1, 2], source="Hello there,"), _audio(1, 1, [3]),
                      _audio(2, 2, [4, 5], source="how are you"), _audio(3, 3, [], last=True, rate_hz=0)):
            assert isinstance(event, events.SpeechAudio)
            bruno.on_event(event)
    finally:
        await bruno.client.close()
    [path] = bruno.wavs
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16_000
        assert np.frombuffer(w.readframes(w.getnframes()), "<i2").tolist() == [1, 2, 3, 4, 5]
    text = printed.getvalue()
    assert re.findall(r"Bruno\s+hears piece (\d) of Alice's u-1: '(.*)'", text) == [
        ("1", "Hello there,"), ("2", "how are you")], text
    assert bruno.heard == {} and bruno.rates == {}


async def test_translated_partials_print_lighter_and_are_overwritten() -> None:
    shown = _Terminal()
    alice = demo.Person("Alice", "en", await dragoman_client.connect("127.0.0.1:1"), None,
                        demo.Printer(shown))

    def translation(text: str, final: bool) -> events.Event:
        event = events.from_proto(pb.ConversationEvent(translation=pb.Translation(
            utterance_id="u-1", speaker=pb.SPEAKER_SELF, target_language_code="pt", text=text,
            is_final=final, stability=1.0 if final else 0.5)))
        assert isinstance(event, events.Translation)
        return event

    try:
        alice.on_event(translation("Olá", final=False))
        alice.on_event(translation("Olá, tudo", final=False))
        alice.on_event(translation("Olá, tudo bem?", final=True))
    finally:
        await alice.client.close()
    text = shown.getvalue()
    first, second, final = text.split("\r\x1b[2K")
    assert first.startswith(demo.DIM) and first.endswith(demo.PLAIN) and "partial → pt: 'Olá'" in first
    assert second.startswith(demo.DIM) and "partial → pt: 'Olá, tudo'" in second
    assert "\n" not in first + second  # each partial overwrites the one before
    assert demo.DIM not in final and final.endswith("→ pt: 'Olá, tudo bem?'\n"), text


def test_mode_goes_to_the_mesh_the_demo_starts(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    envs: list[dict[str, str] | None] = []

    @contextlib.asynccontextmanager
    async def mesh(settings: config.Settings, log_dir: Path, args: argparse.Namespace,
                   env: dict[str, str] | None = None) -> AsyncIterator[object]:
        envs.append(env)
        yield type("Mesh", (), {"processes": []})()

    async def run(gateway: str, out: Path, partner: str, participants: int) -> None:
        pass

    monkeypatch.setattr(cli, "_mesh", mesh)
    monkeypatch.setattr(demo, "run", run)
    assert cli.main(["demo", "--mode", "simultaneous"]) == 0
    assert cli.main(["demo"]) == 0
    assert envs == [{"DRAGOMAN_SESSION_MODE": "simultaneous"}, {}]
    with pytest.raises(SystemExit) as refused:
        cli.main(["demo", "--mode", "simultaneous", "--gateway", "127.0.0.1:1"])
    assert "--mode is for the mesh the demo starts" in str(refused.value.code)
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--mode {utterance,simultaneous}" in capsys.readouterr().out
