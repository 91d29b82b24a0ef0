"""`dragoman demo --participants 3` against the real mesh on loopback (tests.mesh).

The in-process mesh takes audio at any pace (the test settings lift
session.max_audio_speed), so the people speak at SPEED times real time.
The README's demo of two runs as a user runs it in tests/deploy/test_demo.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from dragoman_tools import cli, demo
from tests.mesh import MeshAddresses

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
