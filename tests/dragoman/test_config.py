from __future__ import annotations

from pathlib import Path

import pytest

from dragoman import config
from dragoman.errors import InvalidArgument


def test_defaults_toml_and_env_in_that_order(tmp_path: Path) -> None:
    toml = tmp_path / "dragoman.toml"
    toml.write_text('models_dir = "/m"\n[stt]\nbeam_size = 3\nendpoint_silence_ms = 500\n')
    s = config.load(toml, env={"DRAGOMAN_STT_BEAM_SIZE": "5", "DRAGOMAN_ADDRESSES_MT": "h:1"})
    assert s.models_dir == "/m"
    assert s.stt.beam_size == 5            # env beats the file
    assert s.stt.endpoint_silence_ms == 500  # file beats the default
    assert s.addresses.mt == "h:1"
    assert s.tts.max_text_chars == config.TtsSettings().max_text_chars


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="DRAGOMAN_STT_BEAM_SIZE: expected int"):
        config.load(env={"DRAGOMAN_STT_BEAM_SIZE": "many"})
    toml = tmp_path / "bad.toml"
    toml.write_text("[stt]\nbeem_size = 1\n")
    with pytest.raises(InvalidArgument, match="unknown setting stt_beem_size"):
        config.load(toml, env={})
    with pytest.raises(InvalidArgument, match="does not exist"):
        config.load(tmp_path / "missing.toml", env={})


def test_describe_masks_the_jwt_secret_and_the_identity_key() -> None:
    s = config.load(env={"DRAGOMAN_AUTH_JWT_SECRET": "s3cret",
                         "DRAGOMAN_AUTH_IDENTITY_KEY": "k3y"})
    assert s.auth.jwt_secret == "s3cret" and s.auth.identity_key == "k3y"
    assert config.describe(s)["auth"]["jwt_secret"] == "***"
    assert config.describe(s)["auth"]["identity_key"] == "***"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("catchup_backlog_ms", 0, "setting session.catchup_backlog_ms must be more than 0, got 0"),
    ("catchup_max_speed", 0.9, "setting session.catchup_max_speed must be 1 to 2, got 0.9"),
    ("catchup_max_speed", 2.5, "setting session.catchup_max_speed must be 1 to 2, got 2.5"),
    ("piece_behind_ms", -1, "setting session.piece_behind_ms must be 0 or more, got -1"),
    ("piece_max_words_behind", 3, "setting session.piece_max_words_behind must be at least "
     "piece_max_words (4), got 3"),
])
def test_catch_up_settings_are_checked(field: str, value: float, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        config.SessionSettings(**{field: value})  # type: ignore[arg-type]
    assert raised.value.message == message


@pytest.mark.parametrize("field", ["partial_interval_ms", "early_partial_interval_ms"])
def test_partial_intervals_are_checked(field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        config.load(env={f"DRAGOMAN_STT_{field.upper()}": "50"})
    assert raised.value.message == f"setting stt.{field} must be 100 or more, got 50"
