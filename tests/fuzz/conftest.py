"""The fuzz suite's mesh: a real gateway in front of a real session_svc whose model
services run fake engines, its data in a scratch schema. Limits that would turn
every later case into RESOURCE_EXHAUSTED are lifted; the join timeout is short so
that streams never joined end quickly."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dragoman import config
from tests.fuzz.cases import (
    CASES,
    DEFAULT_EXAMPLES,
    EXAMPLES,
    JOIN_TIMEOUT_S,
    MEASURED,
    PASSWORD,
    SECRET,
    serve_gateway,
)
from tests.rawclient import RawClient
from tests.session_svc.stack import scratch_settings

FUZZ_DIR = Path(__file__).parent
TIMEOUT_S = 300
"""The test command's per-test timeout (pyproject.toml)."""
LIFTED = {
    "requests_per_minute": 1_000_000, "sessions_per_hour": 1_000_000, "audio_chunks_per_s": 1e6,
    "audio_burst_chunks": 1_000_000, "registrations_per_hour": 1_000_000, "failed_joins": 1_000_000,
    "failed_joins_per_address": 1_000_000}


@pytest.fixture(scope="session")
def fuzz_settings(settings: config.Settings) -> Iterator[config.Settings]:
    with scratch_settings(settings, "fuzz") as scratch:
        yield dataclasses.replace(
            scratch,
            # the member's token outlives a long run (DRAGOMAN_FUZZ_EXAMPLES)
            auth=dataclasses.replace(scratch.auth, jwt_secret=SECRET, login_failures_free=1_000_000,
                                     access_token_ttl_s=24 * 3600),
            limits=dataclasses.replace(scratch.limits, **LIFTED),  # type: ignore[arg-type]
            # heartbeats often: a stream of a session where nothing happens still answers
            session=dataclasses.replace(scratch.session, join_timeout_s=JOIN_TIMEOUT_S,
                                        heartbeat_interval_s=0.5))


@pytest.fixture(scope="session")
async def gateway(fuzz_settings: config.Settings) -> AsyncIterator[str]:
    async for address in serve_gateway(fuzz_settings):
        yield address


@pytest.fixture(scope="session")
async def member(gateway: str) -> AsyncIterator[RawClient]:
    """A signed-in user whose password no strategy draws, shared by the cases."""
    client = RawClient(gateway)
    await client.register("fuzz-member", "member@example.org", PASSWORD, "en")
    yield client
    await client.channel.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long run (DRAGOMAN_FUZZ_EXAMPLES) gets the per-test timeout scaled with it."""
    if EXAMPLES > DEFAULT_EXAMPLES:
        for item in items:
            if FUZZ_DIR in item.path.parents:
                item.add_marker(pytest.mark.timeout(TIMEOUT_S * EXAMPLES / DEFAULT_EXAMPLES))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        total = sum(CASES.values())
        terminalreporter.write_line(
            f"fuzz: {total} cases: " + ", ".join(f"{k}={v}" for k, v in sorted(CASES.items())))
    for line in MEASURED:
        terminalreporter.write_line(f"fuzz: {line}")
