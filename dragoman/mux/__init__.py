"""Many gRPC calls over one gRPC stream between two processes.

A 100 ms audio chunk sent as a gRPC message of its own costs a Python
process hundreds of microseconds to receive and forward; under load a
frame on a trunk costs a fraction of that (bench.grpc_floor;
bench/results/grpc_floor.json). On a trunk (`dragoman.trunk.v1.TrunkService/Carry`) the chunk is a frame: a
call id and the serialized message, written in a batch with the other
frames waiting: the writer lingers up to `LINGER_S` (10 ms; the
`trunk_linger_ms` setting) after the first audio frame for others to join
it (frames someone waits on go at once), so under load tens to hundreds of
frames share one gRPC message, and a call costs no HTTP/2 stream, metadata
or interceptors (`framing`).

The caller's side is a channel (`client`): `TrunkedChannel(channel)` is
what a generated stub takes; its calls travel on the trunk (`link`; opened
on first use, opened again after it fails; client-streaming calls, which
dragoman does not make, on `channel`). A call with one request is sent
again when the trunk failed before it was answered (`RETRIES`). Against a
server without a trunk the first call fails UNAVAILABLE and later ones go
as ordinary gRPC calls. `rpc.Feed` and `rpc.each()` hand messages to and
from a trunk call without a task switch per message (a trunk call's
request streams are `rpc.Bindable` and `rpc.Consumable`). The server's
side (`server`) is `add_to_server(server, registrations)`, which registers
servicers the ordinary way and serves every method on the trunk as well,
through the same wrapper as every other call (`rpc.wrap_handler`: logging
context, error statuses, metrics) and with a trace span each
(`tracing.server_span`).

What a call on a trunk keeps of gRPC: metadata (text), deadlines,
half-close, cancellation from either side, status code, message and
trailing metadata, per-call ordering, trace context. What it changes: flow
control is per trunk, so a reader that falls `MAX_PENDING` messages (or
`MAX_PENDING_BYTES`) behind gets its call ended with RESOURCE_EXHAUSTED
instead of slowing the sender (a conversation client resumes from its last
sequence number); when the trunk itself fails, every call on it ends with
the trunk's status (UNAVAILABLE, typically), as calls on a failed connection
do. Only text metadata crosses, and no initial metadata comes back.
"""

from dragoman.mux.client import RETRIES, TrunkedChannel, TrunkUnaryCall, channel
from dragoman.mux.framing import (
    HIGH_WATER,
    LINGER_S,
    MAX_BACKLOG,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_PENDING,
    MAX_PENDING_BYTES,
    SERVICE,
)
from dragoman.mux.link import TrunkCall
from dragoman.mux.server import ServerCall, TrunkServicer, add_to_server

__all__ = [
    "HIGH_WATER",
    "LINGER_S",
    "MAX_BACKLOG",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
    "RETRIES",
    "SERVICE",
    "ServerCall",
    "TrunkCall",
    "TrunkServicer",
    "TrunkUnaryCall",
    "TrunkedChannel",
    "add_to_server",
    "channel",
]
