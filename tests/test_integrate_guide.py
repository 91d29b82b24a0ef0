"""The code of docs/integrate.md runs as printed, through the Python SDK, against a real
gateway and session_svc (fake recognition, translation and speech engines): Bruno gets
Alice's utterances translated and spoken, and after he stops and resumes his events
count on from 1 with nothing missed and nothing twice."""

from __future__ import annotations

import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dragoman_client import SpeechAudio, Translation

from dragoman import config
from gateway import server
from tests.conftest import ROOT, started
from tests.session_svc.conftest import utterance
from tests.session_svc.stack import session_stack

GUIDE = ROOT / "docs" / "integrate.md"


def guide_code() -> str:
    [code] = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    return code


@pytest.fixture
async def gateway(settings: config.Settings) -> AsyncIterator[str]:
    async with session_stack(settings) as stack:
        async for address in started(await server.create(stack.settings)):
            yield address


async def test_the_guide_translates_and_resumes(
    gateway: str, fleurs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the guide writes bruno-<utterance>.wav here
    with wave.open("hello.wav", "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16_000)
        f.writeframes(utterance(fleurs))
    guide: dict[str, object] = {"__name__": "guide"}
    exec(compile(guide_code(), str(GUIDE), "exec"), guide)

    listener = await guide["main"](gateway, "hello.wav")  # type: ignore[operator]

    sequences = [e.sequence for e in listener.events]
    assert sequences == list(range(1, len(sequences) + 1))
    printed = capsys.readouterr().out
    stopped_at = int(re.search(r"stopped after event (\d+)", printed)[1])  # type: ignore[index]
    assert 0 < stopped_at < len(sequences)
    finals = [e for e in listener.events if isinstance(e, Translation) and e.is_final]
    assert finals and all(t.target_language.startswith("pt") for t in finals)
    assert "final:  " in printed
    spoken = {e.utterance_id for e in listener.events if isinstance(e, SpeechAudio) and e.is_last}
    assert spoken and spoken <= listener.ended
    for utterance_id in spoken:
        with wave.open(str(tmp_path / f"bruno-{utterance_id}.wav")) as out:
            assert out.getnframes() > 0
