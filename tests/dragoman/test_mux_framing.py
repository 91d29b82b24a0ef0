"""Frames and their batching (dragoman.mux.framing): the outbox and its linger."""

from __future__ import annotations

import asyncio

import pytest

from dragoman import config
from dragoman.errors import InvalidArgument
from dragoman.mux import channel, framing
from dragoman.trunk.v1 import trunk_pb2


def _ids(frames: list[trunk_pb2.Frame] | None) -> list[int]:
    assert frames is not None
    return [f.call_id for f in frames]


def _frame(call_id: int, payload: bytes = b"x") -> trunk_pb2.Frame:
    return trunk_pb2.Frame(call_id=call_id, message=payload)


async def test_lazy_frames_wait_for_company_and_urgent_ones_end_the_wait() -> None:
    """Audio (a stream's requests) lingers to share a message; what somebody
    waits on (responses, one-request calls, starts, ends) goes at once and
    takes the lingering frames with it."""
    outbox = framing.Outbox(linger_s=30.0)
    outbox.put(_frame(1), lazy=True)
    lingering = asyncio.ensure_future(outbox.batch())
    await asyncio.sleep(0.05)
    assert not lingering.done()  # alone, a lazy frame waits (up to LINGER_S)
    outbox.put(_frame(2), lazy=True)
    await asyncio.sleep(0.05)
    assert not lingering.done()
    outbox.put(_frame(3))  # urgent
    assert _ids(await asyncio.wait_for(lingering, 1)) == [1, 2, 3]
    outbox.put(_frame(4))
    assert _ids(await asyncio.wait_for(outbox.batch(), 1)) == [4]
    outbox.put(_frame(5), lazy=True)
    closing = asyncio.ensure_future(outbox.batch())
    await asyncio.sleep(0.05)
    outbox.close()  # the end does not wait for the linger either
    assert _ids(await asyncio.wait_for(closing, 1)) == [5]
    assert await outbox.batch() is None


async def test_without_a_linger_a_lazy_frame_goes_at_once() -> None:
    outbox = framing.Outbox(linger_s=0.0)
    outbox.put(_frame(1), lazy=True)
    assert _ids(await asyncio.wait_for(outbox.batch(), 1)) == [1]


@pytest.mark.parametrize("linger_ms", [-1.0, 100.5, float("nan"), float("inf")])
def test_a_linger_outside_0_to_100_ms_is_refused(linger_ms: float) -> None:
    with pytest.raises(InvalidArgument, match=r"setting trunk_linger_ms\) must be 0 to 100 ms"):
        channel("127.0.0.1:1", linger_s=linger_ms / 1000)


def test_the_linger_is_a_setting_of_0_to_100_ms() -> None:
    assert config.load(env={"DRAGOMAN_TRUNK_LINGER_MS": "12.5"}).trunk_linger_ms == 12.5
    assert config.load(env={}).trunk_linger_ms == framing.LINGER_S * 1000
    for bad in ("-1", "500", "nan"):
        with pytest.raises(InvalidArgument,
                           match=f"setting trunk_linger_ms must be 0 to 100 ms, got {bad}"):
            config.load(env={"DRAGOMAN_TRUNK_LINGER_MS": bad})
