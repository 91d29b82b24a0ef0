"""The web client marks captions the recogniser was unsure of: Alice signs up in English but
speaks German (what Whisper hears as English with low confidence: bench/results/stt_confidence.md,
every such final under stt.low_confidence_below 0.6), and Bruno's page underlines her
transcript and its translation, dotted, with a tooltip giving the confidence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dragoman import config
from tests.browser.conftest import Browsers, BrowserStack, person

DRIVER = Path(__file__).with_name("drive_doubt.mjs")
WAIT_MS = 120_000  # each wait in the driver
DRIVE_S = 300  # the whole run
DESKTOP = {"width": 1024, "height": 800}


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_speech_in_the_wrong_language_is_marked_doubtful(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    result = await browsers(DRIVER, [
        person("alice", "en", stack.edge_url, DESKTOP, fleurs / "fleurs-de-001.ogg", tmp_path),
        person("bruno", "pt", stack.edge_url, DESKTOP, fleurs / "fleurs-en-004.ogg", tmp_path),
    ], wait_ms=WAIT_MS, drive_s=DRIVE_S)
    heard = [u for u in result["people"]["bruno"]["state"]["utterances"]
             if u["speaker"] == "partner" and u["transcript"]]
    assert heard and all(u["doubtful"] for u in heard), heard
    spans = result["doubtful"]
    lines = {s["line"] for s in spans}
    assert lines == {"transcript", "translation"}, spans
    threshold = config.SttSettings().low_confidence_below
    for span in spans:
        assert span["decoration"] == "underline" and span["decorationStyle"] == "dotted", span
        assert span["cursor"] == "help" and span["text"], span
        said = re.search(r"the recogniser was unsure \(confidence (\d+)%\)$", span["title"])
        assert said and int(said[1]) < threshold * 100, span
        if span["line"] == "translation":
            assert span["title"].startswith("translated from speech the recogniser was unsure"), span
    assert " ".join(s["text"] for s in spans if s["line"] == "transcript").split() == \
        " ".join(u["transcript"] for u in heard).split()
    assert result["hovered"] == spans[0]["title"]
