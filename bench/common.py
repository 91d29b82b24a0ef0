"""Shared helpers of the latency, load and capacity benchmarks.

Statistics and tables, the JSON result files (each with the machine's state
while it ran), child processes for services on free loopback ports, a
scratch PostgreSQL schema per run, and `Participant`: one person on the
public API who streams audio and records what they hear and when.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dragoman_client
import grpc

from bench.probe import cpu_probe_all_cores_ms, cpu_probe_ms
from dragoman import config, rpc
from dragoman.errors import InvalidArgument
from dragoman.stats import percentile
from dragoman.v1 import conversation_pb2 as pb

STAGES = tuple(f.name for f in pb.UtteranceLatency.DESCRIPTOR.fields)
"""The per-stage latencies of an utterance, in pipeline order."""
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
TESTDATA = Path(os.environ.get("DRAGOMAN_TESTDATA", ROOT / "tests" / "data"))
"""Speech and sentence pairs the repo ships (tests/data/README.md); the variable points elsewhere."""


# -- statistics and output -------------------------------------------------------


def linger_ms(text: str) -> float:
    """argparse type of --trunk-linger-ms: what the services' setting takes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    try:
        return config.check_trunk_linger_ms(value, "a linger")
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99, mean and max of millisecond values."""
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "mean_ms": (sum(values) / len(values)) if values else None,
        "max_ms": max(values) if values else None,
    }


def median_interval(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """Distribution-free confidence interval of the median: the order statistics x(j) and
    x(n+1-j), j the largest with P(B < j) <= (1 - confidence) / 2 for B ~ Binomial(n, 1/2);
    None when n is too small for any (under 6 at 95 %). A median of a handful of latencies
    is this wide: compare runs by it, not by their p50s alone."""
    n = len(values)
    tail = (1.0 - confidence) / 2
    below, j = 0.0, 0  # below = P(B < j + 1) as j grows
    while j < n // 2:
        below += math.comb(n, j) / 2**n
        if below > tail:
            break
        j += 1
    if j == 0:
        return None
    ordered = sorted(values)
    return [float(ordered[j - 1]), float(ordered[n - j])]


def fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{2 if abs(value) < 10 and not digits else digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: numbers right-aligned, text and the first column left-aligned."""
    cells = [[str(h) for h in headers], *[[fmt(c) if not isinstance(c, str) else c for c in r]
                                          for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    return cell.replace(".", "", 1).replace("-", "", 1).replace("/", "", 1).isdigit() or cell == "-"


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy and how fast it was
    (bench.probe)."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "load_average": load_average(),
        "cpu_probe_ms": cpu_probe_ms(),
        "cpu_probe_all_cores_ms": cpu_probe_all_cores_ms(),
    }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [round(load, 2) for load in os.getloadavg()]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def write_result(name: str, data: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def publish(name: str, result: dict[str, Any], out_dir: Path | None, markdown: str,
            report: str, last_line: str) -> Path:
    """Writes `result` as <name>.json and `markdown` as <name>.md (in bench/results
    unless `out_dir`), then prints `report`, where it went and `last_line`."""
    path = write_result(name, result, out_dir or RESULTS)
    path.with_suffix(".md").write_text(markdown)
    sys.stdout.write(report + f"\n\nwritten to {path}\n{last_line}\n")
    return path


def read_result(name: str, out_dir: Path = RESULTS) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


# -- processes -------------------------------------------------------------------


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def scratch_database(prefix: str = "bench") -> Iterator[dict[str, str]]:
    """DRAGOMAN_DATABASE_* variables for a fresh schema on the test PostgreSQL, dropped after."""
    from dragoman.db.testing import scratch_schema

    with scratch_schema(prefix=prefix) as db:
        yield {
            "DRAGOMAN_DATABASE_URL": db.url,
            "DRAGOMAN_DATABASE_SCHEMA": db.schema,
            "DRAGOMAN_DATABASE_ENCRYPTION_KEYS": db.encryption_keys,
            "DRAGOMAN_DATABASE_POOL_MAX_SIZE": "8",
        }


@dataclass
class Child:
    """A service (or load generator) in its own process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class Children:
    """Child processes started in order and stopped in reverse."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []

    def spawn(self, name: str, args: Sequence[str], address: str = "",
              env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:  # a restarted child adds to its log
            popen = subprocess.Popen(
                [sys.executable, *args], stdout=log_file, stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})}, cwd=ROOT, start_new_session=True)
        child = Child(name, popen, log_path, address)
        self.children.append(child)
        return child

    async def wait_serving(self, child: Child, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if child.popen.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}")
            try:
                await rpc.wait_serving(child.address, timeout_s=1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} not serving after {timeout_s:.0f} s:\n"
                                       f"{child.tail()}") from None

    async def stop(self, grace_s: float = 3.0) -> None:
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            while child.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if child.popen.poll() is None:
                child.popen.kill()
                child.popen.wait()
        self.children.clear()


