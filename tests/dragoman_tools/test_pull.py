"""`dragoman models pull` end to end on a tiny model served by a fake hub on 127.0.0.1:
download -> verify -> convert -> install -> load -> translate over gRPC; and its failures."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import ctranslate2
import pytest
import sentencepiece as spm

from dragoman import config, rpc
from dragoman.catalog import pulled
from dragoman.catalog.packaged import MANIFEST, ModelError, State
from dragoman.catalog.pulled import HubModel
from dragoman.mt.v1 import mt_pb2
from dragoman_tools import pull
from dragoman_tools.install import Outcome
from dragoman_tools.pull import Hub
from mt_svc import server
from mt_svc.engines import ct2
from tests.conftest import started
from tests.fakehub import FakeHub
from tests.mt_svc.conftest import request, stub_of, with_mt
from tests.mt_svc.tiny import NPZ, write_marian

REPO = "dragoman-tests/tiny-opus-mt-en-de"
TINY = HubModel(
    name="tiny-opus-mt-en-de", repo=REPO, family="marian", pairs=frozenset({("en", "de")}),
    licence="CC0-1.0", size=200_000, description="tiny random OPUS-MT en->de", format="marian",
    target_tokens={"de": ">>deu<<"},
)
BROKEN = HubModel(
    name="tiny-broken", repo="dragoman-tests/broken", family="marian",
    pairs=frozenset({("en", "fr")}), licence="CC0-1.0", size=200_000, description="bad",
    format="marian",
)
CATALOGUE = {m.name: m for m in (TINY, BROKEN)}
SENTENCE = "the red cat sees a bird"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    write_marian(root / "tiny", extra_tokens=[">>deu<<", ">>fra<<"])
    write_marian(root / "broken")
    (root / "broken" / "decoder.yml").write_text("models: [missing.npz]\nvocabs: [x.yml, x.yml]\n")
    return {REPO: root / "tiny", BROKEN.repo: root / "broken"}


@pytest.fixture
def fake_hub(repos: dict[str, Path]) -> Iterator[FakeHub]:
    with FakeHub(repos) as served:
        yield served


def _pull(
    models_dir: Path, fake_hub: FakeHub, name: str = TINY.name, **kwargs: object
) -> tuple[Outcome, str]:
    out = io.StringIO()
    outcome = pull.pull(models_dir, name, hub=Hub(fake_hub.url), out=out, catalogue=CATALOGUE,
                       **kwargs)  # type: ignore[arg-type]
    return outcome, out.getvalue()


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if p.name.startswith((".tmp-", ".partial-")))


async def test_pull_installs_a_model_that_mt_svc_loads_and_serves(
    tmp_path: Path, fake_hub: FakeHub, settings: config.Settings
) -> None:
    outcome, progress = await asyncio.to_thread(_pull, tmp_path, fake_hub)
    assert outcome is Outcome.INSTALLED
    for step in (f"asking {fake_hub.url.removeprefix('http://')} for {REPO}@main",
                 f"{NPZ} verified ✓", "source.spm verified ✓", "converting to CTranslate2 (int8)",
                 f"installed in {tmp_path / TINY.name}", "licence CC0-1.0"):
        assert step in progress
    folder = tmp_path / TINY.name
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST, "config.json", "model.bin", "shared_vocabulary.json", "source.spm", "target.spm"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["version"], manifest["hub"]["repo"], manifest["hub"]["family"]) == (
        FakeHub.SHA, REPO, "marian")
    assert set(manifest["files"]) == {"config.json", "model.bin", "shared_vocabulary.json",
                                      "source.spm", "target.spm"}
    assert _leftovers(tmp_path) == []
    assert pulled.status(tmp_path, TINY.name, CATALOGUE).state is State.INSTALLED
    assert pulled.require(tmp_path, TINY.name, CATALOGUE) == folder
    assert pull.verify(tmp_path, [TINY.name], out=io.StringIO(), catalogue=CATALOGUE) == {TINY.name: []}

    (engine,) = ct2.load_installed(tmp_path, ct2.DecodeOptions(cpu_threads=1), CATALOGUE)
    assert engine.capabilities.name == TINY.name
    assert engine.capabilities.version.startswith(f"{REPO}@{FakeHub.SHA[:12]} ctranslate2 ")
    service = await server.create(with_mt(settings), engines=[engine])
    async for address in started(service):
        async with rpc.channel(address) as channel:
            stub = stub_of(channel)
            reply = await stub.Translate(request("en", "de-AT", SENTENCE, "  the big dog.\n"))
            again = await stub.Translate(request("en", "de", SENTENCE))
            listed = await stub.ListLanguagePairs(mt_pb2.ListLanguagePairsRequest())
    first, second = reply.translations
    assert (first.engine, first.pivoted, first.cached) == (TINY.name, False, False)
    assert first.text.strip() and second.text.startswith("  ") and second.text.endswith("\n")
    # What the model itself says for the >>deu<< prompt (the converted config adds </s>).
    translator = ctranslate2.Translator(str(folder), device="cpu", compute_type="int8")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "target.spm"))
    direct = translator.translate_batch([[">>deu<<", *sp.encode(SENTENCE, out_type=str)]],
                                        beam_size=2, max_decoding_length=256)
    assert first.text == sp.decode(direct[0].hypotheses[0])
    assert (again.translations[0].text, again.translations[0].cached) == (first.text, True)
    en_de = next(p for p in listed.pairs
                 if (p.source_language_code, p.target_language_code) == ("en", "de"))
    assert (list(en_de.engines), en_de.installed, en_de.license) == ([TINY.name], True, "CC0-1.0")


def test_pull_is_idempotent_and_force_reinstalls(tmp_path: Path, fake_hub: FakeHub) -> None:
    assert _pull(tmp_path, fake_hub)[0] is Outcome.INSTALLED
    fake_hub.requests.clear()
    outcome, progress = _pull(tmp_path, fake_hub)
    assert (outcome, fake_hub.requests) == (Outcome.SKIPPED, [])
    assert "already installed" in progress
    assert _pull(tmp_path, fake_hub, force=True)[0] is Outcome.INSTALLED
    # A damaged install is noticed cheaply, and re-hashing names the file.
    with (tmp_path / TINY.name / "model.bin").open("r+b") as fh:
        fh.write(b"\0\0\0\0")
    problems = pull.verify(tmp_path, [TINY.name], out=io.StringIO(), catalogue=CATALOGUE)[TINY.name]
    assert len(problems) == 1 and problems[0].startswith("model.bin: sha256 ")
    (tmp_path / TINY.name / "source.spm").write_bytes(b"short")
    st = pulled.status(tmp_path, TINY.name, CATALOGUE)
    assert (st.state, st.detail) == (State.DAMAGED, "source.spm has 5 bytes, expected "
                                     f"{(fake_hub.repos[REPO] / 'source.spm').stat().st_size:,}")
    assert ct2.load_installed(tmp_path, catalogue=CATALOGUE) == []
    with pytest.raises(Exception, match="damaged .*run `dragoman models pull --force tiny-opus-mt-en-de`"):
        pulled.require(tmp_path, TINY.name, CATALOGUE)


def test_corrupt_download_installs_nothing(tmp_path: Path, fake_hub: FakeHub) -> None:
    real = (fake_hub.repos[REPO] / NPZ).read_bytes()
    fake_hub.tamper[NPZ] = real[:-1] + bytes([real[-1] ^ 1])  # same size, one bit flipped
    with pytest.raises(ModelError, match=f"{REPO}: {NPZ} does not verify \\(sha256 [0-9a-f]{{64}}, "
                                         f"the hub lists [0-9a-f]{{64}}\\)"):
        _pull(tmp_path, fake_hub)
    assert _leftovers(tmp_path) == [] and not (tmp_path / TINY.name).exists()
    fake_hub.tamper[NPZ] = real + b"more"
    with pytest.raises(ModelError, match=f"\\({len(real) + 4:,} bytes, the hub lists {len(real):,}\\)"):
        _pull(tmp_path, fake_hub)
    assert _leftovers(tmp_path) == [] and not (tmp_path / TINY.name).exists()
    assert pulled.status(tmp_path, TINY.name, CATALOGUE).state is State.MISSING


def test_failed_conversion_installs_nothing(tmp_path: Path, fake_hub: FakeHub) -> None:
    with pytest.raises(ModelError, match="converting tiny-broken \\(dragoman-tests/broken\\) failed"):
        _pull(tmp_path, fake_hub, BROKEN.name)
    assert _leftovers(tmp_path) == [] and not (tmp_path / BROKEN.name).exists()


def test_unknown_repository_and_unreachable_hub(tmp_path: Path, fake_hub: FakeHub,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    missing = {"gone": HubModel(name="gone", repo="dragoman-tests/none", family="marian",
                                pairs=frozenset(), licence="MIT", size=1, description="", format="marian")}
    with pytest.raises(ModelError, match="^127.0.0.1:\\d+ has no dragoman-tests/none at revision main "
                                         "\\(HTTP 404\\)"):
        pull.pull(tmp_path, "gone", hub=Hub(fake_hub.url), out=io.StringIO(), catalogue=missing)
    with pytest.raises(ModelError, match="^cannot reach 127.0.0.1:9 \\(.*\\); check the network"):
        pull.pull(tmp_path, TINY.name, hub=Hub("http://127.0.0.1:9"), out=io.StringIO(),
                 catalogue=CATALOGUE)
    # This machine (and CI) cannot reach the real hub: the default URL says so.
    with pytest.raises(ModelError, match="^cannot reach huggingface.co \\("):
        pull.pull(tmp_path, TINY.name, out=io.StringIO(), catalogue=CATALOGUE)
    assert _leftovers(tmp_path) == []


def test_hub_models_need_the_convert_extra_and_licences_are_explicit(
    tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def without_torch(name: str) -> object:
        return None if name in ("transformers", "torch") else find_spec(name)

    find_spec = pull.importlib.util.find_spec
    monkeypatch.setattr(pull.importlib.util, "find_spec", without_torch)
    target = Hub(fake_hub.url)
    with pytest.raises(ModelError) as info:
        pull.pull(tmp_path, "opus-mt-en-de", hub=target, out=io.StringIO())
    assert info.value.message == (
        "converting opus-mt-en-de from the hub needs transformers and torch (not installed): "
        "pip install 'dragoman[convert]'  (transformers and torch)")
    with pytest.raises(ModelError) as info:
        pull.pull(tmp_path, "nllb-200-distilled-600m", hub=target, out=io.StringIO())
    assert info.value.message.startswith("nllb-200-distilled-600m is licensed CC-BY-NC-4.0: ")
    assert "NON-COMMERCIAL" in info.value.message
    assert info.value.message.endswith(
        "To accept it, run `dragoman models pull nllb-200-distilled-600m --accept-licence CC-BY-NC-4.0`")
    out = io.StringIO()
    with pytest.raises(ModelError, match="needs transformers and torch"):
        pull.pull(tmp_path, "nllb-200-distilled-600m", hub=target, out=out, accept_license=True)
    assert "licence CC-BY-NC-4.0 accepted" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(ModelError):
        pull.pull(tmp_path, "opus-mt-en-ko", hub=target, out=out)
    assert "warning: published with a broken vocabulary" in out.getvalue()
    assert fake_hub.requests == []  # every check came before any download
    with pytest.raises(Exception,
                       match="unknown model 'opus-mt-xx-yy'; known: whisper-small, .*, opus-mt-en-es"):
        pull.pull(tmp_path, "opus-mt-xx-yy", hub=target)


def test_catalogue_and_table(tmp_path: Path) -> None:
    names = list(pulled.CATALOGUE)
    assert names.index("opus-mt-en-de") < names.index("m2m100-418m") < names.index(
        "madlad400-3b") < names.index("nllb-200-distilled-600m")
    licences = {m.family: m.licence for m in pulled.MODELS}
    assert licences == {"marian": "CC-BY-4.0", "m2m100": "MIT", "madlad": "Apache-2.0",
                        "nllb": "CC-BY-NC-4.0"}
    english = {(s, t) for m in pulled.MODELS if m.family == "marian" and m.routed for s, t in m.pairs}
    assert len(english) == 26 and all("en" in pair for pair in english)
    assert not pulled.CATALOGUE["opus-mt-en-ko"].routed
    assert pulled.CATALOGUE["opus-mt-en-pt"].target_tokens == {"pt": ">>por<<"}
    listed = pulled.table(tmp_path).splitlines()
    assert listed[0].split() == ["NAME", "PAIRS", "LICENCE", "DOWNLOAD", "STATE"]
    assert len(listed) == 1 + len(pulled.CATALOGUE)
    assert any(line.startswith("opus-mt-en-ko ") and "broken vocabulary" in line for line in listed)
    assert any(line.startswith("m2m100-418m ") and "15 languages, any to any" in line for line in listed)
    with pytest.raises(Exception, match="not installed in .*; run `dragoman models pull m2m100-418m`"):
        pulled.require(tmp_path, "m2m100-418m")
