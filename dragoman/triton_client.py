"""The one Triton client of the services: async gRPC, reused, with timeouts, retries and clear errors.

Every model dragoman hosts on Triton (see `dragoman.hosting`) takes and
returns rows of BYTES: the inputs a row needs and one JSON (or raw float32)
result per row. A model answers each row on its own, so one bad row of a
dynamic batch fails that row only; its error travels back in the row's
result as `{"error": {"code": ..., "message": ...}}` and is raised here as
the matching `dragoman.errors` class.

Failures of Triton itself map to:

* UNAVAILABLE (server down, restarting, model not loaded) -> `errors.Unavailable`
  naming Triton and its address, after `retries` more tries with backoff;
* a call past `timeout_s` -> `errors.DeadlineExceeded`;
* anything else Triton rejects -> `errors.Unavailable` with its message
  (a request the model cannot take never reaches Triton: the engines
  validate first).

The aio channel belongs to the event loop it was made on, so a client keeps
one `InferenceServerClient` per loop and reuses it for every call; the
blocking STT engine runs its calls on a `LoopThread`.

Where Triton is and how patiently to call it: the `[triton]` settings
(`dragoman.config.TritonSettings`: url, timeout_s, retries, backoff_s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from dragoman import config, errors

if TYPE_CHECKING:
    from tritonclient.grpc.aio import InferenceServerClient

    from dragoman import rpc

log = logging.getLogger(__name__)

T = TypeVar("T")
INFO_MODEL = "dragoman-info"
"""The model that lists what a Triton server hosts for dragoman (see dragoman.hosting)."""
TOKEN_HEADER = "triton-grpc-protocol-triton-access-token"
"""Header of PyTriton's access token (statistics and other restricted endpoints)."""
_ERRORS: dict[str, type[errors.DragomanError]] = {
    "INVALID_ARGUMENT": errors.InvalidArgument,
    "FAILED_PRECONDITION": errors.FailedPrecondition,
    "NOT_FOUND": errors.NotFound,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    "UNAVAILABLE": errors.Unavailable,
    "DEADLINE_EXCEEDED": errors.DeadlineExceeded,
}


@dataclass(frozen=True, slots=True)
class Hosted:
    """One model a Triton server hosts for dragoman: its Triton name, role and capabilities."""

    model: str
    role: str
    capabilities: dict[str, Any]


def bytes_rows(values: Iterable[str | bytes]) -> np.ndarray:
    """A [n, 1] BYTES tensor, one row per value."""
    rows = [v.encode() if isinstance(v, str) else v for v in values]
    out = np.empty((len(rows), 1), dtype=object)
    for i, v in enumerate(rows):
        out[i, 0] = v
    return out


def row_results(array: np.ndarray) -> list[Any]:
    """The JSON result of each row of a [n, 1] BYTES output; raises the first row's error."""
    results = [json.loads(bytes(v)) for v in array.reshape(-1)]
    for result in results:
        if isinstance(result, dict) and "error" in result:
            raise error_of(result["error"])
    return results


def error_of(record: Mapping[str, str]) -> errors.DragomanError:
    """The dragoman error a model reported for one row."""
    return _ERRORS.get(record.get("code", ""), errors.DragomanError)(record.get("message", "model error"))


