"""Stream plumbing over real gRPC with the fake engine (and the real Silero VAD)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from dragoman import config, rpc
from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc
from stt_svc import server, stream
from stt_svc.engines.base import WordTiming
from stt_svc.engines.fake import SCRIPT, FakeCall, FakeEngine
from tests.conftest import started
from tests.stt_svc.conftest import (
    Request,
    clip,
    events,
    expect_error,
    finals,
    partials,
    recognize,
    requests,
    silence,
    stream_config,
    with_stt,
)

STARTED = stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED
ENDED = stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH


async def fake_stub(
    settings: config.Settings, engine: FakeEngine, **changes: Any
) -> AsyncIterator[stt_pb2_grpc.SpeechToTextServiceStub]:
    service = await server.create(with_stt(settings, **changes), engine=engine)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            yield stt_pb2_grpc.SpeechToTextServiceStub(channel)


async def _paced_requests(items: list[Any], pause_s: float) -> AsyncIterator[Any]:
    for item in items:
        yield item
        await asyncio.sleep(pause_s)


def _is_final(call: FakeCall) -> bool:
    """Finals are decoded in the engine's own windows, partials in PARTIAL_WINDOW_STEP_S."""
    return call.options.window_step_s is None


@pytest.fixture
def speech(fleurs: Path) -> np.ndarray:
    """A 4.3 s English sentence, with a little silence before and 2 s after."""
    return np.concatenate([silence(0.3), clip(fleurs, "fleurs-en-004"), silence(2.0)])


async def test_events_and_final_in_order(settings: config.Settings, speech: np.ndarray) -> None:
    engine = FakeEngine()
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config("en-US"), speech))
    assert events(responses)[:2] == [(STARTED, 0), (ENDED, 0)]
    kinds = [r.WhichOneof("response") for r in responses]
    assert kinds[:3] == ["speech_event", "speech_event", "result"]  # started, ended, final
    (final, *_) = finals(responses)
    assert final.transcript.startswith("alpha bravo charlie")
    assert final.language_code == "en-US" and final.language_probability == 1.0
    assert final.stability == 1.0 and final.stable_prefix == final.transcript
    start_s = final.start_offset.ToNanoseconds() / 1e9
    end_s = final.end_offset.ToNanoseconds() / 1e9
    assert 0.0 <= start_s < 0.6 and 4.0 < end_s < 5.0
    assert [w.word for w in final.words] == final.transcript.split()
    assert all(start_s <= w.start_offset.ToNanoseconds() / 1e9 <= end_s + 1 for w in final.words)
    assert final.confidence == pytest.approx(0.9 * (1 - 0.05))  # words x speech probability
    assert not final.low_confidence
    assert engine.calls[-1].options.word_timestamps  # finals are aligned


