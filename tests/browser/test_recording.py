"""Recording with consent in real browsers through the real edge and the real mesh.

Alice (English, on a phone) asks to record; Bruno (Portuguese, desktop) is asked and
agrees, and both pages say "Recording". Alice speaks; Bruno stops the recording and
then speaks. After the session ends both open the recording from their Recordings
view: Alice's words and their translated speech (Ogg Opus in an <audio> that knows
its duration), none of Bruno's, said after he withdrew. Alice saves it. When Bruno
declines instead, nothing is kept. Carla, who was not there, lists neither.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.browser.conftest import Browsers, BrowserStack, person
from tests.helpers import wer

DRIVER = Path(__file__).with_name("drive_recording.mjs")
WAIT_MS = 120_000  # each wait in the driver
DRIVE_S = 400  # the whole run
WER_BOUND = 0.45
DESKTOP = {"width": 1024, "height": 800}
PHONE = {"width": 390, "height": 844}
# fleurs-en-003: whisper-base reads it alike however padded (bench/results/en_clip_stability.md)
ALICE, BRUNO, CARLA = "fleurs-en-003", "fleurs-pt-004", "fleurs-es-002"
pytestmark = [pytest.mark.slow, pytest.mark.models]


async def drive(browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
                mode: str) -> tuple[dict, dict[str, str]]:
    """Runs the driver in `mode` ("consent" or "decline"); its result, and each person's username."""
    who = [person("alice", "en", stack.edge_url, PHONE, fleurs / f"{ALICE}.ogg", tmp_path),
           person("bruno", "pt", stack.edge_url, DESKTOP, fleurs / f"{BRUNO}.ogg", tmp_path),
           person("carla", "es", stack.edge_url, PHONE, fleurs / f"{CARLA}.ogg", tmp_path)]
    result = await browsers(DRIVER, who, wait_ms=WAIT_MS, drive_s=DRIVE_S, mode=mode,
                            prefix=f"recording-{mode}-")
    return result, {p["name"]: p["username"] for p in who}


def assert_asked(result: dict, names: dict[str, str]) -> None:
    """Bruno was asked, naming Alice; Alice, who consented by asking, waits and may cancel."""
    asked = result["steps"]["asked"]
    assert asked["bruno"]["prompt"].startswith(f"{names['alice']} asks to record"), asked["bruno"]
    assert asked["bruno"]["offer"] == {"canRequest": False, "asked": True, "indicator": "awaiting",
                                       "canStop": False}
    assert (asked["alice"]["prompt"], asked["alice"]["stop"]) == ("", True), asked["alice"]
    assert [(c["name"], c["answer"]) for c in asked["alice"]["consents"]] == [
        (names["alice"], "GRANTED"), (names["bruno"], "PENDING")]
    assert asked["alice"]["pageWidth"] <= PHONE["width"], asked["alice"]


def assert_outsider_sees_nothing(result: dict) -> None:
    outsider = result["steps"]["outsider"]
    assert outsider["listed"] and outsider["recordings"] == [], outsider


@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_a_consented_recording_stops_when_withdrawn_then_plays_and_downloads(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    result, names = await drive(browsers, stack, fleurs, tmp_path, "consent")
    steps = result["steps"]
    assert_asked(result, names)
    for name in ("alice", "bruno"):
        on = steps["recording"][name]
        shown = (on["indicator"], on["stop"], on["record"], on["prompt"])
        assert shown == ("● Recording", True, False, ""), on
        off = steps["withdrawn"][name]
        assert (off["indicator"], off["stop"], off["record"]) == ("", False, True), off
    assert [(c["name"], c["answer"]) for c in steps["withdrawn"]["alice"]["consents"]] == [
        (names["alice"], "GRANTED"), (names["bruno"], "WITHDRAWN")]

    alice_said = (fleurs / f"{ALICE}.txt").read_text()
    bruno_said = (fleurs / f"{BRUNO}.txt").read_text()
    captions = result["people"]["bruno"]["state"]["utterances"]
    live = " ".join(u["transcript"] for u in captions if u["speaker"] == "partner" and u["transcript"])
    for name in ("alice", "bruno"):
        state = result["people"][name]["state"]["recording"]
        [listed] = [r for r in state["recordings"] if r["id"] == result["recordingId"]]
        assert listed["state"] == "STOPPED" and listed["utterances"] >= 1, listed
        assert "expires in 30 days" in listed["line"] or "expires in 29 days" in listed["line"], listed
        opened = state["opened"]["utterances"]
        # only Alice's words: Bruno spoke after he withdrew
        assert {u["speaker"] for u in opened} == {names["alice"]}, opened
        transcript = " ".join(u["text"] for u in opened)
        # what was kept is what was recognised live: Bruno's captions of Alice, word for word
        assert transcript == live, (transcript, live)
        assert wer(alice_said, transcript) <= WER_BOUND, transcript
        assert wer(bruno_said, transcript) > 0.9, transcript
        assert all(u["translations"] and u["speech"] == ["pt"] for u in opened if u["text"]), opened
        played = steps["played"][name]
        # the page shows the transcript, and every <audio> of translated speech has a duration
        assert transcript.split()[0] in played["shown"], played["shown"]
        assert played["audio"] and all(a["duration"] > 0.3 and a["language"] == "pt" for a in played["audio"])
        assert played["pageWidth"] <= (PHONE if name == "alice" else DESKTOP)["width"], played

    download = result["download"]
    assert download["filename"].startswith("dragoman-recording-") and download["filename"].endswith(".json")
    saved = json.loads(download["content"])
    assert saved["recording"]["recordingId"] == result["recordingId"]
    assert saved["recording"]["state"] == "RECORDING_STATE_STOPPED"
    assert " ".join(u["text"] for u in saved["utterances"]) == transcript
    speech = [base64.b64decode(s["oggOpus"]) for u in saved["utterances"] for s in u.get("speech", [])]
    assert speech and all(s.startswith(b"OggS") and b"OpusHead" in s[:100] for s in speech)
    assert_outsider_sees_nothing(result)


@pytest.mark.timeout(DRIVE_S + 120)
async def test_a_declined_recording_keeps_nothing(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    result, names = await drive(browsers, stack, fleurs, tmp_path, "decline")
    assert_asked(result, names)
    for name in ("alice", "bruno"):
        declined = result["steps"]["declined"][name]
        assert (declined["indicator"], declined["prompt"], declined["record"]) == ("", "", True), declined
        # Alice spoke after the refusal: the list (counted from what is stored) has nothing kept
        state = result["people"][name]["state"]["recording"]
        [listed] = [r for r in state["recordings"] if r["id"] == result["recordingId"]]
        assert (listed["state"], listed["utterances"], listed["sizeBytes"]) == ("DECLINED", 0, 0), listed
        assert "Declined: nothing recorded" in listed["line"], listed
    assert [(c["name"], c["answer"]) for c in result["steps"]["declined"]["alice"]["consents"]] == [
        (names["alice"], "GRANTED"), (names["bruno"], "DECLINED")]
    assert result["steps"]["list"]["buttons"] == 0, result["steps"]["list"]  # nothing to play
    assert_outsider_sees_nothing(result)