class TritonClient:
    """Calls to one Triton server, from any event loop (one channel per loop, reused)."""

    def __init__(self, options: config.TritonSettings, tls: config.TlsSettings | None = None) -> None:
        """A client of the Triton `options` name; over mutual TLS with `tls`'s files
        when `options.tls` is set."""
        if options.tls and (tls is None or not (tls.ca_file and tls.cert_file and tls.key_file)):
            raise errors.FailedPrecondition(
                "triton.tls is set: set tls.ca_file, tls.cert_file and tls.key_file too")
        self.options = options
        self._tls = tls if options.tls else None
        self._clients: dict[asyncio.AbstractEventLoop, InferenceServerClient] = {}

    def _client(self) -> InferenceServerClient:
        from tritonclient.grpc.aio import InferenceServerClient

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            if self._tls is not None:
                # Triton's certificate names the role `triton`, wherever it is reached
                client = InferenceServerClient(
                    self.options.url, ssl=True, root_certificates=self._tls.ca_file,
                    private_key=self._tls.key_file, certificate_chain=self._tls.cert_file,
                    channel_args=[("grpc.ssl_target_name_override", "triton")])
            else:
                client = InferenceServerClient(self.options.url)
            self._clients[loop] = client
        return client

    async def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """One inference (each input [n, ...] with n rows); retried while Triton is UNAVAILABLE."""
        from tritonclient.grpc import InferInput, InferRequestedOutput
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in inputs.items():
            tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        wanted = [InferRequestedOutput(name) for name in outputs]

        async def call() -> dict[str, np.ndarray]:
            result = await self._client().infer(
                model, tensors, outputs=wanted, client_timeout=self.options.timeout_s
            )
            return {name: result.as_numpy(name) for name in outputs}

        return await self._retrying(call, f"model {model}")

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        from tritonclient.utils import InferenceServerException

        delay_s = self.options.backoff_s
        for attempt in range(self.options.retries + 1):
            try:
                return await call()
            except InferenceServerException as e:
                err = self._mapped(e, what)
                if not isinstance(err, errors.Unavailable) or attempt == self.options.retries:
                    raise err from None
                log.warning("triton unavailable, retrying", extra={"what": what, "attempt": attempt + 1})
                await asyncio.sleep(delay_s)
                delay_s *= 2
        raise AssertionError("unreachable")

    def _mapped(self, e: Exception, what: str) -> errors.DragomanError:
        status = str(getattr(e, "status", lambda: "")() or "")
        message = str(getattr(e, "message", lambda: str(e))() or e)
        if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
            return errors.DeadlineExceeded(
                f"Triton at {self.options.url} did not answer for {what} within {self.options.timeout_s:g} s"
            )
        if "UNAVAILABLE" in status or "unknown model" in message or "not ready" in message:
            return errors.Unavailable(f"Triton at {self.options.url} is unavailable for {what}: {message}")
        return errors.Unavailable(f"Triton at {self.options.url} failed {what}: {status} {message}".strip())

    async def not_ready(self, models: Iterable[str]) -> str | None:
        """Why Triton cannot serve `models` now (server down, a model not ready); None when it can."""
        from tritonclient.utils import InferenceServerException

        client = self._client()
        timeout_s = min(self.options.timeout_s, 5.0)
        try:
            if not await client.is_server_ready(client_timeout=timeout_s):
                return f"Triton at {self.options.url} is not ready"
            for model in models:
                if not await client.is_model_ready(model, client_timeout=timeout_s):
                    return f"Triton model {model} at {self.options.url} is not ready"
        except InferenceServerException as e:
            return self._mapped(e, "readiness").message
        return None

    async def wait_ready(self, models: Iterable[str], timeout_s: float = 60.0) -> None:
        """Waits until Triton serves `models`; Unavailable with the reason after `timeout_s`."""
        models = list(models)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (reason := await self.not_ready(models)) is not None:
            if loop.time() > deadline:
                raise errors.Unavailable(f"{reason} (waited {timeout_s:g} s)")
            await asyncio.sleep(0.2)

    async def hosted(self, role: str) -> list[Hosted]:
        """The models of `role` ("stt", "mt", "tts") the server hosts, from its info model."""
        out = await self.infer(INFO_MODEL, {"ROLE": bytes_rows([role])}, ["INFO"])
        hosted = [Hosted(h["model"], h["role"], h["capabilities"]) for h in row_results(out["INFO"])[0]]
        log.info("models on triton", extra={"url": self.options.url, "role": role,
                                            "models": [h.model for h in hosted]})
        return hosted

    async def statistics(self, model: str, token: str = "") -> dict[str, Any]:
        """Triton's inference statistics of `model` (inference_count, execution_count, ...)."""
        headers = {TOKEN_HEADER: token} if token else None
        stats = await self._client().get_inference_statistics(model, headers=headers, as_json=True)
        return dict(stats["model_stats"][0])

    async def close(self) -> None:
        """Closes the channel of the running loop (others close with their loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()


class LoopThread:
    """An event loop on a daemon thread, so blocking code can use the async client."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs `coro` on the loop and blocks until it ends."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


@runtime_checkable
class TritonBacked(Protocol):
    """An engine whose model lives on Triton: it can say whether Triton serves it now."""

    async def not_ready(self) -> str | None: ...


class HealthWatch:
    """Keeps a service's gRPC health NOT_SERVING while Triton or one of its models is not ready."""

    def __init__(self, service: rpc.Service, engines: Sequence[TritonBacked], interval_s: float) -> None:
        self._service = service
        self._engines = list(engines)
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.reason: str | None = None
        """Why the service is NOT_SERVING now; None while it serves."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="triton-health")

    async def check(self) -> None:
        """One readiness check, and the health status it implies."""
        from grpc_health.v1 import health_pb2

        reasons = [r for e in self._engines if (r := await e.not_ready()) is not None]
        reason = reasons[0] if reasons else None
        if reason != self.reason:
            if reason:
                log.warning("triton not ready: NOT_SERVING", extra={"reason": reason})
            else:
                log.info("triton ready: SERVING")
        self.reason = reason
        serving = health_pb2.HealthCheckResponse
        status = serving.NOT_SERVING if reason else serving.SERVING
        for name in ("", *self._service.service_names):
            await self._service.health.set(name, status)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the watch must outlive a failed check
                log.exception("triton readiness check failed")
            await asyncio.sleep(self._interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def watch_health(
    service: rpc.Service, engines: Iterable[object], interval_s: float = 1.0
) -> HealthWatch | None:
    """Starts a `HealthWatch` over the Triton-backed `engines` of `service`; None if there are none.

    Call it from a service's `create` after building `service`: it stops with the service.
    """
    backed = [e for e in engines if isinstance(e, TritonBacked)]
    if not backed:
        return None
    watch = HealthWatch(service, backed, interval_s)
    watch.start()
    service.on_stop.insert(0, watch.close)
    return watch
