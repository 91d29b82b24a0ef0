"""Prometheus metrics of every service, declared in one place, and their HTTP endpoint.

Each service process exposes `/metrics` on its own address when one is set
(`[metrics]` settings, e.g. DRAGOMAN_METRICS_SESSION=0.0.0.0:9100); empty
(the default) serves none. Every gRPC call is counted by `rpc.new_server()`'s
interceptor; the services add what only they know: live sessions and
streams, per-stage utterance latency and pipeline failures (session_svc),
decodes waiting per model lane and the decodes, encoder seconds and decoder
tokens they cost (stt_svc). deploy/prometheus/ holds the
alert rules built on these names, and tests check that every name a rule or
dashboard uses is declared here.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Buckets around the 1.5 s end-to-end goal and its per-stage budgets."""

RPC_REQUESTS = Counter(
    "dragoman_rpc_requests", "gRPC calls served, by proto service, method and status code",
    ["service", "method", "code"])
RPC_IN_FLIGHT = Gauge(
    "dragoman_rpc_in_flight", "gRPC calls being served now (streams count while open)",
    ["service", "method"])
RPC_DURATION = Histogram(
    "dragoman_rpc_duration_seconds", "Time to serve a gRPC call (a stream: its whole life)",
    ["service", "method"], buckets=LATENCY_BUCKETS_S + (30.0, 60.0, 300.0, 1800.0))

SESSIONS_ACTIVE = Gauge("dragoman_sessions_active", "Live sessions this session_svc holds")
SESSIONS_REFUSED = Counter(
    "dragoman_sessions_refused",
    "New sessions this session_svc refused to protect those it holds, by reason "
    "(limit: session.max_live_sessions; overload: its event loop ran late)", ["reason"])
EVENT_LOOP_LAG = Gauge(
    "dragoman_event_loop_lag_seconds",
    "How late the event loop ran over the last second (the least lateness of its ticks)")
STREAMS_ACTIVE = Gauge(
    "dragoman_conversation_streams_active",
    "Participants' conversation streams open on this session_svc (active connections)")
SESSION_DURATION = Histogram(
    "dragoman_session_duration_seconds", "Duration of ended sessions, from creation to end",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200))
UTTERANCE_STAGE = Histogram(
    "dragoman_utterance_stage_seconds",
    "Per utterance, the time of each stage from the end of speech to the first translated "
    "audio handed to the partner (stage=total is the translation latency)",
    ["stage"], buckets=LATENCY_BUCKETS_S)
PIPELINE_ERRORS = Counter(
    "dragoman_pipeline_errors", "Utterances a pipeline stage failed for", ["stage"])
STT_QUEUE_DEPTH = Gauge(
    "dragoman_stt_queue_depth", "Decodes waiting for a Whisper model lane", ["lane"])
STT_UNRECOGNISED_SPEECH = Counter(
    "dragoman_stt_unrecognised_speech_seconds_total",
    "Seconds of speech (as the VAD saw it) that ended in no final text, by reason: a guard "
    "(empty, no_speech, repetitive, loop, too_fast) dropped the utterance, or part of it stayed "
    "without words after its re-decode (uncovered) or could not be re-decoded (overloaded)",
    ["reason"])
STT_SPARSE_FINALS = Counter(
    "dragoman_stt_sparse_finals_total",
    "Finals with under one word a second of speech, decoded again without their forced "
    "prefix, by outcome: the new reading replaced it (twice the words or more) or not",
    ["outcome"])
STT_FINAL_PATHS = Counter(
    "dragoman_stt_finals_total",
    "Finals sent, by how they were decoded: idle_beam (beam 5, the model's lane had no other "
    "stream's decode waiting), busy_greedy (other decodes waited), fixed (stt.beam_size, "
    "stt.final_beam_when_idle off) or doubt_beam (greedy, then decoded again with beam 5: "
    "its confidence was under stt.final_beam_when_doubtful)",
    ["path"])
STT_DECODES = Counter(
    "dragoman_stt_decodes_total",
    "Decodes a Whisper model lane ran, by kind (partial, final: speculative finals and "
    "re-decodes too); a decode withdrawn after it started still counts, it cost the same",
    ["kind"])
STT_ENCODER_AUDIO = Counter(
    "dragoman_stt_encoder_audio_seconds_total",
    "Seconds of audio the encoder ran over (windows with their padding), by kind: the GPU "
    "cost proxy of the encoder", ["kind"])
STT_DECODER_TOKENS = Counter(
    "dragoman_stt_decoder_tokens_total",
    "Tokens the decoder generated (fallback attempts included), by kind: the GPU cost "
    "proxy of the decoder", ["kind"])

TRUNK_FRAMES = Counter(
    "dragoman_trunk_frames_total",
    "Frames (call starts, messages, half-closes, ends) carried on trunks (dragoman.mux)",
    ["direction"])
TRUNK_BATCHES = Counter(
    "dragoman_trunk_batches_total",
    "gRPC messages the trunk frames travelled in (frames / batches = the batching)",
    ["direction"])


class GcPauses(Collector):
    """dragoman_gc_pause_seconds: how long each pass of Python's cyclic garbage
    collector held the process (and so the event loop), by generation.

    A pass stops every coroutine of the process; under load these pauses were a
    large part of bench.load's p99 tail (bench/results/gc_thresholds.md). The passes are
    timed by a gc.callbacks hook and counted in plain integers, not in a
    prometheus Histogram: its observe() takes a non-reentrant lock, and a
    collection can start while the same thread holds it, inside another observe."""

    name = "dragoman_gc_pause_seconds"
    documentation = ("Pauses of Python's cyclic garbage collector, by generation "
                     "(a pass holds the process's event loop)")
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
    _bounds = [str(b) for b in buckets] + ["+Inf"]
    """The buckets' `le` labels, the last one counting every pass."""

    def __init__(self) -> None:
        self._counts = [[0] * (len(self.buckets) + 1) for _ in range(3)]
        self._sums = [0.0] * 3
        self._started = 0.0

    def install(self) -> None:
        """Starts timing the collector's passes (once however often it is called)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self._counts[generation][bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[generation] += seconds

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=["generation"])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["generation"])
        for generation, counts in enumerate(self._counts):
            cumulative = list(zip(self._bounds, itertools.accumulate(counts), strict=True))
            family.add_metric([str(generation)], cumulative, self._sums[generation])
        yield family


GC_PAUSES = GcPauses()
REGISTRY.register(GC_PAUSES)


def series_names() -> set[str]:
    """Every series name this module puts on /metrics (counters get _total, histograms
    _bucket/_count/_sum)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names: set[str] = set()
    for value in list(globals().values()):
        if isinstance(value, (MetricWrapperBase, GcPauses)):
            family = next(iter(value.describe()))
            names.update(f"{family.name}{s}" for s in suffixes[family.type])
    return names


def split_method(path: str) -> tuple[str, str]:
    """'/dragoman.v1.ConversationService/Converse' -> ('dragoman.v1.ConversationService', 'Converse')."""
    service, _, method = path.lstrip("/").rpartition("/")
    return service or "unknown", method or path


def serve(address: str, registry: CollectorRegistry = REGISTRY) -> tuple[int, Callable[[], None]]:
    """Serves /metrics on `address` (host:port, port 0 for any free one).

    Returns the bound port and a function that stops the server.
    """
    host, _, port = address.rpartition(":")
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                           registry=registry)
    except (ValueError, OSError) as e:
        raise OSError(f"metrics: cannot serve on {address!r}: {e}") from None
    bound = server.server_port
    log.info("metrics on http://%s:%d/metrics", host or "0.0.0.0", bound)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return bound, stop
