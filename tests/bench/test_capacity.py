"""bench.capacity's arithmetic on a small fixture: GPUs from the STT cost proxies, and money."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import capacity

GPU = {"device": "NVIDIA H200", "rows": [
    {"model": "whisper-large-v3-turbo", "role": "stt", "batch": 32, "utterances_per_s": 100.0,
     "seconds_per_call": 0.32, "encoder_seconds_per_call": 0.16, "window_s": 30, "decoded_tokens": 40},
    {"model": "nllb-200-distilled-600M", "role": "mt", "batch": 32, "sentences_per_s": 100.0},
    {"model": "vits-mms", "role": "tts", "batch": 32, "audio_seconds_per_s": 1000.0},
]}
# 100 s of speech in 25 utterances: per second of speech, partials 1 decode, 3 s of encoder
# audio, 10 tokens; finals 0.25 decodes, 2.5 s, 5 tokens
STT = {"languages": {"xx": {"speech_s": 100.0, "utterances": 25, "cost": {"totals": {
    "decodes": {"partial": 100, "final": 25},
    "encoder_s": {"partial": 300.0, "final": 250.0},
    "decoder_tokens": {"partial": 1000, "final": 500}}}}}}
PRICES = """
as_of = "2025-06"
source = "fixture"
hours_per_month = 730
[gpus.T4]
instance = "t"
on_demand_usd_per_gpu_hour = 0.5
[gpus.H200]
instance = "h"
on_demand_usd_per_gpu_hour = 2.0
spot_usd_per_gpu_hour = 1.0
"""


def _fixture(tmp_path: Path, stt: dict[str, Any] | None) -> tuple[Path, Path]:
    results = tmp_path / "results"
    results.mkdir()
    (results / "gpu.json").write_text(json.dumps(GPU))
    if stt is not None:
        (results / "stt.json").write_text(json.dumps(stt))
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    return results, prices


def test_stt_gpus_come_from_the_measured_proxies(tmp_path: Path) -> None:
    results, prices = _fixture(tmp_path, STT)
    m = capacity.model(capacity.Assumptions(sessions=10_000), results, prices)
    # 8000 s of speech a second; the encoder is half of a decode (0.16 of 0.32 s):
    # partial 0.5 * 3/30 + 0.5 * 10/40 = 0.175, final 0.5 * 2.5/30 + 0.5 * 5/40 = 0.1042
    assert m["stt_proxies"]["encoder_share"] == 0.5
    assert m["traffic"]["stt_decode_equivalents_per_s"] == round(8000 * (0.175 + 0.125 / 1.2), 1)
    stt = m["services"]["stt"]
    assert stt["gpus"] == 38  # 2233.3/s over 100/s * 0.6
    assert m["services"]["stt_finals_only"]["gpus"] == 14  # 833.3/s over 60/s
    assert stt["gpus_fixed_assumption"] == 234  # 2000 utterances/s * 7 decodes over 60/s
    assert m["services"]["mt"]["gpus"] == 34 and m["services"]["tts"]["gpus"] == 14
    assert m["total_gpus"] == 38 + 34 + 14
    costs = {r["gpu"]: r for r in m["cost"]["rows"]}
    assert costs["H200"]["on_demand_usd_per_month"] == 86 * 730 * 2
    assert costs["H200"]["spot_usd_per_month"] == 86 * 730
    assert costs["T4"]["spot_usd_per_month"] is None
    doc = capacity.document(m)
    assert "Total GPUs: 86." in doc
    assert "125560" in doc and "break-even" in doc and "25%" in doc  # a T4 at 0.5 / 2.0
    assert "10.8x" in doc  # 125,560 / 11,600


def test_without_proxies_stt_keeps_the_fixed_assumption(tmp_path: Path) -> None:
    results, prices = _fixture(tmp_path, None)
    m = capacity.model(capacity.Assumptions(sessions=10_000), results, prices)
    assert m["stt_proxies"] is None
    assert m["services"]["stt"]["gpus"] == m["services"]["stt"]["gpus_fixed_assumption"] == 234
    assert "fixed assumption, no cost proxies" in capacity.document(m)


def test_the_price_table_names_every_card_with_its_date() -> None:
    prices = capacity.load_prices()
    assert prices is not None and prices["as_of"]
    assert {"T4", "L4", "A10G", "H100", "H200"} <= set(prices["gpus"])
    for p in prices["gpus"].values():
        assert 0 < p["spot_usd_per_gpu_hour"] < p["on_demand_usd_per_gpu_hour"]
