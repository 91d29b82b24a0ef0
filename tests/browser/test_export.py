"""The web client's Export control: after a real conversation through the real edge, the
listener saves the session's transcript as WebVTT, with what they read: the translations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webvtt

from tests.browser.conftest import Browsers, BrowserStack, person

DRIVER = Path(__file__).with_name("drive_export.mjs")
WAIT_MS = 120_000  # each wait in the driver
DRIVE_S = 300  # the whole run
DESKTOP = {"width": 1024, "height": 800}


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_export_downloads_the_transcript_with_the_translations(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    result = await browsers(DRIVER, [
        person("alice", "en", stack.edge_url, DESKTOP, fleurs / "fleurs-en-004.ogg", tmp_path),
        person("bruno", "pt", stack.edge_url, DESKTOP, fleurs / "fleurs-pt-004.ogg", tmp_path),
    ], wait_ms=WAIT_MS, drive_s=DRIVE_S, format="webvtt")
    bruno = result["people"]["bruno"]["state"]
    heard = [u for u in bruno["utterances"] if u["speaker"] == "partner" and u["translation"]]
    download = result["download"]
    assert download["filename"].startswith("dragoman-") and download["filename"].endswith(".vtt")
    captions = webvtt.from_string(download["content"]).captions
    assert captions and all(c.voice and c.voice.startswith("alice-") for c in captions)
    assert " ".join(c.text.splitlines()[0] for c in captions).split() == \
        " ".join(u["translation"] for u in heard).split()


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(DRIVE_S + 120)
async def test_a_participant_keyed_export_is_opened_in_the_browser(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    """The host picks "Your key"; both pages show it. The server returns the listener's copy
    sealed with the key his browser made, and the page opens it with WebCrypto (docs/privacy.md)."""
    result = await browsers(DRIVER, [
        person("alice", "en", stack.edge_url, DESKTOP, fleurs / "fleurs-en-004.ogg", tmp_path),
        person("bruno", "pt", stack.edge_url, DESKTOP, fleurs / "fleurs-pt-004.ogg", tmp_path),
    ], wait_ms=WAIT_MS, drive_s=DRIVE_S, format="text", privacy="participant-keyed")
    assert result["badges"] == {"alice": "Your key", "bruno": "Your key"}
    bruno = result["people"]["bruno"]["state"]
    heard = [u["translation"] for u in bruno["utterances"]
             if u["speaker"] == "partner" and u["translation"]]
    download = result["download"]
    assert download["filename"].endswith(".json") and ".sealed" not in download["filename"]
    opened = json.loads(download["content"])  # Bruno's copy: what he heard, in Portuguese
    assert opened["utterances"] and all(
        u["target_language_code"] == "pt" for u in opened["utterances"])
    assert " ".join(u["translated_text"] for u in opened["utterances"]).split() == \
        " ".join(heard).split()
