"""The floor under session_svc's CPU per session: a bare gRPC relay.

session_svc receives every 100 ms audio chunk of every participant from the
gateway and writes it on to stt_svc. This benchmark measures what that costs
with nothing else: a relay process that reads `StreamingRecognizeRequest`s
from S client calls and writes each to its own call to a sink process,
all on grpc.aio, paced at real time (10 chunks/s per stream, 3200-byte
PCM16 chunks), at the same N as bench.load (2 streams per session). Each
N is measured twice in the same run: with a gRPC stream per call
("plain"), and with the calls on trunks (dragoman.mux: one gRPC stream
client -> relay and one relay -> sink, frames batched), as the mesh runs
by default. It reports the relay's CPU time per chunk and the sessions per
core that cost alone would allow, and, where bench/results/load.json has
the same N, session_svc's measured cost per chunk beside it. The cost per
chunk falls as N grows (more work per wake-up of the event loop), so only
the same N compares.

    python -m bench.grpc_floor [--sessions 10,50,200] [--duration 20] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.common import RESULTS, Children, free_address, machine, read_result, table, write_result
from dragoman import mux, rpc
from dragoman.stt.v1 import stt_pb2

METHOD = "/bench.Floor/Relay"
CHUNK = stt_pb2.StreamingRecognizeRequest(audio=b"\x01\x00" * 1600)  # 100 ms at 16 kHz
CHUNKS_PER_S = 10
STREAMS_PER_SESSION = 2

_request = stt_pb2.StreamingRecognizeRequest


VIAS = ("plain", "trunk")


def _add(behaviour: Any, server: Any) -> None:
    """Registers the relay method the way generated add_*_to_server functions do."""
    handlers = {"Relay": grpc.stream_stream_rpc_method_handler(
        behaviour, request_deserializer=_request.FromString,
        response_serializer=_request.SerializeToString)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Floor", handlers)])
    server.add_registered_method_handlers("bench.Floor", handlers)


def _method(channel: Any) -> Any:
    return channel.stream_stream(METHOD, request_serializer=_request.SerializeToString,
                                 response_deserializer=_request.FromString)


async def _sink(requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
                context: grpc.aio.ServicerContext) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    async for _ in requests:
        pass
    yield _request()


def _relay(sink: str, via: str) -> Any:
    call = _method(mux.channel(sink, trunk=via == "trunk"))

    async def relay(requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
                    context: grpc.aio.ServicerContext) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        # as session_svc forwards audio: each request handed on as it arrives (rpc.each,
        # rpc.Feed), with no task switch per chunk on trunks
        feed: rpc.Feed[stt_pb2.StreamingRecognizeRequest] = rpc.Feed(maxsize=100)
        responses = call(feed)
        await rpc.each(requests, feed.put)
        feed.close()
        async for response in responses:
            yield response
    return relay


async def _serve(role: str, address: str, sink: str, via: str) -> None:
    server = rpc.new_server()
    names = ["bench.Floor", mux.add_to_server(
        server, [(_add, _sink if role == "sink" else _relay(sink, via))])]
    await rpc.serve_forever(rpc.Service(f"floor-{role}", server, names), address, 0.5)


async def _client(relay: str, streams: int, duration_s: float, via: str) -> int:
    """Streams paced 100 ms chunks on `streams` calls; returns the chunks sent."""
    sent = 0
    stop = time.monotonic() + duration_s
    ch = mux.channel(relay, trunk=via == "trunk")
    try:
        call = _method(ch)

        async def one(i: int) -> None:
            nonlocal sent
            await asyncio.sleep(i / streams / CHUNKS_PER_S)  # spread the streams over a tick

            async def chunks() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
                nonlocal sent
                tick = time.monotonic()
                while tick < stop:
                    yield CHUNK
                    sent += 1
                    tick += 1 / CHUNKS_PER_S
                    await asyncio.sleep(max(0.0, tick - time.monotonic()))
            async for _ in call(chunks()):
                pass
        await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        await ch.close()
    return sent


async def _measure(relay: str, relay_pid: int, streams: int, duration_s: float,
                   via: str) -> dict[str, Any]:
    proc = psutil.Process(relay_pid)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    sent = await _client(relay, streams, duration_s, via)
    cpu, wall = sum(proc.cpu_times()[:2]) - cpu0, time.monotonic() - t0
    us = cpu / max(1, sent) * 1e6
    return {"via": via, "sessions": streams // STREAMS_PER_SESSION, "streams": streams,
            "chunks": sent, "relay_cores": round(cpu / wall, 3), "relay_us_per_chunk": round(us, 1),
            "relay_sessions_per_core": round(1e6 / (us * CHUNKS_PER_S * STREAMS_PER_SESSION))}


def _beside_load(step: dict[str, Any], load: dict[str, Any] | None) -> None:
    """Adds session_svc's cost per chunk at the same N from load.json, if it was measured."""
    row = next((r for r in (load or {}).get("steps", []) if r["sessions"] == step["sessions"]), None)
    if row is None:
        return
    if row.get("delivery_ratio", 1.0) < 0.99:  # the machine fell behind: CPU per session is
        step["session_svc_overloaded"] = True  # then spread over fewer chunks than were sent
        return
    us = row["cpu_per_session_millicores"]["session_svc"] * 1000 / (CHUNKS_PER_S * STREAMS_PER_SESSION)
    step["session_svc_us_per_chunk"] = round(us, 1)
    step["session_svc_times_the_floor"] = round(us / step["relay_us_per_chunk"], 2)


