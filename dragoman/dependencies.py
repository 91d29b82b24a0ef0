"""Whether the services a service calls are up, from their gRPC health.

`Dependencies` follows each dependency's `grpc.health.v1.Health/Watch` on
the caller's own channel to it. A dependency is up while its watch stream
says SERVING; it is down from the moment the stream breaks (the process
died: the connection closed) or says anything else, until a new watch says
SERVING again. The watch waits for the channel to be ready (wait_for_ready),
so it is also what makes the channel reconnect to a restarted process before
a caller needs it, with the channel's backoff (rpc.channel_options).

While any dependency is down, the service's own health is NOT_SERVING
(`hold` on `rpc.Service`), and callers can wait, bounded, for a dependency
to come back (`wait_up`) instead of failing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dragoman import rpc

log = logging.getLogger(__name__)

RETRY_S = (0.1, 1.0)
"""Wait before watching again after a watch ended: first, and at most (doubling)."""
HOLD = "dependencies"
"""The key of this watch's hold on the service's health."""


class Dependencies:
    """The health of the services behind `channels` (name -> channel), followed
    until `close`. `service` (not started yet): its health is NOT_SERVING until
    every one is up, and again while one is down."""

    def __init__(self, channels: Mapping[str, Any], service: rpc.Service | None = None) -> None:
        self._channels = dict(channels)
        self._service = service
        self._up: dict[str, bool] = dict.fromkeys(self._channels, False)
        self._changed = asyncio.Event()
        self.down_since: dict[str, float] = {name: time.monotonic() for name in self._channels}
        """When each dependency that is down now went down (time.monotonic())."""
        if service is not None:
            service.holds[HOLD] = "waiting for " + ", ".join(self._channels)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._watch(name, ch), name=f"health-{name}")
            for name, ch in self._channels.items()]

    def up(self, name: str) -> bool:
        return self._up[name]

    def down(self) -> list[str]:
        """The dependencies down now, in the order given."""
        return [name for name, up in self._up.items() if not up]

    async def wait_up(self, name: str, timeout_s: float) -> bool:
        """Whether `name` is up, waiting at most `timeout_s` for it to come back."""
        deadline = time.monotonic() + timeout_s
        while not self._up[name]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def _set(self, name: str, up: bool) -> None:
        if self._up[name] == up:
            return
        self._up[name] = up
        if up:
            log.info("%s is up", name, extra={"down_s": round(
                time.monotonic() - self.down_since.pop(name, time.monotonic()), 3)})
        else:
            self.down_since[name] = time.monotonic()
            log.warning("%s is down", name)
        self._changed.set()
        if self._service is not None:
            down = self.down()
            await self._service.hold(HOLD, f"{', '.join(down)} down" if down else None)

    async def _watch(self, name: str, channel: Any) -> None:
        # a trunked channel (dragoman.mux) would carry the watch on its trunk: use its own channel
        stub = health_pb2_grpc.HealthStub(getattr(channel, "channel", channel))
        retry_s = RETRY_S[0]
        while True:
            try:
                call = stub.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True)
                async for reply in call:
                    await self._set(name, reply.status == health_pb2.HealthCheckResponse.SERVING)
                    retry_s = RETRY_S[0]
            except grpc.aio.AioRpcError as e:
                log.debug("health watch of %s ended: %s", name, e.code().name)
            await self._set(name, False)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, RETRY_S[1])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