def service_env(addresses: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a mesh child: addresses, quiet logs, the repo on the path."""
    env = dict(os.environ)
    env.update({f"DRAGOMAN_ADDRESSES_{k.upper()}": v for k, v in addresses.items()})
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "gen" / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


# -- one person on the public API ------------------------------------------------


def join_request(session_id: str, rate_hz: int, resume_after: int = 0) -> pb.ConverseRequest:
    return pb.ConverseRequest(join=pb.JoinConversation(
        session_id=session_id, encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate_hz,
        resume_after_sequence=resume_after))


async def raw_converse(client: dragoman_client.Client, requests: AsyncIterator[pb.ConverseRequest],
                       ) -> grpc.aio.StreamStreamCall:
    """A Converse stream of the bench's own requests on the SDK's channel and token: the
    SDK's `converse` paces, numbers and resumes for you, which hides what the benches time."""
    stub = dragoman_client.conversation_pb2_grpc.ConversationServiceStub(client.channel)
    return stub.Converse(requests, metadata=await client.metadata())


@dataclass
class Participant:
    """Streams audio through Converse and records what comes back and when.

    `first_audio_s[utterance_id]`: when the first translated audio chunk of
    the partner's utterance arrived here (time.monotonic()); `audio_s`: how
    long all of its audio plays.
    `latencies`: the server's per-stage latency of this person's utterances
    (to the last of their listeners); `heard`: of the others' utterances, to
    this person as their listener.
    """

    client: dragoman_client.Client
    language: str
    requests: asyncio.Queue[pb.ConverseRequest | None] = field(default_factory=asyncio.Queue)
    latencies: dict[str, pb.UtteranceLatency] = field(default_factory=dict)
    heard: dict[str, pb.UtteranceLatency] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    first_audio_s: dict[str, float] = field(default_factory=dict)
    audio_s: dict[str, float] = field(default_factory=dict)
    playing_until: float = 0.0
    """When the translated speech heard so far ends, if played as it arrives, in order."""
    errors: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    sequence: int = 0
    task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[pb.ConverseRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def connect(self, session_id: str, rate_hz: int) -> None:
        self.requests.put_nowait(join_request(session_id, rate_hz))
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        try:
            async for response in await raw_converse(self.client, self._requests()):
                self.on_event(response.event)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - recorded and reported, the run goes on
            self.errors.append(f"stream: {e}")
        finally:
            self.changed.set()

    def on_event(self, event: pb.ConversationEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "speech_audio":
            a = event.speech_audio
            if a.chunk_index == 0 and a.utterance_id not in self.first_audio_s:
                self.first_audio_s[a.utterance_id] = time.monotonic()
            if a.sample_rate_hertz:
                self.audio_s[a.utterance_id] = (self.audio_s.get(a.utterance_id, 0.0)
                                                + len(a.data) / 2 / a.sample_rate_hertz)
        elif kind == "processing_started" and event.processing_started.speaker == pb.SPEAKER_SELF:
            self.started.add(event.processing_started.utterance_id)
        elif kind == "processing_ended" and event.processing_ended.speaker == pb.SPEAKER_SELF:
            ended = event.processing_ended
            self.ended.add(ended.utterance_id)
            if ended.HasField("latency"):
                self.latencies[ended.utterance_id] = ended.latency
        elif kind == "processing_ended" and event.processing_ended.HasField("latency"):
            self.heard[event.processing_ended.utterance_id] = event.processing_ended.latency
        elif kind == "error":
            self.errors.append(event.error.message)
        self.changed.set()

    def listener_wait_ms(self, utterance_id: str, total_ms: float) -> float | None:
        """The silence this listener sat through waiting for the partner's utterance.

        From the end of the partner's speech (the server's `total` before the
        first audio arrived) or, if later, from when the translated speech of
        the utterance before it stopped playing, to this utterance's first
        audio. Time spent still hearing the previous utterance is not waiting:
        in-order delivery holds the next one back while the listener is busy
        anyway. Call once per utterance, in order.
        """
        arrived = self.first_audio_s.get(utterance_id)
        if arrived is None:
            return None
        speech_end = arrived - total_ms / 1000
        wait = arrived - max(speech_end, min(self.playing_until, arrived))
        self.playing_until = max(arrived, self.playing_until) + self.audio_s.get(utterance_id, 0.0)
        return wait * 1000

    def send(self, data: bytes) -> None:
        self.sequence += 1
        self.requests.put_nowait(pb.ConverseRequest(audio=pb.AudioChunk(
            data=data, sequence=self.sequence)))

    async def wait_quiet(self, timeout_s: float) -> bool:
        """Waits until every utterance of this person that started has ended."""
        deadline = time.monotonic() + timeout_s
        while not self.started or self.started - self.ended:
            if self.task is not None and self.task.done():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        return True

    async def leave(self, timeout_s: float = 5.0) -> None:
        self.requests.put_nowait(pb.ConverseRequest(leave=pb.LeaveConversation()))
        self.requests.put_nowait(None)
        if self.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def latency_ms(lat: pb.UtteranceLatency) -> dict[str, float]:
    return {s: getattr(lat, s).ToNanoseconds() / 1e6 for s in STAGES}


def stage_summary(latencies: Sequence[dict[str, float]]) -> dict[str, dict[str, float | int | None]]:
    return {s: summary([lat[s] for lat in latencies]) for s in STAGES}