async def run(sessions: list[int], duration_s: float, work: Path,
              results: Path = RESULTS) -> dict[str, Any]:
    steps = []
    for via in VIAS:  # a fresh pair of processes each
        sink, relay = free_address(), free_address()
        children = Children(work / f"logs-{via}", dict(os.environ))
        try:
            sink_child = children.spawn("sink", ["-m", "bench.grpc_floor", "--serve", "sink",
                                                 "--address", sink], sink)
            relay_child = children.spawn("relay", [
                "-m", "bench.grpc_floor", "--serve", "relay", "--address", relay, "--sink", sink,
                "--via", via], relay)
            await children.wait_serving(sink_child)
            await children.wait_serving(relay_child)
            for n in sessions:
                steps.append(await _measure(
                    relay, relay_child.pid, n * STREAMS_PER_SESSION, duration_s, via))
        finally:
            await children.stop()
    load = read_result("load", results)
    for step in steps:
        _beside_load(step, load)
    return {"duration_s": duration_s, "chunk_ms": 1000 // CHUNKS_PER_S, "steps": steps,
            "load_json_time": (load or {}).get("machine", {}).get("time"), "machine": machine()}


def report(r: dict[str, Any]) -> str:
    rows = [[s["via"], s["sessions"], s["streams"], s["relay_us_per_chunk"], s["relay_sessions_per_core"],
             "overloaded" if s.get("session_svc_overloaded") else s.get("session_svc_us_per_chunk"),
             s.get("session_svc_times_the_floor")] for s in r["steps"]]
    return ("bare relay: read a chunk from one call, write it to another (grpc.aio, "
            "protobuf), nothing else; plain: a gRPC stream per call; trunk: the calls as frames "
            "on one gRPC stream each way (dragoman.mux).\n"
            "session_svc: CPU per session from bench/results/load.json "
            "at the same N, per chunk ('overloaded': that load "
            "step lost utterances, so its CPU per chunk is not comparable).\n\n"
            + table(["via", "N", "streams", "relay us/chunk", "relay sessions/core",
                     "session_svc us/chunk", "session_svc / relay"], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="10,50,200",
                        help="sessions per step (2 streams each), as in bench.load")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of streaming")
    parser.add_argument("--smoke", action="store_true", help="N=5 for 3 s")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--serve", choices=("sink", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--sink", default="", help=argparse.SUPPRESS)
    parser.add_argument("--via", choices=VIAS, default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve, args.address, args.sink, args.via))
        return
    import tempfile
    sessions = [5] if args.smoke else [int(n) for n in args.sessions.split(",")]
    duration = 3.0 if args.smoke else args.duration
    with tempfile.TemporaryDirectory(prefix="dragoman-floor-") as tmp:
        result = asyncio.run(run(sessions, duration, Path(tmp), args.out or RESULTS))
    result["smoke"] = args.smoke
    path = write_result("grpc_floor", result, args.out or RESULTS)
    sys.stdout.write(report(result) + f"\n\nwritten to {path}\n")


if __name__ == "__main__":
    main()
