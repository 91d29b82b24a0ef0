"""Calls on a trunk (dragoman.mux: client and server) against real gRPC servers on loopback.

The test service has one bidirectional method per behaviour; its messages
are StreamingRecognizeRequests whose `audio` carries the test's payload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from dragoman import errors, logs, metrics, mux, rpc
from dragoman.errors import InvalidArgument, ResourceExhausted
from dragoman.mux import framing, link
from dragoman.stt.v1 import stt_pb2
from dragoman.trunk.v1 import trunk_pb2, trunk_pb2_grpc

Msg = stt_pb2.StreamingRecognizeRequest
SERVICE = "test.Mux"


class Behaviours:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.taken: list[bytes] = []
        self.consumable: bool | None = None

    async def Echo(self, requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        async for r in requests:
            if r.audio == b"fail":
                raise InvalidArgument("bad chunk")
            if r.audio == b"exhaust":
                raise ResourceExhausted("too fast", retry_after_s=2.5)
            yield Msg(audio=r.audio)

    async def Meta(self, requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        meta = rpc.text_metadata(context)
        for key in ("x-test", rpc.CORRELATION_HEADER):
            yield Msg(audio=meta.get(key, "").encode())

    async def Hold(self, requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        yield Msg(audio=b"holding")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def Flood(self, requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        for i in range(200):
            yield Msg(audio=str(i).encode())

    async def Upper(self, request: Msg, context: Any) -> Msg:
        if request.audio == b"fail":
            raise InvalidArgument("bad word")
        return Msg(audio=request.audio.upper())

    async def Count(self, request: Msg, context: Any) -> AsyncIterator[Msg]:
        for i in range(int(request.audio)):
            yield Msg(audio=str(i).encode())

    async def Each(self, requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        def take(r: Msg) -> None:
            if r.audio == b"fail":
                raise InvalidArgument("refused in on_request")
            self.taken.append(r.audio)

        self.consumable = isinstance(requests, rpc.Consumable)
        await rpc.each(requests, take)
        yield Msg(audio=b"|".join(self.taken))


def _add(behaviours: Behaviours, server: Any) -> None:
    kinds = {"Upper": grpc.unary_unary_rpc_method_handler,
             "Count": grpc.unary_stream_rpc_method_handler}
    handlers = {
        name: kinds.get(name, grpc.stream_stream_rpc_method_handler)(
            getattr(behaviours, name), request_deserializer=Msg.FromString,
            response_serializer=Msg.SerializeToString)
        for name in ("Echo", "Meta", "Hold", "Flood", "Each", "Upper", "Count")
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_registered_method_handlers(SERVICE, handlers)


async def _serve(behaviours: Behaviours, trunk: bool = True,
                 address: str = "127.0.0.1:0") -> tuple[rpc.Service, str]:
    server = rpc.new_server()
    if trunk:
        mux.add_to_server(server, [(_add, behaviours)])
    else:
        _add(behaviours, server)
    service = rpc.Service("mux-test", server, [SERVICE])
    port = await service.start(address)
    return service, f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _mesh(trunk: bool = True) -> AsyncIterator[tuple[Behaviours, Any]]:
    behaviours = Behaviours()
    service, address = await _serve(behaviours, trunk=trunk)
    channel = mux.channel(address)
    try:
        yield behaviours, channel
    finally:
        await channel.close()
        await service.stop(0)


def _method(channel: Any, name: str) -> Callable[..., Any]:
    return channel.stream_stream(f"/{SERVICE}/{name}", request_serializer=Msg.SerializeToString,
                                 response_deserializer=Msg.FromString)


async def _items(*payloads: bytes, pause_s: float = 0.0) -> AsyncIterator[Msg]:
    for p in payloads:
        yield Msg(audio=p)
        await asyncio.sleep(pause_s)


async def _collect(call: Any) -> list[bytes]:
    return [r.audio async for r in call]


def _sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_many_calls_share_one_trunk_and_keep_their_order() -> None:
    async with _mesh() as (_, channel):
        echo = _method(channel, "Echo")
        carried = {"service": mux.SERVICE, "method": "Carry"}
        trunks_before = _sample("dragoman_rpc_in_flight", carried)  # other tests' trunks
        sent_before = _sample("dragoman_trunk_frames_total", {"direction": "sent"})
        batches_before = _sample("dragoman_trunk_batches_total", {"direction": "sent"})

        async def one(i: int) -> list[bytes]:
            payloads = [f"{i}:{k}".encode() for k in range(20)]
            call = echo(_items(*payloads))
            assert isinstance(call, mux.TrunkCall)
            return await _collect(call)

        results = await asyncio.gather(*(one(i) for i in range(50)))
        for i, got in enumerate(results):
            assert got == [f"{i}:{k}".encode() for k in range(20)]
        # one trunk for all 50 calls
        assert _sample("dragoman_rpc_in_flight", carried) == trunks_before + 1
        frames = _sample("dragoman_trunk_frames_total", {"direction": "sent"}) - sent_before
        batches = _sample("dragoman_trunk_batches_total", {"direction": "sent"}) - batches_before
        assert frames >= 2 * 50 * 20  # both sides' frames (a process counts both ends here)
        assert batches * 5 < frames  # they travelled many to a message


def _unary(channel: Any, name: str) -> Callable[..., Any]:
    make = channel.unary_unary if name == "Upper" else channel.unary_stream
    return make(f"/{SERVICE}/{name}", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString)


async def test_calls_with_one_request_travel_on_the_trunk_too() -> None:
    async with _mesh() as (_, channel):
        upper, count = _unary(channel, "Upper"), _unary(channel, "Count")
        call = upper(Msg(audio=b"hola"))
        assert isinstance(call, mux.TrunkUnaryCall)
        assert (await call).audio == b"HOLA"
        assert [r.audio async for r in count(Msg(audio=b"3"))] == [b"0", b"1", b"2"]
        assert [r.audio async for r in count(Msg(audio=b"0"))] == []
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await upper(Msg(audio=b"fail"))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "bad word"
        results = await asyncio.gather(*(upper(Msg(audio=f"w{i}".encode())) for i in range(100)))
        assert [r.audio for r in results] == [f"W{i}".encode() for i in range(100)]


async def test_a_call_with_one_request_is_retried_without_a_trunk() -> None:
    """The first call learns the server has no trunk; a unary one is sent again
    as a plain gRPC call (it carries one request, so nothing is lost)."""
    async with _mesh(trunk=False) as (_, channel):
        assert (await _unary(channel, "Upper")(Msg(audio=b"ok"))).audio == b"OK"
        assert channel.plain


async def test_big_messages_are_batched_under_the_grpc_message_limit() -> None:
    """Twenty 1 MiB messages at once would be one 20 MiB trunk message: over
    gRPC's limit, which would end every call on the trunk."""
    async with _mesh() as (_, channel):
        payloads = [bytes([i]) * 2**20 for i in range(20)]
        got = await _collect(_method(channel, "Echo")(_items(*payloads)))
        assert [p[:1] for p in got] == [p[:1] for p in payloads] and all(
            len(p) == 2**20 for p in got)


