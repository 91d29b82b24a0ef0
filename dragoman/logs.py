"""JSON logging with request context.

`configure()` installs one JSON formatter on the root logger. Context
variables carry the rpc, session and correlation ids into every record, so a
request can be followed across services. Text and tokens are logged only at
DEBUG, through `redact()`, which hides them unless DRAGOMAN_LOG_TEXT=1.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

rpc_id: contextvars.ContextVar[str] = contextvars.ContextVar("rpc_id", default="")
correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")
session_id: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="")

_CONTEXT = {"rpc_id": rpc_id, "correlation_id": correlation_id, "session_id": session_id}
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.service:
            out["service"] = self.service
        for key, var in _CONTEXT.items():
            value = var.get()
            if value:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(service: str = "", level: str | None = None) -> None:
    """Sends JSON records to stderr at DRAGOMAN_LOG_LEVEL (default INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("DRAGOMAN_LOG_LEVEL", "INFO")).upper())


def redact(text: str) -> str:
    """User text for logs: hidden unless DRAGOMAN_LOG_TEXT=1 (debugging only)."""
    if os.environ.get("DRAGOMAN_LOG_TEXT") == "1":
        return text
    return f"<{len(text)} chars>"
