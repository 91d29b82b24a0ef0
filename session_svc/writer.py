"""The shape of session_svc's background writers (the translation-log journal, the
hand-over's state and tails, recordings): callers hand them what to store and go on;
one task per replica writes it, off the conversation's path."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundWriter:
    """A writer whose task (`_task`, started on first use) is stopped by `close`."""

    _task: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        """Waits until everything handed over so far is written (or failed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Writes what is pending, then stops the task."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
