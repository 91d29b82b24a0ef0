"""Two people talk in real browsers through the real edge and the real mesh.

Alice (English) loads the page from Envoy itself (same origin, TLS, on a desktop
viewport); Bruno (Portuguese) loads it from another origin on a phone viewport,
so his calls are cross-origin (CORS). Each page fills its language selector from
ListLanguages before signing in. Their microphones are Chromium's fake
device playing recorded speech. They pair by code, Bruno's network drops while
Alice speaks, and each must get the other's words as captions and translated
speech, every event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dragoman import audio
from tests.browser.conftest import WEB, BrowserStack
from tests.helpers import wer

SPEECH = {"alice": "fleurs-en-004", "bruno": "fleurs-pt-004"}  # clean-audio WER 0.27 and 0.15
DRIVER = Path(__file__).with_name("drive.mjs")
FAKE_MIC_RATE_HZ = 48_000
WAIT_MS = 120_000  # each wait in the driver
DRIVE_S = 480  # the whole run
WER_BOUND = 0.45
DESKTOP = {"width": 1024, "height": 800}
PHONE = {"width": 390, "height": 844}


def _fake_microphone(clip: Path, out: Path) -> Path:
    """The clip as 16-bit mono WAV with silence around it (the fake device plays it once)."""
    samples = audio.decode_file(clip, FAKE_MIC_RATE_HZ)
    pad = np.zeros(FAKE_MIC_RATE_HZ, np.float32)
    tail = np.zeros(3 * FAKE_MIC_RATE_HZ, np.float32)
    return audio.write_wav(out, audio.float_to_pcm16(np.concatenate([pad, samples, tail])), FAKE_MIC_RATE_HZ)


def _person(name: str, language: str, url: str, viewport: dict[str, int], fleurs: Path, tmp: Path) -> dict:
    return {"name": name, "language": language, "url": url, "viewport": viewport,
            "username": f"{name}-{secrets.token_hex(3)}",
            "wav": str(_fake_microphone(fleurs / f"{SPEECH[name]}.ogg", tmp / f"{name}.wav"))}


async def _drive(config: Path, stack: BrowserStack) -> dict:
    """Runs drive.mjs, cutting and restoring Bruno's link when it asks; returns its result."""
    errors = config.with_suffix(".stderr")
    with open(errors, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "node", str(DRIVER), str(config), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, limit=16 * 1024 * 1024)
    assert proc.stdin is not None and proc.stdout is not None
    actions = {"cut": stack.link.cut, "restore": stack.link.restore}
    try:
        async for line in proc.stdout:
            message = json.loads(line)
            if "result" in message:
                return message["result"]
            actions[message["control"]]()
            proc.stdin.write(b"ok\n")
            await proc.stdin.drain()
        await proc.wait()
        raise AssertionError(f"the driver ended without a result:\n{errors.read_text()[-3000:]}")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _partner(state: dict) -> list[dict]:
    return [u for u in state["utterances"] if u["speaker"] == "partner"]


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_two_browsers_talk_through_envoy(
    stack: BrowserStack, chromium: Path, artifacts: Path, fleurs: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = {
        "chromium": str(chromium), "webDir": str(WEB), "artifacts": str(artifacts), "waitMs": WAIT_MS,
        "people": [
            _person("alice", "en", stack.edge_url, DESKTOP, fleurs, tmp_path),
            _person("bruno", "pt", stack.site_url, PHONE, fleurs, tmp_path),
        ],
    }
    (tmp_path / "drive.json").write_text(json.dumps(config))
    result = await asyncio.wait_for(_drive(tmp_path / "drive.json", stack), timeout=DRIVE_S)
    with capsys.disabled():
        print(f"\nbrowser screenshots: {artifacts}")
    people = result["people"]
    (artifacts / "result.json").write_text(json.dumps(result, indent=1))
    assert result["ok"], f"{result['error']}\n(pages' state and console: {artifacts / 'result.json'})"

    alice, bruno = people["alice"]["state"], people["bruno"]["state"]
    # the language selector offers what ListLanguages says the default mesh can hold a
    # conversation in (the page's own list has fr and it, and pt before es)
    for state in (alice, bruno):
        assert (state["languagesFrom"], state["languages"]) == ("server", ["en", "es", "pt"])
    references = {name: (fleurs / f"{clip}.txt").read_text() for name, clip in SPEECH.items()}
    for listener, speaker, listener_state in (("bruno", "alice", bruno), ("alice", "bruno", alice)):
        heard = [u for u in _partner(listener_state) if u["transcript"]]
        assert heard, f"{listener} got no captions of {speaker}"
        transcript = " ".join(u["transcript"] for u in heard)
        translation = " ".join(u["translation"] for u in heard)
        assert wer(references[speaker], transcript) <= WER_BOUND, (listener, transcript)
        assert translation and translation != transcript, (listener, translation)
        assert all(u["audioChunks"] > 0 and u["latencyMs"] > 0 for u in heard), heard
        assert all("from end of speech" in u["latencyText"] for u in heard)
        assert listener_state["scheduledSamples"] > 0 and listener_state["playedSamples"] > 0
        # every event exactly once, in order, across Bruno's reconnection
        sequences = listener_state["sequences"]
        assert sequences == list(range(1, len(sequences) + 1)), (listener, sequences)
    assert bruno["reconnects"] >= 1, "Bruno's network drop did not make him reconnect"
    assert any(u["speaker"] == "self" for u in alice["utterances"])
    assert any(u["speaker"] == "self" for u in bruno["utterances"])
    assert "/dragoman.v1.ConversationService/Listen" in (stack.edge.work_dir / "access.log").read_text()
    for name in ("alice", "bruno"):
        shot = Path(people[name]["screenshot"])
        assert shot.stat().st_size > 10_000, shot
