"""The Triton host's models are assembled from the services' hosted modules."""

from __future__ import annotations

import dataclasses

import pytest

from dragoman import config, errors, hosting
from dragoman_tools.triton import hosting as host


def test_the_host_runs_in_process_what_the_services_reach_through_triton() -> None:
    settings = config.load(env={})
    on_triton = dataclasses.replace(
        settings,
        stt=dataclasses.replace(settings.stt, engine="triton"),
        mt=dataclasses.replace(settings.mt, engines="triton"),
        tts=dataclasses.replace(settings.tts, engines="triton, espeak"),
    )
    local = host.in_process(on_triton)
    assert local.stt.engine == "whisper"
    assert local.mt.engines == "bergamot"
    assert local.tts.engines == "espeak"
    assert host.in_process(settings) == settings
    assert set(host.ROLES) == {"stt", "mt", "tts"}


def test_hosted_model_names_name_their_role() -> None:
    assert hosting.spec_for("stt-whisper-base").inputs == ("AUDIO", "OPTIONS")
    assert hosting.spec_for("tts-piper").outputs == ("RESULT", "AUDIO")
    with pytest.raises(errors.InvalidArgument, match="unknown hosted model 'asr-x'"):
        hosting.spec_for("asr-x")
