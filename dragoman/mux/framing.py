"""What a trunk carries: frames (a call id and one event of that call), the
status and metadata they encode, and the outbox that batches them.

A frame is a call's start (method, text metadata, timeout), one serialized
message, its half-close or its end (status code, details, trailing
metadata); `trunk_pb2.Frame` is the encoding, `CarryRequest` and
`CarryResponse` a batch of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from dragoman import config, metrics, rpc
from dragoman.trunk.v1 import trunk_pb2 as pb

MAX_PENDING = 1024
"""Messages a call may have waiting for its reader before it is ended."""
MAX_PENDING_BYTES = 2 * 2**20
"""Message bytes a call may have waiting for its reader before it is ended, whatever
their count: 1024 events of translated speech (about 70 KB each at 24 kHz,
bench/results/event_log_bytes.md) would be 70 MB held for one stalled listener.
The default session.event_buffer_bytes, so a listener cut for it can resume from
session_svc's log."""
MAX_BATCH = 512
"""Most frames in one trunk message."""
MAX_BATCH_BYTES = rpc.MAX_MESSAGE_BYTES // 4
"""Most message bytes in one trunk message (a frame bigger than this goes alone):
far under the gRPC message limit, which a trunk message over it would break for
every call on the trunk."""
LINGER_S = config.DEFAULT_TRUNK_LINGER_MS / 1000
"""How long a lazy frame (a streaming call's audio) waits for others to share its message
(see `Outbox`; the `trunk_linger_ms` setting): 10 ms took ~15 % off session_svc's CPU per
session against 5 ms for ~7 ms of p50, not heard end to end (bench/results/trunk_linger.md)."""
HIGH_WATER = 4096
"""Frames waiting for the trunk's writer beyond which senders wait."""
MAX_BACKLOG = 4 * HIGH_WATER
"""Frames waiting beyond which a sender that cannot wait (`TrunkCall.send`) is refused."""
SERVICE = pb.DESCRIPTOR.services_by_name["TrunkService"].full_name
_SENT_FRAMES, _SENT_BATCHES = (m.labels("sent") for m in (metrics.TRUNK_FRAMES, metrics.TRUNK_BATCHES))
_RECEIVED_FRAMES, _RECEIVED_BATCHES = (
    m.labels("received") for m in (metrics.TRUNK_FRAMES, metrics.TRUNK_BATCHES))

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


class Pending(asyncio.Queue[bytes | None]):
    """The messages of one call waiting for their reader (None: the end), their bytes
    counted too."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)  # type: ignore[misc]
        self.bytes = 0

    def _put(self, item: bytes | None) -> None:
        super()._put(item)  # type: ignore[misc]
        self.bytes += len(item or b"")

    def _get(self) -> bytes | None:
        item: bytes | None = super()._get()  # type: ignore[misc]
        self.bytes -= len(item or b"")
        return item

    def behind(self, message: bytes, max_messages: int, max_bytes: int, what: str) -> str:
        """How far behind the reader would fall with `message` added, if too far ("" if
        not); one message alone is always taken, whatever its size."""
        if self.qsize() >= max_messages:
            return f"{max_messages} {what}"
        if self.qsize() and self.bytes + len(message) > max_bytes:
            return f"{max_bytes} bytes of {what}"
        return ""


def received(frames: Sequence[pb.Frame]) -> Sequence[pb.Frame]:
    """`frames`, counted as received."""
    _RECEIVED_BATCHES.inc()
    _RECEIVED_FRAMES.inc(len(frames))
    return frames


def metadata_entries(metadata: Iterable[tuple[str, Any]] | None) -> list[pb.MetadataEntry]:
    """The text entries of gRPC metadata (binary ones do not cross a trunk)."""
    return [pb.MetadataEntry(key=k, value=v) for k, v in metadata or () if isinstance(v, str)]


def grpc_metadata(entries: Iterable[pb.MetadataEntry]) -> grpc.aio.Metadata:
    return grpc.aio.Metadata(*((e.key, e.value) for e in entries))


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)


def end_frame(call_id: int, code: grpc.StatusCode, details: str = "",
              trailing: Iterable[tuple[str, Any]] = ()) -> pb.Frame:
    return pb.Frame(call_id=call_id, end=pb.CallEnd(
        code=code.value[0], details=details, trailing_metadata=metadata_entries(trailing)))


def checked_linger(linger_s: float) -> float:
    config.check_trunk_linger_ms(linger_s * 1000, "a trunk's linger (setting trunk_linger_ms)")
    return linger_s


class Outbox:
    """Frames waiting for one side's writer, taken in batches.

    A batch goes out as soon as the writer gets to it when any frame in it is
    urgent. Lazy frames (the requests of a streaming call: audio) wait up to
    LINGER_S for company first, and an urgent frame put meanwhile ends the
    wait. So the frames that someone is waiting on (call starts, one-request
    calls, every response, ends) never linger, and the steady stream of
    audio, which is most of the frames, goes in batches.
    """

    def __init__(self, linger_s: float = LINGER_S) -> None:
        self._linger_s = linger_s
        self._frames: asyncio.Queue[pb.Frame | None] = asyncio.Queue()
        self._held: list[pb.Frame | None] = []
        """A frame taken but left for the next batch (None: the end)."""
        self._room = asyncio.Event()
        self._room.set()
        self._urgent = False
        """An urgent frame is waiting."""
        self._wake: asyncio.Future[None] | None = None
        """Set while the writer lingers; done when an urgent frame comes."""

    def backlog(self) -> int:
        return self._frames.qsize()

    def put(self, frame: pb.Frame, lazy: bool = False) -> None:
        self._frames.put_nowait(frame)
        if not lazy:
            self._hurry()
        if self._frames.qsize() >= HIGH_WATER:
            self._room.clear()

    def _hurry(self) -> None:
        self._urgent = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def room(self) -> None:
        """Returns when the writer is not far behind (back-pressure for busy senders)."""
        await self._room.wait()

    def close(self) -> None:
        self._frames.put_nowait(None)
        self._hurry()
        self._room.set()  # nobody waits on a writer that is gone

    async def batch(self) -> list[pb.Frame] | None:
        """The frames waiting now (at least one; at most MAX_BATCH frames and
        MAX_BATCH_BYTES of messages), counted as sent; None once closed."""
        held = bool(self._held)
        first = self._held.pop() if held else await self._frames.get()
        if first is None:
            return None
        if self._linger_s and not (held or self._urgent) and self._frames.qsize() < MAX_BATCH:
            loop = asyncio.get_running_loop()
            self._wake = wake = loop.create_future()
            timer = loop.call_later(self._linger_s, _resolve, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None
        self._urgent = False  # every frame waiting now goes in this batch or is held for the next
        frames, size = [first], len(first.message)
        while not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is None or len(frames) >= MAX_BATCH or (
                    size + len(frame.message) > MAX_BATCH_BYTES):
                self._held.append(frame)  # the end, or the first of the next batch
                break
            size += len(frame.message)
            frames.append(frame)
        if self._frames.qsize() < HIGH_WATER // 2:
            self._room.set()
        _SENT_BATCHES.inc()
        _SENT_FRAMES.inc(len(frames))
        return frames


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
