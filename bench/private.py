"""Private PostgreSQL and Redis servers a benchmark may SIGKILL (bench.chaos).

The machine's own servers are shared and must live; these run from Debian's
binaries in a scratch folder, on free loopback ports, and die with the run.
A kill takes the server and every process it started, as when a container
or host dies: a postmaster killed alone leaves its backends (each a session of
its own) holding the shared memory, and the next one may refuse to start.
The server's user is set by `setpriv` in the exec'd child, not by a fork of
this process (its gRPC threads' fork handlers crash such a child now and then).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

PG_BINARIES = "/usr/lib/postgresql"
PG_USER = "postgres"
"""initdb and postgres refuse to run as root: as root the server runs as this user."""


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            out.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    versions = sorted(Path(PG_BINARIES).glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise SystemExit(f"no PostgreSQL binaries under {PG_BINARIES}/*/bin (Debian's postgresql)")
    return versions[-1].parent


class Server:
    """One server process (group) that can be killed and started again on its port."""

    name = "server"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = _free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_path = work / f"{self.name}.log"

    def _command(self) -> Sequence[str]:
        raise NotImplementedError

    def _user(self) -> str | None:
        return None

    def _as_user(self, command: Sequence[str]) -> list[str]:
        user = self._user()
        if user is None:
            return list(command)
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]

    def _spawn(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                self._as_user(self._command()), stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.work)

    async def _ready(self) -> bool:
        raise NotImplementedError

    async def start(self, timeout_s: float = 60.0) -> float:
        """Starts the server; returns once it answers, the seconds that took."""
        started = time.monotonic()
        self._spawn()
        assert self.popen is not None
        while not await self._ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def kill(self) -> None:
        """SIGKILL to the server and all it started; returns once they are gone."""
        if self.popen is None:
            return
        pids = _tree(self.popen.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.popen.poll() is None:
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 5.0
        while any(map(_alive, pids[1:])) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            deadline = time.monotonic() + 5.0
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.popen.poll() is None:
                await self.kill()


class Postgres(Server):
    """A PostgreSQL cluster of its own, trust auth on loopback, in a folder of its own
    (the server's user must reach it: not under a root-only temporary folder)."""

    name = "postgres"

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="dragoman-bench-pg-")))
        self.bin = _pg_bin()
        self.data = self.work / "pgdata"
        self.url = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _user(self) -> str | None:
        return PG_USER if os.geteuid() == 0 else None

    def init(self) -> None:
        user = self._user()
        if user is not None:
            entry = pwd.getpwnam(user)
            shutil.chown(self.work, entry.pw_uid, entry.pw_gid)
        subprocess.run(self._as_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER,
                                      "--auth=trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, cwd=self.work)

    def _command(self) -> Sequence[str]:
        # fsync off: the kill is of the processes, not of the machine, so nothing
        # acknowledged is lost and the disk is not the bench's bottleneck
        return [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.work}",
                "-c", "fsync=off", "-c", "max_connections=200"]

    async def stop(self) -> None:
        await super().stop()
        shutil.rmtree(self.work, ignore_errors=True)

    async def _ready(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=1)
        except psycopg.OperationalError:
            return False
        await conn.close()
        return True


class Redis(Server):
    """A redis-server of its own, no persistence."""

    name = "redis"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> Sequence[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("no redis-server on PATH (Debian's redis-server)")
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.work)]

    async def _ready(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
