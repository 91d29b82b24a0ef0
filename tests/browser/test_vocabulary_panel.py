"""The web client's "My vocabulary" panel in Chromium, through the real edge and gateway: a
user adds two vocabularies with the form and deletes one; the page lists what the server
holds after each step, and the API then finds exactly the one kept, as it was entered."""

from __future__ import annotations

from pathlib import Path

import pytest

from dragoman.v1 import vocabulary_pb2 as vpb
from tests.browser.conftest import Browsers, BrowserStack, person
from tests.mesh import PASSWORD, MeshAddresses
from tests.rawclient import RawClient as Client

DRIVER = Path(__file__).with_name("drive_vocabulary.mjs")
WAIT_MS = 60_000  # each wait in the driver
DRIVE_S = 180  # the whole run
DESKTOP = {"width": 1024, "height": 800}
WORK = {"name": "work", "terms": "Wojciech, Zylofex", "keep": "Dragoman",
        "translations": "roadmap = plano de voo\nfront desk = receção", "source": "en", "target": "pt"}
TRAVEL = {"name": "travel", "terms": "Llanelli\nAberystwyth", "keep": "", "translations": "",
          "source": "en", "target": "es"}


@pytest.mark.slow
@pytest.mark.models  # the mesh behind the edge loads them
@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_add_list_and_delete_vocabularies(
    browsers: Browsers, stack: BrowserStack, mesh: MeshAddresses, fleurs: Path, tmp_path: Path,
) -> None:
    ana = person("ana", "en", stack.edge_url, DESKTOP, fleurs / "fleurs-en-004.ogg", tmp_path)
    result = await browsers(DRIVER, [ana], wait_ms=WAIT_MS, drive_s=DRIVE_S,
                            vocabularies=[WORK, TRAVEL], remove="travel")
    empty, one, two, kept = result["steps"]
    assert empty == [{"id": "", "name": "", "text": "No vocabulary yet."}]
    assert [v["name"] for v in one] == ["work"] and sorted(v["name"] for v in two) == ["travel", "work"]
    assert [v["name"] for v in kept] == ["work"] and result["clearedAfterAdd"]
    (work,) = kept
    assert "recognise: Wojciech, Zylofex" in work["text"] and "keep: Dragoman" in work["text"]
    assert "roadmap → plano de voo (en→pt)" in work["text"], work
    assert {v["id"] for v in two} >= {work["id"]} and all(v["id"] for v in two)

    # what the server holds, asked over the API as the same user
    async with Client(mesh.gateway) as client:
        await client.login(ana["username"], PASSWORD)
        held = (await client.vocabularies.ListVocabularies(
            vpb.ListVocabulariesRequest(), metadata=client.metadata)).vocabularies
    (stored,) = held
    assert (stored.vocabulary_id, stored.display_name) == (work["id"], "work")
    assert list(stored.terms) == ["Wojciech", "Zylofex"] and list(stored.do_not_translate) == ["Dragoman"]
    assert [(t.source_language_code, t.target_language_code, t.source, t.target)
            for t in stored.translations] == [("en", "pt", "roadmap", "plano de voo"),
                                              ("en", "pt", "front desk", "receção")]