async def test_final_does_not_wait_behind_queued_partials(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Audio arrives at once; decodes are slow: end of speech -> exactly one more decode."""
    engine = FakeEngine(delay_s=1.0)
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config(interim=True), speech))
    assert len(finals(responses)) == 1
    # The first partial was running when the utterance ended; nothing was queued after it.
    assert [_is_final(c) for c in engine.calls] == [False, True]
    partial_call, final_call = engine.calls
    assert final_call.started_s >= partial_call.finished_s
    assert partials(responses) == []  # the stale partial's result is dropped


async def test_stable_prefix_only_grows(settings: config.Settings, speech: np.ndarray) -> None:
    engine = FakeEngine(ms_per_word=200)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300):
        # 100 ms chunks every 20 ms: 5x real time, slow enough for several partials.
        responses = await recognize(stub, requests(stream_config(interim=True), speech), 0.02)
    results = [r.result for r in responses if r.HasField("result")]
    assert len(partials(responses)) >= 3 and results[-1].is_final
    stable = ""
    for result in results:
        assert result.stable_prefix.startswith(stable)  # never shrinks
        assert result.transcript.startswith(result.stable_prefix)
        assert result.transcript.startswith(stable)
        stable = result.stable_prefix
    assert partials(responses)[-1].stable_prefix  # something became stable
    # a partial carries no confidence: it is scored once final
    assert all((p.confidence, p.low_confidence) == (0.0, False) for p in partials(responses))
    # Later decodes were forced to continue the stable prefix.
    assert any(c.options.prefix for c in engine.calls)


async def _partials_in_mode(settings: config.Settings, speech: np.ndarray,
                            mode: int) -> list[stt_pb2.RecognitionResult]:
    """The partials of `speech` with partials every 900 ms, or every 300 ms when early."""
    cfg = stream_config(interim=True)
    cfg.partial_mode = mode  # type: ignore[assignment]
    async for stub in fake_stub(settings, FakeEngine(ms_per_word=200), partial_interval_ms=900,
                                early_partial_interval_ms=300):
        responses = await recognize(stub, requests(cfg, speech), 0.02)
    assert finals(responses)
    found = partials(responses)
    assert len(found) >= 3 and {p.utterance_index for p in found} == {0}
    return found


def _gaps_s(results: list[stt_pb2.RecognitionResult]) -> list[float]:
    """Audio between consecutive partials."""
    ends = [r.end_offset.ToNanoseconds() / 1e9 for r in results]
    return [b - a for a, b in itertools.pairwise(ends)]


@pytest.mark.parametrize("mode", [stt_pb2.PARTIAL_MODE_UNSPECIFIED, stt_pb2.PARTIAL_MODE_STEADY])
async def test_steady_partials_hold_back_the_last_agreed_word(
    settings: config.Settings, speech: np.ndarray, mode: int
) -> None:
    """The fake's readings grow a word at a time, so two partials agree on all of the
    earlier one: steady partials make all but its last word stable, at stt.partial_interval_ms,
    and of those only the words the earlier one heard AGREEMENT_RIGHT_CONTEXT_S after (the
    fake times a word over its own 200 ms)."""
    found = await _partials_in_mode(settings, speech, mode)
    assert min(_gaps_s(found)) >= 0.9 - 1e-6
    for before, after in itertools.pairwise(found):
        heard_s = (before.end_offset.ToNanoseconds() - before.start_offset.ToNanoseconds()) / 1e9
        with_context = math.floor((heard_s - stream.AGREEMENT_RIGHT_CONTEXT_S) / 0.2 + 1e-6)
        words = before.transcript.split()
        assert after.stable_prefix.split() == words[: min(len(words) - 1, with_context)]
        assert with_context < len(words) - 1  # the right context, not the holdback, decided


async def test_early_partials_come_more_often_and_hold_back_nothing(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """PARTIAL_MODE_EARLY (simultaneous mode): partials at stt.early_partial_interval_ms, and
    every word two of them agree on is stable at once."""
    found = await _partials_in_mode(settings, speech, stt_pb2.PARTIAL_MODE_EARLY)
    gaps = _gaps_s(found)
    assert min(gaps) >= 0.3 - 1e-6 and min(gaps) < 0.9, gaps
    for before, after in itertools.pairwise(found):
        assert after.stable_prefix.split() == before.transcript.split()


def _cost(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(f"dragoman_stt_{name}_total", {"kind": kind}) or 0.0


async def test_decodes_are_counted_by_kind_with_their_cost(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Every decode that ran is counted as partial or final with the encoder seconds and
    decoder tokens it cost; partials encode short windows of the audio so far."""
    names = ("decodes", "encoder_audio_seconds", "decoder_tokens")
    before = {(n, k): _cost(n, k) for n in names for k in ("partial", "final")}
    engine = FakeEngine(ms_per_word=200)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300):
        responses = await recognize(stub, requests(stream_config(interim=True), speech), 0.02)
    assert partials(responses) and finals(responses)
    grew = {key: _cost(*key) - value for key, value in before.items()}
    calls = {"partial": [c for c in engine.calls if not _is_final(c)],
             "final": [c for c in engine.calls if _is_final(c)]}
    assert all(c.options.window_step_s == stream.PARTIAL_WINDOW_STEP_S for c in calls["partial"])
    assert all(c.options.word_timestamps for c in calls["final"])
    for kind, made in calls.items():
        assert made and grew[("decodes", kind)] == len(made)
        # the fake engine's "encoder" runs over exactly the audio it is given
        assert grew[("encoder_audio_seconds", kind)] == pytest.approx(
            sum(c.audio_samples for c in made) / 16_000)
        assert grew[("decoder_tokens", kind)] > 0


