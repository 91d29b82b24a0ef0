"""The whole mesh in the test process: five real gRPC servers on loopback (e2e, browser)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from dragoman import config
from dragoman.client import Client


@dataclasses.dataclass
class MeshAddresses:
    settings: config.Settings
    gateway: str
    stt: str
    mt: str
    tts: str


@pytest.fixture(scope="session")
async def mesh(settings: config.Settings, models_dir: object) -> AsyncIterator[MeshAddresses]:
    from gateway import server as gateway_server
    from mt_svc import server as mt_server
    from session_svc import server as session_server
    from stt_svc import server as stt_server
    from tts_svc import server as tts_server

    services = []
    ports: dict[str, int] = {}
    try:
        for name, module in (("stt", stt_server), ("mt", mt_server), ("tts", tts_server)):
            service = await module.create(settings)
            services.append(service)
            ports[name] = await service.start("127.0.0.1:0")
        addresses = dataclasses.replace(
            settings.addresses, **{n: f"127.0.0.1:{p}" for n, p in ports.items()})
        session = await session_server.create(dataclasses.replace(settings, addresses=addresses))
        services.append(session)
        ports["session"] = await session.start("127.0.0.1:0")
        addresses = dataclasses.replace(addresses, session=f"127.0.0.1:{ports['session']}")
        full = dataclasses.replace(settings, addresses=addresses)
        gateway = await gateway_server.create(full)
        services.append(gateway)
        ports["gateway"] = await gateway.start("127.0.0.1:0")
        yield MeshAddresses(full, f"127.0.0.1:{ports['gateway']}", addresses.stt, addresses.mt, addresses.tts)
    finally:
        for service in reversed(services):
            await service.stop(1.0)


_users = 0


async def new_client(address: str, language: str = "en") -> Client:
    """A registered, logged-in client with a fresh user."""
    global _users
    _users += 1
    client = Client(address)
    name = f"user{_users}"
    await client.register(name, f"{name}@example.org", "password-123", language)
    return client
