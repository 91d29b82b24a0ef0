"""Strategies of hostile input and the property every case must keep: a precise
status (never UNKNOWN or INTERNAL) whose message, for a bad argument, names the field."""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterable

import grpc
import jwt
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dragoman import config
from dragoman.v1 import conversation_pb2 as pb
from gateway import server
from tests.conftest import TESTDATA, started
from tests.rawclient import RawClient, join_request, speak
from tests.session_svc.conftest import utterance
from tests.session_svc.stack import session_stack

SECRET = "fuzz-suite-jwt-secret-of-at-least-32-bytes"
PASSWORD = "the member's password, never drawn"
JOIN_TIMEOUT_S = 1.0
FLEURS = TESTDATA / "speech" / "fleurs"

DEFAULT_EXAMPLES = 25
EXAMPLES = int(os.environ.get("DRAGOMAN_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
"""Examples per property; 25 keeps the suite near a minute on 2 cores (raise it for long runs)."""
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture])

CASES: collections.Counter[str] = collections.Counter()
"""Calls made per RPC in this run (the report's case count)."""
MEASURED: list[str] = []
"""What the slowloris checks measured, for the run's summary."""

IMPRECISE = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})

# -- strategies ---------------------------------------------------------------------

EDGE_TEXT = (
    "", " ", "\x00", "a\x00b", "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark, Hebrew
    "\u202eevil", "e\u0301\u0301\u0301", "Z\u0351\u0352\u0353\u0354\u0355" * 40,  # combining
    "\U0001f600" * 50, "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\ufeffbom", "\uffff",
    "x" * 10_000, "\u00e9" * 10_000, "\U0001f600" * 10_000, "İı", "ǅ", "\n\r\t", "%s%n{0}",
    "' OR 1=1 --", "../../etc/passwd", "en\x00", "EN", "pt-BR", "en-" + "a" * 300, "123456",
    "00000\u0661", "\uff11\uff12\uff13\uff14\uff15\uff16",  # Arabic-Indic and fullwidth digits
)
texts = st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=64),
                  st.text(min_size=2000, max_size=12_000, alphabet=st.characters(codec="utf-8")))
languages = st.one_of(st.sampled_from(("en", "pt", "es", "xx", "zh-Hant-TW", "")), texts)
int32s = st.one_of(st.sampled_from((0, -1, 1, 2, 8, 9, 8000, 16000, 48000, 2**31 - 1, -(2**31))),
                   st.integers(-(2**31), 2**31 - 1))
uint64s = st.one_of(st.sampled_from((0, 1, 2**63, 2**64 - 1)), st.integers(0, 2**64 - 1))
encodings = st.sampled_from((0, 1, 2, 3, 99, -1))
audio_bytes = st.one_of(
    st.binary(max_size=4096), st.sampled_from((b"", b"\0", b"OggS" + b"\0" * 60, b"\xff" * 65_536,
                                               b"\0" * 65_537, b"\x7f\xff" * 40_000)))


def joins(session_ids: st.SearchStrategy[str]) -> st.SearchStrategy[pb.JoinConversation]:
    return st.builds(
        pb.JoinConversation, session_id=session_ids, encoding=encodings,
        sample_rate_hertz=int32s, output_sample_rate_hertz=int32s, resume_after_sequence=uint64s,
        history_key=st.one_of(st.just(b""), st.binary(min_size=31, max_size=33), st.binary()))


chunks = st.builds(pb.AudioChunk, data=audio_bytes, sequence=uint64s)


def converse_requests(session_ids: st.SearchStrategy[str]) -> st.SearchStrategy[pb.ConverseRequest]:
    return st.one_of(
        st.builds(lambda j: pb.ConverseRequest(join=j), joins(session_ids)),
        st.builds(lambda c: pb.ConverseRequest(audio=c), chunks),
        st.just(pb.ConverseRequest(heartbeat=pb.ClientHeartbeat())),
        st.just(pb.ConverseRequest(leave=pb.LeaveConversation())),
        st.just(pb.ConverseRequest()),  # no oneof set at all
    )


def token_kinds(client: RawClient) -> st.SearchStrategy[tuple[str, tuple[tuple[str, str], ...]]]:
    """(kind, metadata) of a bad `authorization`; every one must be UNAUTHENTICATED."""
    claims = jwt.decode(client.tokens.access_token, options={"verify_signature": False})

    def signed(key: str, **changes: object) -> str:
        return jwt.encode({**claims, **changes}, key, algorithm="HS256")

    now = int(time.time())
    bearer = {
        "refresh-as-access": client.tokens.refresh_token,
        "expired": signed(SECRET, iat=now - 7200, exp=now - 3600),
        "other-audience": signed(SECRET, aud="someone-else"),
        "other-key": signed("x" * 48),
        "alg-none": jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
        "no-subject": signed(SECRET, sub=""),
        "subject-not-text": signed(SECRET, sub=12),
        "empty": "",
    }
    Metadata = tuple[tuple[str, str], ...]
    cases: list[tuple[str, Metadata]] = [
        (kind, (("authorization", f"Bearer {token}"),)) for kind, token in bearer.items()]
    cases += [
        ("missing", ()),
        ("no-scheme", (("authorization", client.tokens.access_token),)),
        ("basic", (("authorization", "Basic dXNlcjpwYXNz"),)),
        ("twice", (("authorization", f"Bearer {client.tokens.access_token}"),) * 2),
    ]
    # metadata values are printable ASCII (grpc refuses to send anything else)
    garbage = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=200).map(
        lambda t: ("garbage", (("authorization", f"Bearer {t}"),)))
    return st.one_of(st.sampled_from(cases), garbage)