async def test_half_close_flushes_speech_in_progress(
    settings: config.Settings, fleurs: Path
) -> None:
    audio = clip(fleurs, "fleurs-en-004")[: 16_000 * 2]  # cut mid-sentence, no silence
    async for stub in fake_stub(settings, FakeEngine()):
        responses = await recognize(stub, requests(stream_config(), audio))
    assert events(responses) == [(STARTED, 0), (ENDED, 0)]
    assert finals(responses)[0].transcript


async def test_idle_stream_is_flushed_and_closed(
    settings: config.Settings, fleurs: Path
) -> None:
    audio = clip(fleurs, "fleurs-en-004")[: 16_000 * 2]
    hang = asyncio.Event()

    async def client() -> AsyncIterator[Request]:
        for item in requests(stream_config(), audio):
            yield item
        await hang.wait()  # never half-closes

    async for stub in fake_stub(settings, FakeEngine(), idle_timeout_s=0.5):
        call = stub.StreamingRecognize(client())
        responses = [r async for r in call]
        assert await call.code() == grpc.StatusCode.OK
    assert events(responses) == [(STARTED, 0), (ENDED, 0)]
    assert finals(responses)[0].transcript


async def test_stream_idle_before_config_is_closed(settings: config.Settings) -> None:
    hang = asyncio.Event()

    async def client() -> AsyncIterator[Request]:
        await hang.wait()
        yield Request(config=stream_config())

    async for stub in fake_stub(settings, FakeEngine(), idle_timeout_s=0.3):
        call = stub.StreamingRecognize(client())
        assert [r async for r in call] == []
        assert await call.code() == grpc.StatusCode.OK


async def test_automatic_detection_locks_the_language(
    settings: config.Settings, speech: np.ndarray
) -> None:
    engine = FakeEngine(detected_language="es", detected_probability=0.93)
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config(""), np.tile(speech, 2)))
    first, second = finals(responses)
    assert (first.language_code, second.language_code) == ("es", "es")
    assert first.language_probability == pytest.approx(0.93)
    assert [c.options.language for c in engine.calls] == [None, "es"]


async def test_hotwords_and_resampling(settings: config.Settings, fleurs: Path) -> None:
    audio = np.concatenate([clip(fleurs, "fleurs-en-004", 48_000), silence(1.0, 48_000)])
    engine = FakeEngine()
    cfg = stream_config("en", 48_000, hotwords=["Sintra", " ", "dragoman"])
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(cfg, audio, 48_000))
    assert finals(responses)
    assert engine.calls[0].options.hotwords == ("Sintra", "dragoman")
    # 4.3 s of 48 kHz audio reached the engine as 16 kHz samples.
    assert 3.5 * 16_000 < engine.calls[0].audio_samples < 5.5 * 16_000


async def test_too_many_streams(settings: config.Settings, speech: np.ndarray) -> None:
    release = asyncio.Event()

    async def holding() -> AsyncIterator[Request]:
        yield Request(config=stream_config())
        await release.wait()

    async for stub in fake_stub(settings, FakeEngine(), max_streams=1):
        first = stub.StreamingRecognize(holding())
        await asyncio.sleep(0.2)
        error = await expect_error(stub, [Request(config=stream_config())])
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many concurrent recognition streams (limit 1)" in (error.details() or "")
        release.set()
        assert [r async for r in first] == []
        assert finals(await recognize(stub, requests(stream_config(), speech)))


