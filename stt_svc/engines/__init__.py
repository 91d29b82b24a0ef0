"""Speech recognition engines and the loader the service uses."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dragoman import config, packs
from dragoman.catalog import pulled
from dragoman.errors import InvalidArgument
from stt_svc.engines.base import SpeechRecognizer

log = logging.getLogger(__name__)


def load(settings: config.Settings) -> list[SpeechRecognizer]:
    """Loads and warms up the configured models (blocking: call it in a thread).

    Whisper: the models `choice()` picks (`stt.model`, `stt.english_model` when
    installed, or per language the strongest installed). Fake: one deterministic engine.
    """
    stt = settings.stt
    if stt.engine == "fake":
        from stt_svc.engines.fake import FakeEngine

        return [FakeEngine()]
    if stt.engine == "triton":  # the models run on a Triton server (`dragoman triton`)
        from dragoman.triton_client import TritonClient
        from stt_svc.engines import triton

        return list(triton.load(TritonClient(settings.triton, settings.tls), settings.triton.ready_timeout_s))
    if stt.engine != "whisper":
        raise InvalidArgument(f"unknown stt engine {stt.engine!r}; use whisper, triton or fake")
    from dragoman.devices import Device
    from stt_svc.engines.whisper import WhisperEngine

    device = Device.parse(stt.device, "stt.device")
    root = Path(settings.models_dir)
    engines: list[SpeechRecognizer] = []
    for name in choice(settings).names:
        start = time.perf_counter()
        folder = _folder(root, name)
        engine = WhisperEngine(folder, name=name, cpu_threads=stt.cpu_threads, device=device)
        engine.warm_up()
        log.info("loaded %s", name, extra={"seconds": round(time.perf_counter() - start, 2)})
        engines.append(engine)
    return engines


def choice(settings: config.Settings) -> packs.SttChoice:
    """The Whisper model of each language: the settings' names, or the strongest installed
    one for `stt.device` ("auto"; dragoman.packs). Cheap: manifests and sizes only."""
    stt = settings.stt
    found = packs.entries(settings.models_dir)
    # an English model outside the catalogue counts when its folder holds one (placed by hand)
    known = any(e.name == stt.english_model for e in found)
    present = None if known else (Path(settings.models_dir) / stt.english_model / "model.bin").is_file()
    chosen = packs.stt_choice(found, stt.device, stt.model, stt.english_model, present)
    if stt.english_model not in ("", packs.AUTO) and chosen.models.get("en") != stt.english_model:
        log.warning("english model %s not installed in %s", stt.english_model, settings.models_dir)
    for name in chosen.names:
        languages = sorted(lang for lang, model in chosen.models.items() if model == name)
        log.info("%s serves %s", name, ", ".join(languages) or "other languages",
                 extra={"reason": chosen.reasons.get(name, "")})
    return chosen


def _folder(root: Path, name: str) -> Path:
    """Where model `name` is: a model of the hub catalogue (`dragoman models pull`) must be
    installed and intact (FAILED_PRECONDITION saying how to pull it); any other name is a
    folder of `root` (the packaged models, or one placed by hand)."""
    entry = pulled.HUB.get(name)
    if entry is None or entry.role != "stt":
        return root / name
    return pulled.require(root, name, {name: entry})
