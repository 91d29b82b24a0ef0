"""Bad input through the public API: a precise status and message, and the mesh stays up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import jwt
import pytest

from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from tests.mesh import MeshAddresses, new_client
from tests.rawclient import RawClient, join_request


async def _requests(*items: pb.ConverseRequest) -> AsyncIterator[pb.ConverseRequest]:
    for item in items:
        yield item


async def _status(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    return info.value


async def test_audio_before_join_is_failed_precondition(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    audio = pb.ConverseRequest(audio=pb.AudioChunk(data=b"\0\0" * 1600, sequence=1))
    err = await _status(client.converse(_requests(audio)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "first message must be `join`" in err.details()


async def test_unknown_language_lists_supported(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.create_session("xx")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'xx' is not supported" in info.value.details() and "en, es, fr" in info.value.details()


async def test_malformed_audio_is_invalid_argument(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    session = await client.create_session("en")
    odd = pb.ConverseRequest(audio=pb.AudioChunk(data=b"\0" * 3201, sequence=1))
    err = await _status(client.converse(_requests(join_request(session.session_id), odd)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "odd number of bytes (3201)" in err.details()


async def test_bad_sample_rate_is_invalid_argument(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    session = await client.create_session("en")
    err = await _status(client.converse(_requests(join_request(session.session_id, rate_hz=4000))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sample_rate_hertz" in err.details() and "4000" in err.details()


async def test_wrong_code_is_not_found(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.join_session("000000", "pt")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no session is waiting for code 000000" in info.value.details()


async def test_strangers_cannot_see_a_session(mesh: MeshAddresses) -> None:
    owner = await new_client(mesh.gateway)
    stranger = await new_client(mesh.gateway)
    session = await owner.create_session("en")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=stranger.metadata)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_and_expired_tokens_are_unauthenticated(mesh: MeshAddresses) -> None:
    client = await new_client(mesh.gateway)
    request = sessions_pb2.CreateSessionRequest(language_code="en")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.sessions.CreateSession(request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing access token" in info.value.details()

    claims = jwt.decode(client.tokens.access_token, options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 1
    forged = jwt.encode(claims, "not-the-gateway-key-" + "x" * 32, algorithm="HS256")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.sessions.CreateSession(request, metadata=(("authorization", f"Bearer {forged}"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # the mesh still serves the next call
    session = await client.create_session("en")
    assert len(session.code) == 6


async def test_expired_token_says_so(mesh: MeshAddresses) -> None:
    import dataclasses

    from gateway import server as gateway_server

    short = dataclasses.replace(mesh.settings, auth=dataclasses.replace(
        mesh.settings.auth, access_token_ttl_s=-1))
    service = await gateway_server.create(short)
    port = await service.start("127.0.0.1:0")
    try:
        async with RawClient(f"127.0.0.1:{port}") as client:
            await client.register("late", "late@example.org", "password-123", "en")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.create_session("en")
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "expired" in info.value.details()
    finally:
        await service.stop(0)