def _finals_of(responses: list[stt_pb2.StreamingRecognizeResponse]) -> list[tuple[str, int]]:
    return [(f.transcript, len(f.words)) for f in finals(responses)]


async def test_concurrent_streams_share_model_calls(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Finals that queue while the model is busy go through it together, with the same results."""
    engine = FakeEngine(delay_s=0.2)
    clips = [speech, speech[8000:], np.concatenate([speech, speech]), speech[:-8000]]
    async for stub in fake_stub(settings, engine):
        alone = [await recognize(stub, requests(stream_config(), c)) for c in clips]
        assert max(engine.batches) == 1  # one stream has one decode in the lane at a time
        engine.calls.clear()
        engine.batches.clear()
        together = await asyncio.gather(
            *(recognize(stub, requests(stream_config(), c)) for c in clips)
        )
    assert [_finals_of(r) for r in together] == [_finals_of(r) for r in alone]
    assert len(engine.batches) < len(engine.calls) == 5  # fewer model calls than decodes
    assert max(engine.batches) > 1


async def test_chunk_flood_is_resource_exhausted(
    settings: config.Settings, speech: np.ndarray
) -> None:
    async def limited(per_s: float) -> rpc.Service:
        limits = dataclasses.replace(
            server.stream_limits(settings.stt), max_chunks_per_s=per_s, burst_chunks=20
        )
        return await server.create(settings, engine=FakeEngine(), limits=limits)

    async for address in started(await limited(10.0)):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            # Real time (10 chunks a second) after a burst of 20 is fine...
            paced = requests(stream_config(), speech[: 16_000 * 3])
            responses = await recognize(stub, paced[:21]) + await recognize(stub, paced, 0.1)
            assert finals(responses)
    # ... and two more at once is a flood (sending no more after it: grpc/grpc#36066). At 1
    # a second, 22 chunks sent at once trip the bucket unless the last comes 2 s after the
    # first; at 10 a second the old flood's 21st had to come within 0.1 s, and once did not.
    async for address in started(await limited(1.0)):
        async with rpc.channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            flood = requests(stream_config(), speech[: 16_000 * 3])[:23]
            error = await expect_error(stub, flood)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "audio chunks arrive faster than 1 a second after a burst of 20" in (
        error.details() or ""
    )
    retry_after = dict(error.trailing_metadata() or ())["retry-after"]
    assert 0.0 < float(retry_after) <= 1.0 + 1e-3


async def test_final_decode_starts_before_the_endpoint(settings: config.Settings, speech: np.ndarray) -> None:
    """The final's input is known once the trailing silence covers the tail: its decode starts
    then, before END_OF_SPEECH, and is the only final decode of the utterance."""
    engine = FakeEngine(delay_s=0.3)
    received: list[tuple[float, Any]] = []
    async for stub in fake_stub(settings, engine):
        # 100 ms chunks every 25 ms: the 150 ms between "input known" and the endpoint last ~40 ms.
        call = stub.StreamingRecognize(_paced_requests(requests(stream_config("en"), speech), 0.025))
        async for response in call:
            received.append((time.perf_counter(), response))
    responses = [r for _, r in received]
    (final,) = finals(responses)
    assert final.transcript.startswith("alpha bravo charlie")
    ended_at = next(t for t, r in received if r.HasField("speech_event") and r.speech_event.type == ENDED)
    final_calls = [c for c in engine.calls if _is_final(c)]
    assert len(final_calls) == 1, final_calls
    assert final_calls[0].started_s < ended_at  # decoding before the endpoint fired


async def test_speech_after_a_short_pause_withdraws_the_early_final(
    settings: config.Settings, fleurs: Path
) -> None:
    """A pause longer than the tail but shorter than the endpoint: the early decode is dropped and
    the final covers all the speech."""
    sentence = clip(fleurs, "fleurs-en-004")
    audio = np.concatenate([silence(0.3), sentence, silence(0.25), sentence, silence(2.5)])
    engine = FakeEngine(delay_s=0.05)
    async for stub in fake_stub(settings, engine, max_utterance_s=15.0):  # no cut at 8 s here
        responses = await recognize(
            stub, requests(stream_config("en", endpoint_ms=1500), audio), 0.04)
    (final,) = finals(responses)
    end_s = final.end_offset.ToNanoseconds() / 1e9
    assert end_s > 0.3 + 2 * len(sentence) / 16_000 - 0.5, end_s
    final_calls = [c for c in engine.calls if _is_final(c)]
    assert len(final_calls) >= 2 and final_calls[0].audio_samples < len(sentence)  # withdrawn
    assert final_calls[-1].audio_samples > 1.5 * len(sentence)  # both sentences
    assert len(final.transcript.split()) > len(sentence) / 16_000 / 0.3 * 1.5  # words of both


async def test_a_cut_for_length_keeps_the_stable_words_in_their_utterance(
    settings: config.Settings, fleurs: Path
) -> None:
    """Partials heard past the pause an over-long utterance would be cut at; the cut moves after
    the audio of the stable words, so no final is forced to words its audio does not hold and
    the next utterance does not hear them again. (The fake engine hears one word per 300 ms.)"""
    sentence = clip(fleurs, "fleurs-en-004")
    audio = np.concatenate([silence(0.3), sentence[: 3 * 16_000], silence(0.25), sentence,
                            silence(0.25), sentence[: 2 * 16_000], silence(2.5)])
    engine = FakeEngine(delay_s=0.02)
    async for stub in fake_stub(settings, engine, max_utterance_s=5.0):
        responses = await recognize(
            stub, requests(stream_config("en", interim=True, endpoint_ms=1000), audio), 0.04)
    assert len(finals(responses)) >= 2 and partials(responses)
    final_calls = [c for c in engine.calls if _is_final(c)]
    for call in final_calls:
        assert len(call.options.prefix.split()) <= call.audio_samples // (16_000 * 300 // 1000)
    # no final has more words than its audio (with its 150 ms tail) holds
    for final in finals(responses):
        heard_s = (final.end_offset.ToNanoseconds() - final.start_offset.ToNanoseconds()) / 1e9
        assert len(final.transcript.split()) <= (heard_s + 0.15) // 0.3 + 1


def _unrecognised_s(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "dragoman_stt_unrecognised_speech_seconds_total", {"reason": reason})
    return value or 0.0


async def test_speech_a_decode_leaves_out_is_decoded_again(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """A decode that ends early (6 words, 1.8 s, of a 4.3 s sentence) leaves speech without
    words: the rest is decoded alone, without the forced prefix, and its words follow."""
    settings = dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, redecode_gaps=True))
    engine = FakeEngine(max_words=6)
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config("en"), speech))
    (final,) = finals(responses)
    words = final.transcript.split()
    assert words[:6] == SCRIPT[:6] and len(words) == 12, words
    assert [w.word for w in final.words] == words
    starts = [w.start_offset.ToNanoseconds() for w in final.words]
    assert starts == sorted(starts)
    first, again = [c for c in engine.calls if _is_final(c)]
    assert again.options.prefix == "" and again.audio_samples < first.audio_samples - 16_000


async def test_speech_left_without_words_is_counted(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Words for 0.6 s, then for 0.6 s more after the re-decode: the ~2 s left are counted."""
    before = _unrecognised_s("uncovered")
    settings = dataclasses.replace(settings, stt=dataclasses.replace(settings.stt, redecode_gaps=True))
    engine = FakeEngine(max_words=2)
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config("en"), speech))
    (final,) = finals(responses)
    assert len(final.transcript.split()) == 4
    assert 1.5 < _unrecognised_s("uncovered") - before < 3.5