async def test_errors_keep_their_code_message_and_trailers_and_spare_other_calls() -> None:
    async with _mesh() as (_, channel):
        echo = _method(channel, "Echo")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await _collect(echo(_items(b"ok", b"fail")))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "bad chunk"
        with pytest.raises(grpc.aio.AioRpcError) as fast:
            await _collect(echo(_items(b"exhaust")))
        assert fast.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "2.500") in tuple(fast.value.trailing_metadata())
        passed_on = errors.from_rpc_error(fast.value, "echo")  # as a gateway passes it on
        assert isinstance(passed_on, errors.ResourceExhausted) and passed_on.retry_after_s == 2.5
        assert await _collect(echo(_items(b"still", b"fine"))) == [b"still", b"fine"]
        failed = {"service": SERVICE, "method": "Echo", "code": "INVALID_ARGUMENT"}
        assert _sample("dragoman_rpc_requests_total", failed) >= 1  # counted like any call


async def test_metadata_and_the_correlation_id_cross_the_trunk() -> None:
    async with _mesh() as (_, channel):
        token = logs.correlation_id.set("corr-123")
        try:
            got = await _collect(_method(channel, "Meta")(_items(), metadata=(("x-test", "v"),)))
        finally:
            logs.correlation_id.reset(token)
        assert got == [b"v", b"corr-123"]


