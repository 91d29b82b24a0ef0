"""Three people talk in real browsers through the real edge and the real mesh.

Ana (English, the host, on a phone) creates a session for three; Bruno
(Spanish, from another origin, on a phone) and Carla (Portuguese, desktop)
join with the code. Each speaks a recorded sentence, Bruno and Carla at the same time;
Bruno's network drops while Ana speaks. Every page must show the others'
words as captions in its own language, labelled with the speaker's name, and
play their translated speech one utterance after another, every event
exactly once. Then Ana locks the session, Carla leaves, and Ana removes
Bruno, which ends it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import Browsers, BrowserStack, person
from tests.helpers import wer

DRIVER = Path(__file__).with_name("drive_party.mjs")
# fleurs-en-003: whisper-base reads it alike however padded (bench/results/en_clip_stability.md)
SPEECH = {"ana": "fleurs-en-003", "bruno": "fleurs-es-002", "carla": "fleurs-pt-004"}
LANGUAGE = {"ana": "en", "bruno": "es", "carla": "pt"}
WAIT_MS = 150_000  # each wait in the driver
DRIVE_S = 600  # the whole run
WER_BOUND = 0.45
DESKTOP = {"width": 1024, "height": 800}
PHONE = {"width": 390, "height": 844}
pytestmark = [pytest.mark.slow, pytest.mark.models]


@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_three_browsers_talk_through_envoy(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path,
) -> None:
    # the host's phone holds the most: the roster's Remove and Lock buttons
    where = {"ana": (stack.edge_url, PHONE), "bruno": (stack.site_url, PHONE),
             "carla": (stack.edge_url, DESKTOP)}
    people = [person(name, LANGUAGE[name], where[name][0], where[name][1], fleurs / f"{SPEECH[name]}.ogg",
                     tmp_path) for name in SPEECH]
    result = await browsers(DRIVER, people, wait_ms=WAIT_MS, drive_s=DRIVE_S, size=3, prefix="party-")

    username = {p["name"]: p["username"] for p in people}
    references = {name: (fleurs / f"{clip}.txt").read_text() for name, clip in SPEECH.items()}
    for listener in SPEECH:
        page = result["people"][listener]
        state = page["afterSpeech"]
        roster = state["roster"]
        # everyone, host first, in their languages; only this page's own entry is "self"
        assert [(p["name"], p["language"], p["host"], p["self"]) for p in roster["people"]] == [
            (username[n], LANGUAGE[n], n == "ana", n == listener) for n in SPEECH], (listener, roster)
        assert (roster["maxParticipants"], roster["locked"], roster["fromEvents"]) == (3, False, True)

        others = [n for n in SPEECH if n != listener]
        theirs = [u for u in state["utterances"] if u["speaker"] == "partner"]
        assert {u["speakerName"] for u in theirs} <= {username[n] for n in others}, theirs
        for speaker in others:
            heard = [u for u in theirs if u["speakerName"] == username[speaker] and u["transcript"]]
            assert heard, f"{listener} got no captions of {speaker}"
            transcript = " ".join(u["transcript"] for u in heard)
            translation = " ".join(u["translation"] for u in heard)
            assert wer(references[speaker], transcript) <= WER_BOUND, (listener, speaker, transcript)
            assert translation and translation != transcript, (listener, speaker, translation)
            # translated once, into the listener's own language
            assert all(list(u["translations"]) == [LANGUAGE[listener]] for u in heard), heard
            assert all(u["audioChunks"] > 0 and u["latencyMs"] > 0 for u in heard), heard
        # the speaker sees their words in each language the others hear
        own = [u for u in state["utterances"] if u["speaker"] == "self" and u["transcript"]]
        assert own, f"{listener}'s own speech has no captions"
        assert any(set(u["translations"]) == {LANGUAGE[n] for n in others} for u in own), own
        # played one utterance at a time: each starts playing once, none split by another
        played = [s["utteranceId"] for s in state["played"]]
        assert len(played) == len(set(played)), (listener, state["played"])
        assert {s["name"] for s in state["played"]} == {username[n] for n in others}, state["played"]
        # every event exactly once, in order, across Bruno's reconnection
        sequences = state["sequences"]
        assert sequences == list(range(1, len(sequences) + 1)), (listener, sequences)
        # a phone-size page does not scroll sideways
        assert page["pageWidth"] <= where[listener][1]["width"], (listener, page["pageWidth"])
        assert Path(page["screenshot"]).stat().st_size > 10_000

    assert result["people"]["bruno"]["afterSpeech"]["reconnects"] >= 1, "Bruno's network drop did not show"
    final = {name: result["people"][name]["state"] for name in SPEECH}
    assert all(s["status"] == "ended" for s in final.values()), {n: s["status"] for n, s in final.items()}
    assert final["ana"]["roster"]["locked"]
    assert (final["carla"]["message"], final["carla"]["error"]) == ("You left the session.", "")
    assert final["ana"]["error"] == "", final["ana"]["error"]  # removing the last guest ends it cleanly
