"""Random bytes as the serialized request of every public method: the gateway answers
with a precise status (a request that does not parse is INVALID_ARGUMENT) and stays up."""

from __future__ import annotations

import grpc
from hypothesis import example, given
from hypothesis import strategies as st

from dragoman.v1 import auth_pb2, conversation_pb2, recording_pb2, sessions_pb2, vocabulary_pb2
from tests.fuzz.cases import FUZZ, client_stream_outcome, outcome, still_converses, stream_outcome
from tests.rawclient import RawClient, join_request

METHODS = sorted(
    (f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming)
    for file in (auth_pb2, sessions_pb2, conversation_pb2, vocabulary_pb2, recording_pb2)
    for service in file.DESCRIPTOR.services_by_name.values()
    for method in service.methods)


LOGIN = ("/dragoman.v1.AuthService/Login", False, False)
CONVERSE = ("/dragoman.v1.ConversationService/Converse", True, True)
JOIN = join_request("0" * 32).SerializeToString()


def _identity(data: bytes) -> bytes:
    return data


@FUZZ
@example(method=LOGIN, payload=[b"\xff\xff\xff"], signed_in=True)  # was UNKNOWN
@example(method=CONVERSE, payload=[b"\x0a\x05"], signed_in=True)  # was INTERNAL
@example(method=CONVERSE, payload=[JOIN, b"\x0a\x05"], signed_in=True)  # a bad second message
@given(method=st.sampled_from(METHODS), payload=st.lists(st.binary(max_size=512), min_size=1, max_size=4),
       signed_in=st.booleans())
async def test_random_bytes_get_a_precise_status(
    gateway: str, member: RawClient, method: tuple[str, bool, bool], payload: list[bytes], signed_in: bool,
) -> None:
    path, client_streaming, server_streaming = method
    metadata = member.metadata if signed_in else ()
    channel = member.channel
    kwargs = {"request_serializer": _identity, "response_deserializer": _identity}
    if client_streaming:
        await client_stream_outcome(path, gateway, payload, metadata, path=path, timeout_s=10)
    elif server_streaming:
        call = channel.unary_stream(path, **kwargs)(payload[0], metadata=metadata)
        await stream_outcome(path, call, timeout_s=10, events=2)
    else:
        await outcome(path, channel.unary_unary(path, **kwargs)(payload[0], metadata=metadata))


async def test_bytes_after_a_good_join_are_invalid_argument(gateway: str, member: RawClient) -> None:
    """The gateway's pump, not session_svc, parses the later messages of a Converse."""
    session = await member.create_session("en")
    payload = [join_request(session.session_id).SerializeToString(), b"\x0a\x05"]
    code = await client_stream_outcome("Converse", gateway, payload, member.metadata, ("ConverseRequest",))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # was CANCELLED


async def test_an_unknown_method_is_unimplemented(member: RawClient) -> None:
    call = member.channel.unary_unary("/dragoman.v1.AuthService/Nope", request_serializer=_identity,
                                      response_deserializer=_identity)(b"")
    assert await outcome("Nope", call) == grpc.StatusCode.UNIMPLEMENTED


async def test_the_mesh_still_serves_a_conversation(gateway: str) -> None:
    await still_converses(gateway)
