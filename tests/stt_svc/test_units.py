"""Local agreement, hallucination guards, decode lanes and language codes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from dragoman.audio import decode_file
from dragoman.errors import InvalidArgument, ResourceExhausted
from stt_svc import coverage, guards
from stt_svc.agreement import LocalAgreement
from stt_svc.codecs import OggOpusDecoder, OggPackets
from stt_svc.engines.base import DecodeOptions, DecodeRequest, Transcription, WordTiming
from stt_svc.engines.fake import FakeEngine
from stt_svc.lanes import DecodeLane, Priority
from stt_svc.languages import base_language
from stt_svc.loaded import Models


def test_local_agreement_commits_what_two_hypotheses_share() -> None:
    la = LocalAgreement()
    assert la.update("to be", 9_600) == ("to be", "", 0.1)
    transcript, stable, stability = la.update("To be, or not", 19_200)
    assert (transcript, stable) == ("To be, or not", "To be,")
    assert stability == pytest.approx(0.1 + 0.8 * 2 / 4)
    # A later hypothesis that disagrees cannot take back the stable prefix.
    assert la.merge("Two bee or not to be") == "To be, or not to be"
    transcript, stable, _ = la.update("Two bee or knot", 28_800)
    assert (transcript, stable) == ("To be, or knot", "To be, or")


def test_local_agreement_prefix_only_grows() -> None:
    la, seen = LocalAgreement(), []
    for i, text in enumerate(["a b c", "a b x y", "a z", "a b x y z", "a b x y z w"]):
        transcript, stable, _ = la.update(text, 9_600 * (i + 1))
        assert transcript.startswith(stable)
        seen.append(stable)
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert seen[-1] == "a b x y z"


def test_local_agreement_stable_words_lie_in_the_older_hypothesis_audio() -> None:
    """Stable words were heard by both hypotheses, so in the shorter audio of the older one; the
    mark moves only when the stable prefix grows."""
    la = LocalAgreement()
    la.update("made famous", 8_000)
    assert la.stable_samples == 0
    la.update("made famous to", 16_000)
    assert (la.stable_prefix, la.stable_samples) == ("made famous", 8_000)
    la.update("made famous to four", 24_000)
    assert (la.stable_prefix, la.stable_samples) == ("made famous to", 16_000)
    la.update("made famous to foreigners", 32_000)  # "four" != "foreigners": no growth
    assert (la.stable_prefix, la.stable_samples) == ("made famous to", 16_000)


def test_local_agreement_holds_back_the_last_agreed_word() -> None:
    """The last word two hypotheses share is often cut off by the audio's end ("four" of
    "foreigners"): held back, the final can still read it whole."""
    la = LocalAgreement(holdback=1)
    la.update("made famous to four", 16_000)
    assert la.update("made famous to four", 24_000)[1] == "made famous to"
    assert la.update("made famous to foreigners", 32_000)[1] == "made famous to"
    assert la.update("made famous to foreigners by", 40_000)[1] == "made famous to"
    assert la.update("made famous to foreigners by", 48_000)[1] == "made famous to foreigners"
    assert la.stable_samples == 40_000


def test_local_agreement_waits_for_speech_after_a_word() -> None:
    """Two readings agree on "a deux vrais" for "ne devrait", heard with nothing after it: it
    stays unstable until the older agreeing reading heard right_context samples past it."""
    la = LocalAgreement(right_context=8_000)
    la.update("on a deux vrais", 32_000, [8_000, 26_000, 29_000, 31_000])
    # both read "on a deux vrais", but the older heard 8_000 samples past "on" alone
    assert la.update("on a deux vrais pendant", 40_000,
                     [8_000, 26_000, 28_000, 30_000, 39_000])[1] == "on"
    assert la.stable_samples == 32_000
    assert la.update("on a deux vrais pendant", 48_000,
                     [8_000, 26_000, 28_000, 30_000, 39_000])[1] == "on a deux vrais"
    # a reading without one time per word is not held to it
    assert la.update("on a deux vrais pendant par", 56_000)[1] == "on a deux vrais pendant"


def test_local_agreement_of_three_hypotheses() -> None:
    la = LocalAgreement(hypotheses=3)
    la.update("a b", 8_000)
    assert la.update("a b c", 16_000)[1] == ""  # two hypotheses are not enough
    assert la.update("a x c d", 24_000)[1] == "a"
    assert la.stable_samples == 8_000  # the oldest of the three heard it
    assert la.update("a b c d e", 32_000)[1] == "a"  # "a x" and "a b" still disagree
    assert la.update("a b c d e f", 40_000)[1] == "a"
    assert la.update("a b c d e f g", 48_000)[1] == "a b c d e"


def test_local_agreement_rejects_a_rule_that_agrees_on_nothing() -> None:
    with pytest.raises(ValueError):
        LocalAgreement(hypotheses=1)
    with pytest.raises(ValueError):
        LocalAgreement(holdback=-1)
    with pytest.raises(ValueError):
        LocalAgreement(right_context=-1)


def _result(
    text: str, no_speech_prob: float = 0.0, avg_logprob: float = 0.0, compression_ratio: float = 1.0
) -> Transcription:
    return Transcription(
        text=text, language="en", language_probability=1.0, avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob, compression_ratio=compression_ratio,
    )


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (_result("Hello there, how are you?"), None),
        (_result(""), "empty"),
        (_result("Thank you.", no_speech_prob=0.9, avg_logprob=-1.2), "no speech"),
        (_result("Thank you.", no_speech_prob=0.76, avg_logprob=-0.86), "no speech"),
        (_result("you", no_speech_prob=0.55, avg_logprob=-1.6), "no speech"),
        (_result("Hello.", no_speech_prob=0.4, avg_logprob=-0.95), None),
        (_result("I'm sorry.", no_speech_prob=0.48, avg_logprob=-1.93), "no speech"),
        (_result("von", no_speech_prob=0.2, avg_logprob=-2.69), None),
        (_result("la la la", compression_ratio=3.1), "compression"),
        (_result("I'm going to go, I'm going to go, I'm going to go, I'm going to go"), "loop"),
        (_result("no no no no no no"), "loop"),
        (_result(" ".join(["word"] * 1 + [f"x{i}" for i in range(40)])), "words in"),
    ],
)
def test_guards(result: Transcription, reason: str | None) -> None:
    got = guards.rejection(result, audio_s=2.0)
    assert (got is None) if reason is None else (got is not None and reason in got)


def test_guard_rejections_have_a_kind() -> None:
    got = guards.rejection(_result("Thank you.", no_speech_prob=0.9, avg_logprob=-1.2), 2.0)
    assert got is not None and got.kind == "no_speech"


def test_words_already_heard_as_speech_overrule_the_no_speech_check_only() -> None:
    """The final of es gen-000 at -12 dB: a confident reading (logprob -0.25) with
    no_speech_prob 0.65 after partials had agreed on its first words."""
    quiet = _result("que ganó popularidad entre los extranjeros", no_speech_prob=0.65,
                    avg_logprob=-0.25)
    assert "no speech" in (guards.rejection(quiet, 10.0) or "")
    assert guards.rejection(quiet, 10.0, speech_heard=True) is None
    looped = _result("no no no no no no", no_speech_prob=0.65)
    assert "loop" in (guards.rejection(looped, 2.0, speech_heard=True) or "")
    assert "empty" in (guards.rejection(_result(""), 2.0, speech_heard=True) or "")


def _timed(*spans: tuple[str, float, float]) -> tuple[WordTiming, ...]:
    return tuple(WordTiming(w, a, b, 0.9) for w, a, b in spans)


def test_gaps_are_speech_without_words() -> None:
    words = _timed(("a", 1.2, 1.5), ("b", 1.6, 2.0), ("c", 3.5, 4.0))
    assert coverage.gaps(words, 4.5) == [coverage.Gap(0.0, 1.2, 0), coverage.Gap(2.0, 3.5, 2)]
    assert coverage.gaps(words, 5.5) == [
        coverage.Gap(0.0, 1.2, 0), coverage.Gap(2.0, 3.5, 2), coverage.Gap(4.0, 5.5, 3)]
    assert coverage.gaps((), 0.8) == [] and coverage.gaps((), 2.0) == [coverage.Gap(0.0, 2.0, 0)]


def test_splice_moves_words_and_drops_one_heard_twice() -> None:
    words = _timed(("one", 0.0, 0.5), ("two,", 0.5, 1.0), ("five", 4.0, 4.5))
    gap = coverage.Gap(1.0, 4.0, 2)
    found = _timed(("Two", 0.0, 0.1), ("three", 0.2, 1.0), ("four", 1.0, 2.0), ("Five.", 2.9, 3.0))
    spliced = coverage.splice(words, gap, found, 0.9)
    assert [w.word for w in spliced] == ["one", "two,", "three", "four", "five"]
    assert [w.start_s for w in spliced] == [0.0, 0.5, 1.1, 1.9, 4.0]
    assert coverage.text_of(spliced) == "one two, three four five"


def test_natural_repetition_is_not_a_loop() -> None:
    assert not guards.has_repetition_loop("no no no I said".split(), 3)
    assert not guards.has_repetition_loop("very very very good".split(), 3)


@pytest.mark.parametrize(
    ("tag", "base"), [("en", "en"), ("en-US", "en"), ("pt-BR", "pt"), ("es-419", "es"),
                      ("zh-Hant-TW", "zh"), ("iw", "he"), ("PT", "pt"), ("en_US", "en")],
)
def test_base_language(tag: str, base: str) -> None:
    assert base_language(tag) == base


@pytest.mark.parametrize("tag", ["english", "e", "en--US", "en-", "12"])
def test_malformed_language_tags(tag: str) -> None:
    with pytest.raises(InvalidArgument, match="BCP-47"):
        base_language(tag)


def test_models_pick_the_most_specialised_model() -> None:
    multi = FakeEngine(name="multi", languages=("en", "es", "pt"))
    english = FakeEngine(name="english", languages=("en",))
    models = Models([multi, english], max_pending=4)
    assert models.for_language("en").capabilities.name == "english"
    assert models.for_language("es").capabilities.name == "multi"
    assert models.for_language(None).capabilities.name == "multi"
    assert models.resolve("pt-BR") == "pt" and models.resolve("") is None
    with pytest.raises(InvalidArgument, match="'de' is not supported; supported: en, es, pt"):
        models.resolve("de")
    only_english = Models([english], max_pending=4)
    with pytest.raises(InvalidArgument, match="automatic language detection"):
        only_english.resolve("")


class GatedBatches:
    """A batch function that records each batch and holds the one holding `gated` until set."""

    def __init__(self, gated: str = "") -> None:
        self.gate = threading.Event()
        self.gated = gated
        self.batches: list[list[str]] = []

    def __call__(self, requests: list[str]) -> list[str]:
        if self.gated in requests:
            self.gate.wait(5)
        if "bad" in requests:
            raise RuntimeError("decoder failed")
        self.batches.append(list(requests))
        return [r.upper() for r in requests]


async def test_lane_batches_what_is_queued_finals_first() -> None:
    run = GatedBatches(gated="p0")
    lane = DecodeLane("test", run, max_pending=8, max_batch=2)
    try:
        running = lane.submit("p0", Priority.PARTIAL)
        await asyncio.sleep(0.05)  # p0 is on the thread now, alone: nothing else was queued
        partials = {name: lane.submit(name, Priority.PARTIAL) for name in ("p1", "p2", "p3")}
        finals = {name: lane.submit(name, Priority.FINAL) for name in ("f1", "f2", "f3")}
        assert lane.depth == 6
        # the queue depth Prometheus reads is the lane's
        assert REGISTRY.get_sample_value("dragoman_stt_queue_depth", {"lane": "test"}) == 6
        partials["p1"].cancel()  # withdrawn before it started: never runs
        run.gate.set()
        assert (await finals["f1"]).value == "F1"
        assert (await partials["p3"]).value == "P3"
        assert (await running).value == "P0"
        # Finals first, two at a time, never mixed with partials; p2 and p3 share a call.
        assert run.batches == [["p0"], ["f1", "f2"], ["f3"], ["p2", "p3"]]
        assert (await finals["f2"]).batch_size == 2 and (await finals["f3"]).batch_size == 1
        assert lane.calls == 4 and lane.depth == 0
        assert REGISTRY.get_sample_value("dragoman_stt_queue_depth", {"lane": "test"}) == 0
    finally:
        run.gate.set()
        await lane.close()


async def test_lane_overload_is_resource_exhausted() -> None:
    run = GatedBatches(gated="hold")
    lane = DecodeLane("test", run, max_pending=2, max_batch=4)
    try:
        lane.submit("hold", Priority.PARTIAL)
        await asyncio.sleep(0.05)
        lane.submit("a", Priority.PARTIAL)
        withdrawn = lane.submit("b", Priority.PARTIAL)
        with pytest.raises(ResourceExhausted, match="overloaded"):
            lane.submit("c", Priority.FINAL)
        withdrawn.cancel()  # a withdrawn job frees its place
        final = lane.submit("c", Priority.FINAL)
        run.gate.set()
        assert (await final).value == "C"
    finally:
        run.gate.set()
        await lane.close()


async def test_lane_retries_a_failed_batch_one_by_one() -> None:
    run = GatedBatches(gated="hold")
    lane = DecodeLane("test", run, max_pending=8, max_batch=4)
    try:
        lane.submit("hold", Priority.FINAL)
        await asyncio.sleep(0.05)
        bad = lane.submit("bad", Priority.FINAL)
        good = lane.submit("good", Priority.FINAL)
        run.gate.set()
        with pytest.raises(RuntimeError, match="decoder failed"):
            await bad
        assert (await good).value == "GOOD"
        assert run.batches == [["hold"], ["good"]]
        assert (await lane.submit("next", Priority.FINAL)).value == "NEXT"
    finally:
        run.gate.set()
        await lane.close()


async def test_lane_gives_partials_at_most_their_share_of_the_model() -> None:
    started: list[tuple[list[str], float]] = []

    def run(requests: list[str]) -> list[str]:
        started.append((list(requests), time.perf_counter()))
        if requests[0].startswith("p"):
            time.sleep(0.2)
        return requests

    lane = DecodeLane("test", run, max_pending=8, max_batch=4, partial_share=0.5)
    try:
        first = await lane.submit("p1", Priority.PARTIAL)
        ended = time.perf_counter()
        later = [lane.submit(name, Priority.PARTIAL) for name in ("p2", "p3")]
        final = lane.submit("f1", Priority.FINAL)  # finals do not rest
        await asyncio.gather(final, *later)
    finally:
        await lane.close()
    assert [names for names, _ in started] == [["p1"], ["f1"], ["p2", "p3"]]
    assert first.seconds >= 0.2
    assert started[1][1] - ended < 0.1  # the final went at once, the partials ...
    assert started[2][1] - ended >= first.seconds * 0.95  # ... after resting as long as p1 ran


def test_fake_engine_batch_equals_single_decodes() -> None:
    engine = FakeEngine()
    audio = np.full(16_000, 0.1, np.float32)
    requests = [
        DecodeRequest(audio, DecodeOptions(language="en")),
        DecodeRequest(audio[:8000], DecodeOptions(prefix="alpha", word_timestamps=True)),
    ]
    batched = engine.transcribe_batch(requests)
    assert batched == [engine.transcribe(r.audio, r.options) for r in requests]
    assert engine.batches == [2, 1, 1]
    assert [c.batch for c in engine.calls] == [0, 0, 1, 2]


def test_ogg_demuxer_and_opus_decoder_ignore_chunking(fleurs: Path) -> None:
    data = (fleurs / "fleurs-en-004.ogg").read_bytes()
    whole = OggPackets().feed(data)
    assert whole[0].startswith(b"OpusHead") and whole[1].startswith(b"OpusTags")
    demux, pieces = OggPackets(), []
    for i in range(0, len(data), 333):
        pieces += demux.feed(data[i : i + 333])
    assert pieces == whole
    decoded = OggOpusDecoder()
    samples = np.concatenate([decoded.decode(data[i : i + 1000]) for i in range(0, len(data), 1000)]
                             + [decoded.flush()])
    reference = decode_file(fleurs / "fleurs-en-004.ogg")
    assert abs(len(samples) - len(reference)) < 0.05 * 16_000
    assert samples.dtype == np.float32 and np.abs(samples).max() > 0.001


def test_ogg_demuxer_rejects_other_data() -> None:
    with pytest.raises(InvalidArgument, match="not an Ogg stream"):
        OggPackets().feed(b"ID3" + b"\0" * 40)
    with pytest.raises(InvalidArgument, match="must begin with an OpusHead"):
        data = (b"OggS\0\2" + b"\0" * 20) + bytes([1, 5]) + b"hello"
        OggOpusDecoder().decode(data)


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("Fue tanta la cantidad de gente. Fue tanta la cantidad de gente. F", 6),
        ("one two three four five one two three four five", 5),
        ("I said no, I said no to him", None),  # short phrases do repeat in speech
        ("the cat sat on the mat the cat sat on", None),
    ],
)
def test_repeated_tail(text: str, cut: int | None) -> None:
    assert guards.repeated_tail(text.split()) == cut
