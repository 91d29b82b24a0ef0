"""The embedded PostgreSQL of the single-machine default (PyPI `pgserver`).

`start(data_dir)` starts a private PostgreSQL 16 in `data_dir` (initialised
on first use, ~5 s; later ~0.5 s) listening on a Unix socket only, and
returns a URL to its `dragoman` database. pgserver counts the processes
that use a data directory (under an inter-process lock) and stops the
server when the last one exits, so several processes may call `start` on
one directory; `dragoman up` starts it once and hands the URL to the
services through DRAGOMAN_DATABASE_URL. As root, pgserver runs the server
as its own `pgserver` user.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dragoman import config

log = logging.getLogger(__name__)
logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call at INFO

DATABASE = "dragoman"
_servers: dict[Path, Any] = {}  # kept alive for the life of the process


def default_dir() -> Path:
    return config.cache_dir() / "pgdata"


def start(data_dir: Path) -> str:
    """Starts (or reuses) the server in `data_dir`; returns a URL to its database.
    Blocking: call it off the event loop."""
    data_dir = data_dir.expanduser().resolve()
    server = _servers.get(data_dir)
    if server is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

            data_dir.parent.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(data_dir, cleanup_mode="stop")
        _servers[data_dir] = server
        log.info("embedded PostgreSQL ready", extra={"data_dir": str(data_dir)})
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if exists is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process made it meanwhile
    return str(server.get_uri(DATABASE))
