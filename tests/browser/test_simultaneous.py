"""Simultaneous mode in a real browser: Bruno (Portuguese) speaks a long turn through the real
edge and a mesh in simultaneous mode; Alice's page gets his translated speech in pieces
(SpeechAudio.piece_index) while he talks, and plays every piece once, in order, to the end
(web/src/speechqueue.ts, web/src/audio/player.ts)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman import config
from tests.browser.conftest import Browsers, BrowserStack, open_stack, person
from tests.deploy.edge import Certs
from tests.helpers import wer
from tests.mesh import serve_mesh

SPEECH = "fleurs-pt-004"  # 12.7 s: a turn long enough for pieces; clean-audio WER 0.15
DRIVER = Path(__file__).with_name("drive_pieces.mjs")
WAIT_MS = 120_000  # each wait in the driver
DRIVE_S = 300  # the whole run
WER_BOUND = 0.45
DESKTOP = {"width": 1024, "height": 800}
pytestmark = [pytest.mark.slow, pytest.mark.models]


@pytest.fixture(scope="module")
async def stack(settings: config.Settings, models_dir: Path, web_dist: Path, browser_certs: Certs,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserStack]:
    """This module's edge, in front of its own mesh in simultaneous mode. Pieces of one or two
    words and partials every 300 ms: stable words, and so pieces, come before each final even
    on a busy CPU."""
    simultaneous = dataclasses.replace(
        settings, stt=dataclasses.replace(settings.stt, early_partial_interval_ms=300),
        session=dataclasses.replace(settings.session, mode="simultaneous", piece_min_words=1,
                                    piece_max_words=2))
    async with (serve_mesh(simultaneous) as mesh,
                open_stack(mesh, web_dist, browser_certs, tmp_path_factory.mktemp("pieces-edge")) as opened):
        yield opened


@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_a_listener_plays_a_long_turn_in_pieces(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    result = await browsers(DRIVER, [
        person("alice", "en", stack.edge_url, DESKTOP, fleurs / "fleurs-en-004.ogg", tmp_path),
        person("bruno", "pt", stack.edge_url, DESKTOP, fleurs / f"{SPEECH}.ogg", tmp_path),
    ], wait_ms=WAIT_MS, drive_s=DRIVE_S)
    alice = result["people"]["alice"]["state"]
    heard = [u for u in alice["utterances"] if u["speaker"] == "partner" and u["transcript"]]
    reference = (fleurs / f"{SPEECH}.txt").read_text()
    assert wer(reference, " ".join(u["transcript"] for u in heard)) <= WER_BOUND, heard
    assert all(u["translation"] and u["audioChunks"] > 0 for u in heard), heard
    assert any(u["pieces"] >= 2 for u in heard), f"no utterance came in pieces: {heard}"
    # each utterance's speech played as one, in the order they were said, and all of it
    assert [p["utteranceId"] for p in alice["played"]] == [u["id"] for u in heard], alice["played"]
    assert alice["playedSamples"] == alice["scheduledSamples"] > 0