@pytest.mark.parametrize("redecode", [True, False], ids=["redecoded", "off"])
async def test_a_final_cut_short_by_its_forced_prefix_is_decoded_again(
    settings: config.Settings, speech: np.ndarray, redecode: bool
) -> None:
    """Decodes forced to start with the stable prefix stop at 3 words: the 4.3 s final has
    under a word a second, so it is decoded again without the prefix, and that reading, with
    the stable words the stream already sent in front, is the final. (The fake's words leave
    the rest of the audio without words, which the gap re-decode would fill: off here.)"""
    settings = dataclasses.replace(
        settings, stt=dataclasses.replace(settings.stt, redecode_sparse=redecode,
                                          redecode_gaps=False))
    replaced = REGISTRY.get_sample_value(
        "dragoman_stt_sparse_finals_total", {"outcome": "replaced"}) or 0.0
    engine = FakeEngine(ms_per_word=200, prefixed_max_words=3)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300):
        # 5x real time, slow enough for partials to agree on a stable prefix
        responses = await recognize(stub, requests(stream_config("en", interim=True), speech), 0.02)
    (final,) = finals(responses)
    stable = max((p.stable_prefix for p in partials(responses)), key=len)
    assert stable and final.transcript.startswith(stable)  # the sent prefix never changes
    finals_decoded = [c for c in engine.calls if _is_final(c)]
    assert finals_decoded[0].options.prefix  # the first reading was forced
    now = REGISTRY.get_sample_value("dragoman_stt_sparse_finals_total", {"outcome": "replaced"})
    if redecode:
        assert len(final.transcript.split()) >= 18, final.transcript  # 4.3 s at 200 ms a word
        assert finals_decoded[-1].options.prefix == ""
        assert finals_decoded[-1].audio_samples == finals_decoded[0].audio_samples
        assert now == replaced + 1
    else:
        assert len(final.transcript.split()) <= 3 and len(finals_decoded) == 1


