"""`dragoman models pull` for speech models and voices, end to end on a fake hub serving tiny
models under the real repository names: pull -> verify -> install -> the service loads the
model and serves a real call; and interrupted downloads, racing pulls, a full disk, bad bytes.

The catalogue entries are the real ones (whisper-small, piper-de_DE-thorsten-medium); only
the Piper pins are swapped for the tiny voice's own sizes and digests, since the real ones
pin the real 63 MB voice (which the first test checks is refused before any download).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dragoman import audio, config, rpc
from dragoman.catalog import catalogue, pulled
from dragoman.catalog.packaged import MANIFEST, ModelError, State
from dragoman.catalog.pulled import HubFile, HubModel
from dragoman.devices import Device
from dragoman.errors import FailedPrecondition, InvalidArgument
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from dragoman.tts.v1 import tts_pb2
from dragoman_tools import cli, pull
from dragoman_tools.install import Outcome
from dragoman_tools.pull import DiskFull, Hub, Interrupted
from stt_svc import engines as stt_engines
from stt_svc import server as stt_server
from tests.conftest import started
from tests.fakehub import FakeHub, piper_folder, write_piper, write_whisper
from tests.stt_svc.conftest import finals, recognize, requests, stream_config, with_stt
from tests.tts_svc.conftest import collect, rms, stub
from tts_svc import server as tts_server
from tts_svc.engines.piper import PiperEngine

WHISPER = pulled.HUB["whisper-small"]
THORSTEN, IRINA = "de_DE-thorsten-medium", "ru_RU-irina-medium"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    write_whisper(root / "whisper", models_dir / "whisper-base")
    write_piper(root / "piper", THORSTEN, "de")
    write_piper(root / "piper", IRINA, "ru", licence="unknown")
    return {WHISPER.repo: root / "whisper", pulled.PIPER_REPO: root / "piper"}


@pytest.fixture
def fake_hub(repos: dict[str, Path]) -> Iterator[FakeHub]:
    with FakeHub(repos) as served:
        yield served


def _pinned_to(entry: HubModel, repo: Path) -> HubModel:
    """`entry` with its pins swapped for the sizes and digests of the tiny files in `repo`."""
    def pin(spec: HubFile) -> HubFile:
        data = (repo / spec.path).read_bytes()
        return dataclasses.replace(spec, size=len(data), md5=hashlib.md5(data).hexdigest(),
                                   sha256=hashlib.sha256(data).hexdigest() if spec.sha256 else "")
    return dataclasses.replace(entry, files=tuple(pin(f) for f in entry.files))


@pytest.fixture
def voices(repos: dict[str, Path]) -> dict[str, HubModel]:
    piper = repos[pulled.PIPER_REPO]
    return {name: _pinned_to(pulled.HUB[name], piper)
            for name in (f"piper-{THORSTEN}", f"piper-{IRINA}")}


def _pull(models_dir: Path, hub: FakeHub, name: str = WHISPER.name, **kwargs: Any) -> tuple[Outcome, str]:
    out = io.StringIO()
    outcome = pull.pull(models_dir, name, hub=Hub(hub.url), out=out, **kwargs)
    return outcome, out.getvalue()


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if p.name.startswith((".tmp-", ".partial-")))


def _resolved(hub: FakeHub) -> list[str]:
    """The files downloaded (not the listings), by name."""
    return [r.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r]


async def test_whisper_pull_installs_what_stt_svc_loads_and_serves(
    tmp_path: Path, fake_hub: FakeHub, settings: config.Settings, fleurs: Path
) -> None:
    outcome, progress = await asyncio.to_thread(_pull, tmp_path, fake_hub)
    assert outcome is Outcome.INSTALLED
    assert "model.bin verified ✓" in progress and "converting" not in progress
    folder = tmp_path / WHISPER.name
    assert sorted(p.name for p in folder.iterdir()) == [  # as published; no README, no conversion
        MANIFEST, "config.json", "model.bin", "preprocessor_config.json", "tokenizer.json",
        "vocabulary.txt"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["hub"]["role"], manifest["hub"]["format"], manifest["hub"]["trust"]) == (
        "stt", "ct2", "first-pull")
    assert manifest["version"] == FakeHub.SHA and "quantization" not in manifest["hub"]
    assert _leftovers(tmp_path) == []
    assert catalogue.ENTRIES[WHISPER.name].installed(tmp_path)
    assert pull.verify(tmp_path, [WHISPER.name], out=io.StringIO()) == {WHISPER.name: []}

    stt = with_stt(dataclasses.replace(settings, models_dir=str(tmp_path)), engine="whisper",
                   model=WHISPER.name, english_model="", cpu_threads=1)
    service = await stt_server.create(stt)
    speech = audio.decode_file(fleurs / "fleurs-de-000.ogg", 16_000)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            client = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            listed = await client.ListModels(stt_pb2.ListModelsRequest())
            responses = await recognize(client, requests(stream_config("de"), speech))
    assert [(m.name, m.engine) for m in listed.models] == [(WHISPER.name, "faster-whisper")]
    assert finals(responses), "the tiny Whisper answered no final result"
    # A model of the catalogue that is not pulled: the service says how to get it.
    medium = with_stt(stt, model="whisper-medium")
    with pytest.raises(FailedPrecondition, match="model whisper-medium is not installed in "
                                                 ".*; run `dragoman models pull whisper-medium`"):
        stt_engines.load(medium)


async def test_piper_pull_installs_a_voice_tts_svc_speaks(
    tmp_path: Path, fake_hub: FakeHub, voices: dict[str, HubModel], settings: config.Settings
) -> None:
    name = f"piper-{THORSTEN}"
    # The real entry pins the real 63 MB voice: refused from the listing, nothing downloaded.
    with pytest.raises(ModelError, match=(
            f"rhasspy/piper-voices: the hub lists {piper_folder(THORSTEN)}/{THORSTEN}.onnx at "
            f"commit 0123456789ab as [0-9,]+ bytes, sha256 [0-9a-f]{{64}}, the catalogue pins "
            f"63,201,294 bytes, sha256 7e64762d.*: the file changed upstream. Nothing was downloaded.")):
        _pull(tmp_path, fake_hub, name)
    assert _resolved(fake_hub) == [] and _leftovers(tmp_path) == []

    outcome, progress = await asyncio.to_thread(_pull, tmp_path, fake_hub, name, catalogue=voices)
    assert outcome is Outcome.INSTALLED and f"{THORSTEN}.onnx verified ✓" in progress
    folder = tmp_path / name
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST, "MODEL_CARD", f"{THORSTEN}.onnx", f"{THORSTEN}.onnx.json"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["hub"]["role"], manifest["hub"]["trust"], manifest["hub"]["pinned"]) == (
        "tts", "pinned", ["MODEL_CARD", f"{THORSTEN}.onnx", f"{THORSTEN}.onnx.json"])
    assert manifest["hub"]["downloaded"][f"{THORSTEN}.onnx"]["path"] == (
        f"{piper_folder(THORSTEN)}/{THORSTEN}.onnx")
    assert _leftovers(tmp_path) == []

    tts = dataclasses.replace(settings, models_dir=str(tmp_path),
                              tts=dataclasses.replace(settings.tts, engines="piper", cpu_threads=1))
    service = await tts_server.create(tts)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            client = stub(channel)
            listed = await client.ListVoices(tts_pb2.ListVoicesRequest(language_code="de"))
            responses = await collect(client, text="Guten Tag, wie geht es Ihnen?",
                                      language_code="de-DE")
    # The pulled voice is German's default; espeak-ng, always loaded, comes after it.
    assert [(v.name, v.engine, v.is_default) for v in listed.voices] == [
        (THORSTEN, "piper", True), ("espeak-de", "espeak", False)]
    assert responses and {r.sample_rate_hertz for r in responses} == {16_000}
    assert rms(b"".join(r.audio for r in responses)) > 0.01
    # A damaged pulled voice is not loaded (here the only one: no Piper voice at all).
    (folder / "MODEL_CARD").write_text("short")
    with ThreadPoolExecutor(1) as executor, pytest.raises(FailedPrecondition, match="no Piper voice"):
        PiperEngine.load(tmp_path, 1, executor, Device("cpu"))


def test_restrictive_voice_licences_need_accepting(
    tmp_path: Path, fake_hub: FakeHub, voices: dict[str, HubModel]
) -> None:
    name = f"piper-{IRINA}"
    with pytest.raises(ModelError) as info:
        _pull(tmp_path, fake_hub, name, catalogue=voices)
    assert info.value.message.startswith(f"{name} is licensed unverified (read its MODEL_CARD): ")
    assert info.value.message.endswith(f"run `dragoman models pull {name} --accept-licence {name}`")
    assert fake_hub.requests == []
    with pytest.raises(ModelError, match="is licensed"):
        _pull(tmp_path, fake_hub, name, catalogue=voices, accept=["CC-BY-NC-4.0"])
    outcome, progress = _pull(tmp_path, fake_hub, name, catalogue=voices, accept=[name])
    assert outcome is Outcome.INSTALLED and "licence unverified (read its MODEL_CARD) accepted" in progress
    manifest = json.loads((tmp_path / name / MANIFEST).read_text())
    assert manifest["hub"]["accepted_licence"] == name
    assert "License: unknown" in (tmp_path / name / "MODEL_CARD").read_text()


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path: Path, fake_hub: FakeHub) -> None:
    size = (fake_hub.repos[WHISPER.repo] / "model.bin").stat().st_size
    fake_hub.cut["model.bin"] = 1_000_000
    with pytest.raises(Interrupted) as info:
        _pull(tmp_path, fake_hub)
    partial = tmp_path / f".partial-{WHISPER.name}"
    assert info.value.message == (
        f"the download of {WHISPER.repo} model.bin from {fake_hub.url.removeprefix('http://')} "
        f"broke off after 1,000,000 of {size:,} bytes; run the pull again to resume it "
        f"(kept in {partial})")
    assert (partial / "model.bin.part").stat().st_size == 1_000_000
    assert not (tmp_path / WHISPER.name).exists()
    assert pulled.status(tmp_path, WHISPER.name, pulled.HUB).state is State.MISSING
    # Again, cut a second time: it resumes, then breaks off again further on.
    fake_hub.requests.clear()
    with pytest.raises(Interrupted, match=f"broke off after 2,000,000 of {size:,} bytes"):
        _pull(tmp_path, fake_hub)
    assert fake_hub.ranges == ["bytes=1000000-"]
    assert "config.json" not in _resolved(fake_hub)  # finished files are re-checked, not fetched
    fake_hub.cut.clear()
    fake_hub.requests.clear()
    outcome, progress = _pull(tmp_path, fake_hub)
    assert outcome is Outcome.INSTALLED and "resuming model.bin at 2.0 MB" in progress
    assert fake_hub.ranges[-1] == "bytes=2000000-"
    assert _resolved(fake_hub) == [  # config.json, complete, is not fetched again
        "model.bin", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"]
    assert _leftovers(tmp_path) == []
    assert pull.verify(tmp_path, [WHISPER.name], out=io.StringIO()) == {WHISPER.name: []}


def test_a_mirror_that_ignores_ranges_starts_the_file_over(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.cut["model.bin"] = 500_000
    with pytest.raises(Interrupted):
        _pull(tmp_path, fake_hub)
    fake_hub.cut.clear()
    fake_hub.ignore_ranges = True
    assert _pull(tmp_path, fake_hub)[0] is Outcome.INSTALLED
    assert pull.verify(tmp_path, [WHISPER.name], out=io.StringIO()) == {WHISPER.name: []}


def test_a_new_commit_discards_the_old_downloads(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.cut["model.bin"] = 500_000
    with pytest.raises(Interrupted):
        _pull(tmp_path, fake_hub)
    fake_hub.cut.clear()
    fake_hub.SHA = "f" * 40  # main moved on upstream: the half file belongs to another commit
    fake_hub.requests.clear()
    outcome, progress = _pull(tmp_path, fake_hub)
    assert outcome is Outcome.INSTALLED and fake_hub.ranges == [] and "resuming" not in progress
    assert _resolved(fake_hub)[:2] == ["config.json", "model.bin"]  # every file again
    assert json.loads((tmp_path / WHISPER.name / MANIFEST).read_text())["version"] == "f" * 40


def test_two_pulls_of_one_model_never_collide(tmp_path: Path, fake_hub: FakeHub) -> None:
    # Another pull holds the model's lock: this one waits, downloading nothing meanwhile.
    with (tmp_path / f".lock-{WHISPER.name}").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out = io.StringIO()
        result: list[Outcome] = []
        waiter = threading.Thread(target=lambda: result.append(
            pull.pull(tmp_path, WHISPER.name, hub=Hub(fake_hub.url), out=out)))
        waiter.start()
        deadline = time.monotonic() + 10
        while "waiting for it" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.getvalue() == (f"{WHISPER.name}: another pull of {WHISPER.name} is running in "
                                  f"{tmp_path}; waiting for it…\n")
        with pytest.raises(ModelError, match=f"^another pull of {WHISPER.name} is running in "
                                             f".*; try again when it has finished$"):
            _pull(tmp_path, fake_hub, wait=False)
        assert fake_hub.requests == []
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(30)
    assert result == [Outcome.INSTALLED]
    # Two at once: one installs, the other waits and then finds it installed.
    shutil.rmtree(tmp_path / WHISPER.name)
    both: list[Outcome] = []
    racers = [threading.Thread(target=lambda: both.append(_pull(tmp_path, fake_hub)[0]))
              for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(30)
    assert sorted(both) == [Outcome.INSTALLED, Outcome.SKIPPED]
    assert pull.verify(tmp_path, [WHISPER.name], out=io.StringIO()) == {WHISPER.name: []}
    assert _leftovers(tmp_path) == []


def test_a_full_disk_is_found_before_and_during_the_download(
    tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_usage = pull.shutil.disk_usage
    monkeypatch.setattr(pull.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=1_000))
    with pytest.raises(DiskFull, match=f"^{WHISPER.name}: not enough space in {tmp_path}: "
                                       f"1 kB free, about [0-9.]+ MB needed$"):
        _pull(tmp_path, fake_hub)
    assert _resolved(fake_hub) == [] and _leftovers(tmp_path) == []
    monkeypatch.setattr(pull.shutil, "disk_usage", real_usage)

    # The disk fills up after 3 MB of model.bin: ENOSPC from the write.
    real_open = Path.open

    class Filling:
        def __init__(self, fh: Any) -> None:
            self.fh, self.written = fh, 0

        def write(self, data: bytes) -> int:
            if self.written + len(data) > 3_000_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return int(self.fh.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

        def __enter__(self) -> Filling:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

    def opening(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(path, mode, *args, **kwargs)
        return Filling(fh) if path.name == "model.bin.part" else fh

    monkeypatch.setattr(Path, "open", opening)
    size = (fake_hub.repos[WHISPER.repo] / "model.bin").stat().st_size
    partial = re.escape(str(tmp_path / f".partial-{WHISPER.name}"))
    with pytest.raises(DiskFull, match=(
            f"^no space left on the device of {partial} while writing model.bin "
            f"\\(2,[0-9,]+ of {size:,} bytes written\\): free [0-9.]+ MB or more and run the pull "
            f"again; nothing was installed$")):
        _pull(tmp_path, fake_hub)
    assert _leftovers(tmp_path) == [] and not (tmp_path / WHISPER.name).exists()


def test_bad_bytes_unknown_names_and_an_unreachable_hub(
    tmp_path: Path, fake_hub: FakeHub, voices: dict[str, HubModel]
) -> None:
    name = f"piper-{THORSTEN}"
    onnx = f"{THORSTEN}.onnx"
    real = (fake_hub.repos[pulled.PIPER_REPO] / piper_folder(THORSTEN) / onnx).read_bytes()
    fake_hub.tamper[onnx] = real[:-1] + bytes([real[-1] ^ 1])  # same size, one bit flipped
    with pytest.raises(ModelError, match=f"^{pulled.PIPER_REPO}: {piper_folder(THORSTEN)}/{onnx} "
                                         f"does not verify \\(sha256 "
                                         f"[0-9a-f]{{64}}, the hub lists [0-9a-f]{{64}}\\)"):
        _pull(tmp_path, fake_hub, name, catalogue=voices)
    assert _leftovers(tmp_path) == [] and not (tmp_path / name).exists()
    fake_hub.tamper.clear()
    # The hub agrees with itself but not with the catalogue's md5.
    entry = voices[name]
    card = dataclasses.replace(entry.files[2], md5="0" * 32)
    wrong = {name: dataclasses.replace(entry, files=(*entry.files[:2], card))}
    with pytest.raises(ModelError, match=f"MODEL_CARD does not verify \\(md5 [0-9a-f]{{32}}, "
                                         f"the catalogue pins {'0' * 32}\\)"):
        _pull(tmp_path, fake_hub, name, catalogue=wrong)
    assert _leftovers(tmp_path) == []
    with pytest.raises(InvalidArgument, match="^unknown model 'piper-xx_XX-nobody-medium'; known: "):
        _pull(tmp_path, fake_hub, "piper-xx_XX-nobody-medium")
    with pytest.raises(Interrupted, match="^cannot reach 127.0.0.1:9 \\(.*\\); check the network"):
        pull.pull(tmp_path, name, hub=Hub("http://127.0.0.1:9"), out=io.StringIO(), catalogue=voices)
    assert _leftovers(tmp_path) == []


def test_the_command_pulls_lists_and_verifies_every_role(
    tmp_path: Path, fake_hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--dir", str(tmp_path)]
    assert cli.main(["models", "pull", WHISPER.name, *common, "--hub-url", fake_hub.url]) == 0
    assert "whisper-small: installed in" in capsys.readouterr().err
    name = f"piper-{IRINA}"
    assert cli.main(["models", "pull", name, *common, "--hub-url", fake_hub.url]) == 1
    assert capsys.readouterr().err.endswith(
        f"To accept it, run `dragoman models pull {name} --accept-licence {name}`\n")
    assert cli.main(["models", "verify", WHISPER.name, *common]) == 0
    assert cli.main(["models", "list", *common]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["whisper-small"].endswith(" installed")
    assert rows["whisper-large-v3"].endswith(" pullable") and " cuda " in rows["whisper-large-v3"]
    assert " pullable, opt-in licence; " in rows[name]
    assert {"opus-mt-en-de", "piper-de_DE-thorsten-medium", "kokoro"} <= set(rows)
