"""The whole conversation with every model on Triton: the same as with the models in process.

Two meshes (five real services each) on loopback: one with the engines in
process, one with engine `triton` for STT, MT and TTS, calling the PyTriton
server of the session (tiny.en, Bergamot, Piper + Kokoro). English speech
goes in one side; Portuguese comes out the other. Finals are decided on the
same audio windows (the VAD counts samples), partials are off (see the test)
and Kokoro is deterministic, so transcripts, translations and the audio bytes
must match exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dragoman import config
from tests.mesh import OneWay, one_way, serve_mesh

pytestmark = [pytest.mark.models, pytest.mark.slow]


def on_triton(settings: config.Settings, triton: Any) -> config.Settings:
    """`settings` with every engine role on the test Triton server."""
    return dataclasses.replace(
        settings,
        stt=dataclasses.replace(settings.stt, engine="triton"),
        mt=dataclasses.replace(settings.mt, engines="triton"),
        tts=dataclasses.replace(settings.tts, engines="triton"),
        triton=triton.options,
    )


def _outcome(talk: OneWay) -> dict[str, list[Any]]:
    return {
        "finals": [(t.text, t.language_code) for t in talk.heard("transcription") if t.is_final],
        "translations": [(t.source_text, t.text, t.target_language_code) for t in talk.heard("translation")],
        "audio": [(c.chunk_index, c.sample_rate_hertz, c.is_last, c.data)
                  for c in talk.heard("speech_audio")],
    }


async def test_conversation_on_triton_equals_in_process(
    local_settings: config.Settings, triton: Any, fleurs: Path
) -> None:
    clip = fleurs / "fleurs-en-000.ogg"
    # No partials: their stable words become the final's forced decoder prefix,
    # and how many partials run before an end of speech depends on how fast
    # the machine decodes (one at a time). Without them a final depends on its
    # audio alone. (A loaded CI machine once capitalised a final differently.)
    settings = dataclasses.replace(
        local_settings, stt=dataclasses.replace(local_settings.stt, partial_interval_ms=3_600_000))
    # tiny.en recognises no Portuguese: only en -> pt is served, so the listener opts in
    async with serve_mesh(settings) as local:
        in_process = _outcome(await one_way(local, clip, "en", "pt-BR", allow_one_way=True))
    async with serve_mesh(on_triton(settings, triton)) as remote:
        on_triton_ = _outcome(await one_way(remote, clip, "en", "pt-BR", allow_one_way=True))

    assert in_process["finals"] and all(text for text, _ in in_process["finals"])
    assert len(in_process["audio"]) >= 2
    assert on_triton_["finals"] == in_process["finals"]
    assert on_triton_["translations"] == in_process["translations"]
    assert [a[:3] for a in on_triton_["audio"]] == [a[:3] for a in in_process["audio"]]
    assert [a[3] for a in on_triton_["audio"]] == [a[3] for a in in_process["audio"]], "Kokoro audio differs"