async def test_cancelling_a_call_cancels_its_handler_only() -> None:
    async with _mesh() as (behaviours, channel):
        call = _method(channel, "Hold")()
        responses = aiter(call)
        assert (await anext(responses)).audio == b"holding"
        assert call.cancel()
        await asyncio.wait_for(behaviours.cancelled.wait(), 5)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await anext(responses)
        assert ended.value.code() is grpc.StatusCode.CANCELLED
        assert await _collect(_method(channel, "Echo")(_items(b"x"))) == [b"x"]


async def test_a_reader_that_walks_away_cancels_its_call() -> None:
    """Like a collected gRPC call: a response stream closed before its end
    cancels the call, so the server does not stream into the void."""
    async with _mesh() as (behaviours, channel):
        responses = aiter(_method(channel, "Hold")())
        assert (await anext(responses)).audio == b"holding"
        await responses.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(behaviours.cancelled.wait(), 5)


async def test_a_deadline_ends_the_call_on_both_sides() -> None:
    async with _mesh() as (behaviours, channel):
        call = _method(channel, "Hold")(timeout=0.3)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await _collect(call)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(behaviours.cancelled.wait(), 5)


async def test_an_unknown_method_is_unimplemented() -> None:
    async with _mesh() as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await _collect(_method(channel, "Nope")(_items(b"x")))
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "/test.Mux/Nope" in (missing.value.details() or "")


async def test_a_server_without_a_trunk_gets_plain_streams_after_the_first_call() -> None:
    async with _mesh(trunk=False) as (_, channel):
        echo = _method(channel, "Echo")
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await _collect(echo(_items(b"a")))
        assert first.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "no trunk" in (first.value.details() or "")
        assert channel.plain
        assert await _collect(echo(_items(b"a", b"b"))) == [b"a", b"b"]


async def test_a_lost_trunk_ends_its_calls_and_the_next_call_opens_a_new_one() -> None:
    behaviours = Behaviours()
    service, address = await _serve(behaviours)
    channel = mux.channel(address)
    try:
        call = _method(channel, "Hold")()
        responses = aiter(call)
        assert (await anext(responses)).audio == b"holding"
        await service.stop(0)
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await asyncio.wait_for(anext(responses), 10)
        assert lost.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        service, _ = await _serve(behaviours, address=address)
        assert await _collect(_method(channel, "Echo")(_items(b"back"))) == [b"back"]
    finally:
        await channel.close()
        await service.stop(0)


async def test_a_reader_that_falls_behind_is_ended_not_the_trunk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "MAX_PENDING", 10)
    async with _mesh() as (_, channel):
        call = _method(channel, "Flood")()
        await asyncio.sleep(0.5)  # 200 responses arrive; nobody reads
        with pytest.raises(grpc.aio.AioRpcError) as behind:
            await _collect(call)
        assert behind.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "behind" in (behind.value.details() or "")
        assert await _collect(_method(channel, "Echo")(_items(b"ok"))) == [b"ok"]


async def test_a_reader_behind_by_bytes_is_ended_before_the_count_bound() -> None:
    """64 KiB responses nobody reads: the call ends at MAX_PENDING_BYTES held, long
    before MAX_PENDING of them, with the same status as the count bound."""
    big = b"x" * 65536
    assert 64 * len(big) > mux.MAX_PENDING_BYTES and 64 < mux.MAX_PENDING
    async with _mesh() as (_, channel):
        call = _method(channel, "Echo")(_items(*[big] * 64))
        await asyncio.sleep(1.0)  # the echoes arrive; nobody reads
        held = 0
        with pytest.raises(grpc.aio.AioRpcError) as behind:
            async for _ in call:
                held += 1
        assert behind.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"fell {mux.MAX_PENDING_BYTES} bytes of responses behind" in (
            behind.value.details() or "")
        assert held * len(big) <= mux.MAX_PENDING_BYTES < (held + 1) * len(big) + 64
        assert await _collect(_method(channel, "Echo")(_items(b"ok"))) == [b"ok"]