async def test_a_final_of_words_partials_agreed_on_is_not_dropped_as_no_speech(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Whisper's no-speech probability rises on quiet speech: decodes forced with the stable
    prefix say 0.65 here. The partials that agreed on those words heard speech, so the final
    keeps its words; before, it was dropped and only the stable prefix was sent."""
    engine = FakeEngine(ms_per_word=200, prefixed_no_speech_prob=0.65)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300):
        responses = await recognize(stub, requests(stream_config("en", interim=True), speech), 0.02)
    (final,) = finals(responses)
    stable = max((p.stable_prefix for p in partials(responses)), key=len)
    assert stable and final.transcript.startswith(stable)
    assert len(final.transcript.split()) >= 18, final.transcript  # 4.3 s at 200 ms a word
    assert len(final.transcript) > len(stable)
    assert [w.word for w in final.words] == final.transcript.split()


async def test_a_dropped_utterance_is_counted(settings: config.Settings, speech: np.ndarray) -> None:
    """The engine hears nothing in speech the VAD found: no final text, its seconds counted."""
    before = _unrecognised_s("empty")
    engine = FakeEngine(floor_rms=10.0)
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config("en"), speech))
    assert [f.transcript for f in finals(responses)] == [""]
    assert 3.5 < _unrecognised_s("empty") - before < 5.0


async def test_a_final_hears_the_end_of_the_previous_utterance(
    settings: config.Settings, fleurs: Path
) -> None:
    """Two utterances 0.6 s apart: the second's decode gets the end of the first's audio before
    its own, with the first's words there as its prefix, and its final keeps only its own."""
    sentence = clip(fleurs, "fleurs-en-004")
    audio = np.concatenate([silence(0.3), sentence, silence(0.6), sentence, silence(2.0)])
    engine = FakeEngine()
    async for stub in fake_stub(settings, engine):
        responses = await recognize(stub, requests(stream_config("en"), audio))
    results = finals(responses)
    assert len(results) >= 2
    last = [c for c in engine.calls if _is_final(c)][-1]
    context = last.options.prefix.split()
    assert context and results[-2].transcript.split()[-len(context):] == context
    own = results[-1].end_offset.ToNanoseconds() - results[-1].start_offset.ToNanoseconds()
    assert last.audio_samples > own * 16_000 / 1e9 + 16_000  # >= 1 s of the previous one
    words = results[-1].transcript.split()
    assert words[0] == SCRIPT[len(context) % len(SCRIPT)]  # the words after the context
    start = results[-1].start_offset.ToNanoseconds()
    assert all(w.start_offset.ToNanoseconds() >= start for w in results[-1].words)


async def test_a_final_decodes_only_the_audio_after_its_older_stable_words(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """With stt.final_context_s 1.0 the final's decode starts a second before the end of the
    last stable word: the stable words before that are kept as the partials timed them, and
    the ones after are forced, so that the decode hears them as context. (The fake engine
    hears one word per 200 ms here, each timed over its own 200 ms.)"""
    engine = FakeEngine(ms_per_word=200)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300, final_context_s=1.0):
        responses = await recognize(stub, requests(stream_config(interim=True), speech), 0.02)
    (final,) = finals(responses)
    stable = partials(responses)[-1].stable_prefix.split()
    assert len(stable) >= 8
    assert final.transcript.split()[: len(stable)] == stable
    partial_calls = [c for c in engine.calls if not _is_final(c)]
    assert all(c.options.word_timestamps for c in partial_calls)  # they time the stable words
    (final_call,) = [c for c in engine.calls if _is_final(c)]
    # words 0..k-6 end more than a second before word k-1 does: only the last five are forced
    forced = final_call.options.prefix.split()
    assert forced == stable[-5:]
    cut_s = (len(stable) - 5) * 0.2 - 0.05
    duration_s = (final.end_offset.ToNanoseconds() - final.start_offset.ToNanoseconds()) / 1e9
    assert final_call.audio_samples / 16_000 < duration_s - cut_s + 0.2  # + the decoded tail
    starts = [w.start_offset.ToNanoseconds() for w in final.words]
    assert starts == sorted(starts) and len(final.words) == len(final.transcript.split())
    assert abs(starts[len(stable) - 5] / 1e9 - final.start_offset.ToNanoseconds() / 1e9
               - cut_s) < 0.01  # the first forced word, where the decoded audio starts


async def test_a_word_is_stable_only_once_a_partial_heard_speech_after_it(
    settings: config.Settings, speech: np.ndarray
) -> None:
    """Each partial's stable words end AGREEMENT_RIGHT_CONTEXT_S or more before the end of the
    audio the partial before it heard (the older of the two that agree). The fake engine hears
    one word per 200 ms and times it over its own 200 ms, so without the right context the
    holdback alone would leave the stable prefix 200-400 ms short of that audio's end."""
    engine = FakeEngine(ms_per_word=200)
    async for stub in fake_stub(settings, engine, partial_interval_ms=300):
        responses = await recognize(stub, requests(stream_config(interim=True), speech), 0.02)
    first = [p for p in partials(responses) if p.utterance_index == 0]
    assert len(first) >= 4 and len(first[-1].stable_prefix.split()) >= 5
    for before, after in zip(first, first[1:], strict=False):
        heard_s = (before.end_offset.ToNanoseconds() - before.start_offset.ToNanoseconds()) / 1e9
        stable_end_s = 0.2 * len(after.stable_prefix.split())
        assert stable_end_s <= max(0.0, heard_s - stream.AGREEMENT_RIGHT_CONTEXT_S) + 1e-3


def test_stable_words_are_taken_only_where_the_partial_reads_them() -> None:
    words = tuple(WordTiming(w, i * 0.3, i * 0.3 + 0.3, 0.9)
                  for i, w in enumerate("Hello, world again".split()))
    assert stream._stable_words("hello world", words) == words[:2]
    assert stream._stable_words("hello there", words) == ()
    assert stream._stable_words("hello world again more", words) == ()