async def serve_gateway(settings: config.Settings) -> AsyncIterator[str]:
    """A gateway in front of session_svc and fake model services per `settings`."""
    async with session_stack(settings) as stack:
        async for address in started(await server.create(stack.settings)):
            yield address


# -- the property -------------------------------------------------------------------

def precise(err: grpc.aio.AioRpcError, rpc: str, fields: Iterable[str] = ()) -> grpc.StatusCode:
    """Asserts the failure of `rpc` is precise: a code a caller can act on, a message,
    and for INVALID_ARGUMENT a message naming one of `fields` (when given)."""
    code = err.code()
    assert code not in IMPRECISE, f"{rpc}: {code.name} {err.details()!r}"
    assert err.details(), f"{rpc}: {code.name} without a message"
    fields = tuple(fields)
    if code == grpc.StatusCode.INVALID_ARGUMENT and fields:
        assert any(f in err.details() for f in fields), f"{rpc}: message names none of {fields}: " \
            f"{err.details()!r}"
    return code


async def outcome(rpc: str, call: Awaitable[object], fields: Iterable[str] = ()) -> grpc.StatusCode:
    """The status of one unary call, checked by `precise`."""
    CASES[rpc] += 1
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return precise(err, rpc, fields)
    return grpc.StatusCode.OK


async def stream_outcome(
    rpc: str, call: grpc.aio.Call, fields: Iterable[str] = (), timeout_s: float = 15.0,
    events: int = 1_000_000,
) -> grpc.StatusCode:
    """The status a stream ends with (reading at most `events`, then cancelling:
    OK); a stream still open after `timeout_s` fails the case."""
    CASES[rpc] += 1
    seen = 0

    async def drain() -> None:
        nonlocal seen
        async for _ in call:  # type: ignore[attr-defined]
            seen += 1
            if seen >= events:
                return

    try:
        await asyncio.wait_for(drain(), timeout_s)
    except grpc.aio.AioRpcError as err:
        return precise(err, rpc, fields)
    except TimeoutError:
        raise AssertionError(f"{rpc}: stream neither ended nor failed in {timeout_s} s") from None
    finally:
        call.cancel()
    return grpc.StatusCode.OK


CONVERSE = "/dragoman.v1.ConversationService/Converse"


async def client_stream_outcome(
    rpc: str, address: str, requests: Iterable[object], metadata: Iterable[tuple[str, str]] = (),
    fields: Iterable[str] = (), path: str = CONVERSE, timeout_s: float = 15.0,
) -> grpc.StatusCode:
    """`stream_outcome` of a call that streams `requests` (messages, or bytes as they are),
    made with the sync client in a thread: grpc.aio's client reports a write that
    races the server's early status as INTERNAL "Internal error from Core" instead of
    that status (grpc/grpc#36066), which is no answer of the server's."""
    CASES[rpc] += 1

    def serialize(request: object) -> bytes:
        return request if isinstance(request, bytes) else request.SerializeToString()  # type: ignore[attr-defined]

    def call() -> grpc.RpcError | None:
        with grpc.insecure_channel(address) as channel:
            responses = channel.stream_stream(path, request_serializer=serialize,
                                              response_deserializer=lambda b: b)(
                iter(list(requests)), metadata=tuple(metadata), timeout=timeout_s)
            try:
                for _ in responses:
                    pass
            except grpc.RpcError as err:
                return err
        return None

    err = await asyncio.to_thread(call)
    if err is None:
        return grpc.StatusCode.OK
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and err.details() == "Deadline Exceeded":
        raise AssertionError(f"{rpc}: stream neither ended nor failed in {timeout_s} s")
    return precise(err, rpc, fields)  # type: ignore[arg-type]


async def requests_of(items: Iterable[pb.ConverseRequest]) -> AsyncIterator[pb.ConverseRequest]:
    for item in items:
        yield item


async def still_converses(address: str) -> None:
    """A short scripted exchange through the mesh: Ana says a FLEURS clip, Ben gets
    its transcription and translation."""
    ana, ben = RawClient(address), RawClient(address)
    try:
        suffix = os.urandom(4).hex()
        await ana.register(f"ana-{suffix}", f"ana-{suffix}@example.org", "password-123", "en")
        await ben.register(f"ben-{suffix}", f"ben-{suffix}@example.org", "password-123", "pt")
        session = await ana.create_session("en")
        await ben.join_session(session.code, "pt")
        ben_requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        ben_requests.put_nowait(join_request(session.session_id))

        async def ben_stream() -> AsyncIterator[pb.ConverseRequest]:
            while (r := await ben_requests.get()) is not None:
                yield r

        ben_call = ben.converse(ben_stream())
        said = [r async for r in speak(utterance(FLEURS), 16_000, realtime=False)]
        ana_call = ana.converse(requests_of([join_request(session.session_id), *said,
                                             pb.ConverseRequest(leave=pb.LeaveConversation())]))
        kinds = set()

        async def listen() -> None:
            async for response in ben_call:
                kinds.add(response.event.WhichOneof("kind"))
                if "processing_ended" in kinds:
                    return

        await asyncio.wait_for(listen(), 30)
        assert {"transcription", "translation"} <= kinds, kinds
        ben_requests.put_nowait(None)
        ana_call.cancel()
        ben_call.cancel()
    finally:
        await ana.channel.close()
        await ben.channel.close()