async def test_a_server_behind_by_bytes_of_requests_ends_the_call() -> None:
    """A handler that never reads its requests (Hold) while 64 KiB ones keep coming."""
    async with _mesh() as (_, channel):
        call = _method(channel, "Hold")(_items(*[b"y" * 65536] * 64))
        with pytest.raises(grpc.aio.AioRpcError) as behind:
            await asyncio.wait_for(_collect(call), 10)
        assert behind.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"fell {mux.MAX_PENDING_BYTES} bytes of requests behind" in (
            behind.value.details() or "")


def test_pending_messages_are_counted_in_bytes() -> None:
    pending = framing.Pending()
    assert pending.behind(b"z" * 100, 3, 150, "responses") == ""  # one alone always fits
    pending.put_nowait(b"z" * 100)
    assert pending.behind(b"z" * 50, 3, 150, "responses") == ""
    assert pending.behind(b"z" * 51, 3, 150, "responses") == "150 bytes of responses"
    pending.put_nowait(b"z" * 50)
    pending.put_nowait(None)
    assert pending.bytes == 150 and pending.behind(b"", 3, 150, "x") == "3 x"
    assert pending.get_nowait() == b"z" * 100 and pending.bytes == 50


@pytest.mark.parametrize("trunk", [True, False])
async def test_each_hands_over_every_request_on_a_trunk_or_a_stream(trunk: bool) -> None:
    async with _mesh(trunk=trunk) as (behaviours, channel):
        if not trunk:
            channel.plain = True  # skip the first call's discovery
        each = _method(channel, "Each")
        # paced: the handler is waiting in each() when they arrive, not reading a backlog
        assert await _collect(each(_items(b"1", b"2", b"3", pause_s=0.05))) == [b"1|2|3"]
        assert behaviours.consumable is trunk  # on a trunk, handed over as frames arrive
        behaviours.taken.clear()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _collect(each(_items(b"1", b"fail", b"3", pause_s=0.05)))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert behaviours.taken == [b"1"]


class _Pushed:
    """A request stream that is not a Feed but can be bound (rpc.Bindable)."""

    def __init__(self) -> None:
        self.send: Callable[[Msg], None] | None = None
        self.half_close: Callable[[], None] | None = None

    def bind(self, send: Callable[[Msg], None], half_close: Callable[[], None]) -> None:
        self.send, self.half_close = send, half_close

    def __aiter__(self) -> AsyncIterator[Msg]:
        raise AssertionError("a bound stream is not read")


async def test_a_call_on_a_trunk_binds_any_bindable_request_stream() -> None:
    async with _mesh() as (_, channel):
        pushed = _Pushed()
        call = _method(channel, "Each")(pushed)
        assert pushed.send is not None and pushed.half_close is not None
        pushed.send(Msg(audio=b"a"))
        pushed.send(Msg(audio=b"b"))
        pushed.half_close()
        assert await _collect(call) == [b"a|b"]


async def test_each_lets_any_consumable_stream_hand_over_its_requests() -> None:
    class Pushing:
        async def consume(self, on_request: Callable[[int], None]) -> None:
            for i in (1, 2, 3):
                on_request(i)

        def __aiter__(self) -> AsyncIterator[int]:
            raise AssertionError("a consumable stream is not iterated")

    got: list[int] = []
    await rpc.each(Pushing(), got.append)  # type: ignore[arg-type]
    assert got == [1, 2, 3]


