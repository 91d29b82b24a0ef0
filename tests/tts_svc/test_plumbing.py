"""Plumbing of tts_svc on the fake engine: pipelining, pauses, limits, failures, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import numpy as np

from dragoman import config, rpc
from dragoman.tts.v1 import tts_pb2
from tests.conftest import started
from tests.tts_svc.conftest import (
    FAIL_TEXT,
    FakeService,
    collect,
    read_all,
    rms,
    rpc_error,
    stub,
)
from tts_svc import server
from tts_svc.text import CLAUSE_PAUSE_MS, SENTENCE_PAUSE_MS

FOUR_PIECES = "Good morning, I would like a table for two tonight. Is that possible? Thanks."


async def test_first_chunk_is_sent_before_the_last_piece_is_synthesised(fake: FakeService) -> None:
    request = tts_pb2.SynthesizeRequest(text=FOUR_PIECES, language_code="en")
    asked_at_first_chunk = None
    responses = []
    async for r in fake.stub.Synthesize(request):
        if asked_at_first_chunk is None:
            asked_at_first_chunk = len(fake.engine.requests)
        responses.append(r)
    # The producer runs at most two pieces ahead of what was sent: never the whole text.
    assert asked_at_first_chunk is not None and asked_at_first_chunk <= 2
    assert [q.text for q in fake.engine.requests] == [
        "Good morning,",
        "I would like a table for two tonight.",
        "Is that possible?",
        "Thanks.",
    ]
    assert [r.chunk_index for r in responses] == [0, 1, 2, 3]
    assert [r.is_last for r in responses] == [False, False, False, True]


async def test_pauses_are_silence_at_the_start_of_the_next_chunk(fake: FakeService) -> None:
    responses = await collect(fake.stub, text=FOUR_PIECES, language_code="en")
    rate = responses[0].sample_rate_hertz

    def leading_zeros_ms(audio: bytes) -> float:
        x = np.frombuffer(audio, "<i2")
        return int(np.argmax(x != 0)) / rate * 1000

    assert leading_zeros_ms(responses[0].audio) < 5  # the first chunk starts speaking at once
    assert abs(leading_zeros_ms(responses[1].audio) - CLAUSE_PAUSE_MS) < 5
    assert abs(leading_zeros_ms(responses[2].audio) - SENTENCE_PAUSE_MS) < 5
    assert all(rms(r.audio) > 0.05 for r in responses)


async def test_a_full_service_says_resource_exhausted_and_recovers(fake: FakeService) -> None:
    first = fake.stub.Synthesize(tts_pb2.SynthesizeRequest(text=FOUR_PIECES, language_code="en"))
    await first.read()  # the only slot is now taken
    err = await rpc_error(fake.stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hello.", language_code="en")))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "all 1 synthesis slots are busy; retry shortly"
    assert ("retry-after", "0.500") in tuple(err.trailing_metadata() or ())
    rest = await read_all(first)
    assert rest[-1].is_last
    assert (await collect(fake.stub, text="Hello.", language_code="en"))[-1].is_last


async def test_an_engine_failure_is_internal_and_the_server_goes_on(fake: FakeService) -> None:
    text = f"Good morning. Then {FAIL_TEXT} happens. Bye."
    call = fake.stub.Synthesize(tts_pb2.SynthesizeRequest(text=text, language_code="en"))
    first = await call.read()
    assert first.text == "Good morning."
    err = await rpc_error(call)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details().startswith("internal error (ref ")
    assert (await collect(fake.stub, text="Hello again.", language_code="en"))[-1].is_last


async def test_a_cancelled_stream_frees_its_slot(fake: FakeService) -> None:
    call = fake.stub.Synthesize(tts_pb2.SynthesizeRequest(text=FOUR_PIECES, language_code="en"))
    await call.read()
    call.cancel()
    responses: list[tts_pb2.SynthesizeResponse] = []
    for _ in range(50):  # the server notices the cancellation asynchronously
        try:
            responses = await collect(fake.stub, text="Hello.", language_code="en")
            break
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.02)
    assert responses[-1].is_last


async def test_unknown_fake_voice_lists_the_language_voices(fake: FakeService) -> None:
    err = await rpc_error(
        fake.stub.Synthesize(tts_pb2.SynthesizeRequest(text="Olá.", language_code="pt", voice="fake-es"))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "voice 'fake-es' speaks es, not pt; voices for pt: fake-pt"


async def test_the_fake_engine_can_be_chosen_in_settings(settings: config.Settings) -> None:
    fake_settings = dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, engines="fake"))
    service = await server.create(fake_settings)
    async for address in started(service):
        async with rpc.channel(address) as channel:
            tts = stub(channel)
            voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest(language_code="de"))).voices
            assert [(v.name, v.is_default, v.engine) for v in voices] == [("fake-de", True, "fake")]
            responses = await collect(
                tts, text="Hallo Welt.", language_code="de-AT", sample_rate_hertz=48_000
            )
            assert [(r.voice, r.sample_rate_hertz, r.is_last) for r in responses] == [
                ("fake-de", 48_000, True)
            ]