async def test_a_feed_goes_straight_onto_the_trunk() -> None:
    async with _mesh() as (behaviours, channel):
        feed: rpc.Feed[Msg] = rpc.Feed(maxsize=2)
        feed.put(Msg(audio=b"early"))  # before the call: queued, then handed over
        call = _method(channel, "Each")(feed)
        for i in range(10):  # far beyond maxsize: nothing queues on a trunk
            feed.put(Msg(audio=str(i).encode()))
            await asyncio.sleep(0.01)
        feed.close()
        assert await _collect(call) == [b"|".join([b"early", *(str(i).encode() for i in range(10))])]


async def test_a_feed_on_a_stream_is_bounded_and_merges_what_waited() -> None:
    feed: rpc.Feed[Msg] = rpc.Feed(maxsize=3, merge=lambda a, b: Msg(audio=a.audio + b.audio)
                                   if len(a.audio) < 4 else None)
    for p in (b"a", b"b", b"c"):
        feed.put(Msg(audio=p))
    with pytest.raises(asyncio.QueueFull):
        feed.put(Msg(audio=b"d"))
    got = [m.audio async for m in _take(feed, 1)]
    assert got == [b"abc"]
    for p in (b"dd", b"ee", b"ff"):
        feed.put(Msg(audio=p))
    feed.close()
    assert [m.audio async for m in feed] == [b"ddee", b"ff"]


async def _take(feed: rpc.Feed[Msg], n: int) -> AsyncIterator[Msg]:
    iterator = aiter(feed)
    for _ in range(n):
        yield await anext(iterator)


async def test_undecodable_frames_fail_their_call_and_nothing_else() -> None:
    service, address = await _serve(Behaviours())
    try:
        async with grpc.aio.insecure_channel(address) as raw:
            carry = trunk_pb2_grpc.TrunkServiceStub(raw).Carry()
            start = trunk_pb2.CallStart(method=f"/{SERVICE}/Echo")
            await carry.write(trunk_pb2.CarryRequest(frames=[
                trunk_pb2.Frame(call_id=7, start=start),
                trunk_pb2.Frame(call_id=7, message=b"\xff\xff\xff"),  # not a protobuf message
                trunk_pb2.Frame(call_id=99, message=b"x"),  # no such call: dropped
                trunk_pb2.Frame(call_id=8, start=start),
                trunk_pb2.Frame(call_id=8, message=Msg(audio=b"fine").SerializeToString()),
                trunk_pb2.Frame(call_id=8, half_close=trunk_pb2.HalfClose()),
            ]))
            ends: dict[int, int] = {}
            messages: list[bytes] = []
            async for batch in carry:
                for frame in batch.frames:
                    if frame.HasField("end"):
                        ends[frame.call_id] = frame.end.code
                    elif frame.HasField("message"):
                        messages.append(Msg.FromString(frame.message).audio)
                if len(ends) == 2:
                    break
            carry.cancel()
        # the caller's bytes are wrong, as on a plain call (rpc.wrap_handler)
        assert ends == {7: grpc.StatusCode.INVALID_ARGUMENT.value[0], 8: grpc.StatusCode.OK.value[0]}
        assert messages == [b"fine"]
    finally:
        await service.stop(0)


async def test_a_streaming_call_sends_its_requests_lazily_and_a_unary_call_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, bool]] = []
    put = framing.Outbox.put

    def spy(self: framing.Outbox, frame: trunk_pb2.Frame, lazy: bool = False) -> None:
        if frame.HasField("message"):
            sent.append((frame.call_id, lazy))
        put(self, frame, lazy)

    monkeypatch.setattr(framing.Outbox, "put", spy)
    async with _mesh() as (_, channel):
        assert await _collect(_method(channel, "Echo")(_items(b"a", b"b"))) == [b"a", b"b"]
        streamed = {call_id for call_id, _ in sent}
        assert (await _unary(channel, "Upper")(Msg(audio=b"u"))).audio == b"U"
    requests = [lazy for call_id, lazy in sent if call_id in streamed]
    assert len(requests) >= 2 and all(requests[:2])  # the client's requests on the stream
    assert not any(lazy for call_id, lazy in sent if call_id not in streamed)
