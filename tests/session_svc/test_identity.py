"""session_svc acts only for users a gateway vouches for (issue 27, defect 1):
metadata anyone can write gets UNAUTHENTICATED, on plain gRPC and on trunks."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from dragoman import assertion, config, mux
from dragoman.assertion import IDENTITY_HEADER, Assertions
from dragoman.errors import FailedPrecondition, Unauthenticated
from dragoman.v1 import sessions_pb2
from tests.conftest import ASSERTIONS, IDENTITY_KEY
from tests.session_svc.conftest import Caller, answers
from tests.session_svc.stack import Stack

OTHER_KEY = b"not-the-mesh-key-but-long-enough-0123456789"


def _signed(key: bytes = IDENTITY_KEY.encode(), **claims: object) -> str:
    now = int(time.time())
    body = {"sub": "victim", "name": "Victim", "aud": "session_svc", "iss": "gateway",
            "iat": now, "exp": now + 60, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="HS256")


FORGERIES = {
    # the probe of issue 27: the old identity headers alone
    "old-headers": ((("x-dragoman-user-id", "victim"), ("x-dragoman-user-name", "Victim")),
                    assertion.MISSING),
    "none": ((), assertion.MISSING),
    "garbage": (((IDENTITY_HEADER, "garbage"),), assertion.MALFORMED),
    "other-key": (((IDENTITY_HEADER, _signed(OTHER_KEY)),), assertion.BAD_SIGNATURE),
    "expired": (((IDENTITY_HEADER, _signed(iat=int(time.time()) - 600,
                                           exp=int(time.time()) - 540)),), assertion.EXPIRED),
    "other-audience": (((IDENTITY_HEADER, _signed(aud="mt_svc")),), assertion.WRONG_AUDIENCE),
    "long-lived": (((IDENTITY_HEADER, _signed(exp=int(time.time()) + 86400)),),
                   assertion.MALFORMED),
    "no-subject": (((IDENTITY_HEADER, _signed(sub=None)),), assertion.MALFORMED),
    "two": (((IDENTITY_HEADER, _signed()), (IDENTITY_HEADER, _signed())), assertion.MALFORMED),
}


@pytest.mark.parametrize("trunk", [False, True], ids=["grpc", "trunk"])
@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_caller_without_a_valid_assertion_cannot_act_as_a_user(
    plumbing: Stack, forgery: str, trunk: bool
) -> None:
    victim = Caller(plumbing.session, "victim")
    session = await victim.create("en")
    metadata, message = FORGERIES[forgery]
    channel = mux.channel(plumbing.session, trunk=trunk)
    try:
        # the live stream too
        assert await answers(channel, session.session_id, metadata) == {("UNAUTHENTICATED", message)}
    finally:
        await channel.close()
        await victim.sessions.EndSession(
            sessions_pb2.EndSessionRequest(session_id=session.session_id), metadata=victim.metadata)
        await victim.close()


async def test_a_valid_assertion_works_on_a_trunk(plumbing: Stack) -> None:
    caller = Caller(plumbing.session, "trunk-user", trunk=True)
    try:
        session = await caller.create("en")
        got = await caller.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=caller.metadata)
        assert got.session.participants[0].user_id == "trunk-user"
        assert got.session.participants[0].display_name == "Trunk-User"
    finally:
        await caller.close()


def test_assertions_round_trip_and_refuse_what_they_did_not_sign() -> None:
    signed = ASSERTIONS.sign("u-1", "Ann")
    assert ASSERTIONS.verify(signed) == assertion.Asserted("u-1", "Ann")
    with pytest.raises(Unauthenticated, match=assertion.BAD_SIGNATURE):
        Assertions(OTHER_KEY).verify(signed)
    stale = Assertions(IDENTITY_KEY.encode(), clock=lambda: time.time() - 120).sign("u-1", "Ann")
    with pytest.raises(Unauthenticated, match="expired"):
        ASSERTIONS.verify(stale)


def test_the_key_comes_from_settings_a_file_or_one_generated_per_machine(tmp_path: Path) -> None:
    assert assertion.load_key(config.AuthSettings(identity_key="k" * 40)) == b"k" * 40
    key_file = tmp_path / "key"
    key_file.write_text("f" * 40 + "\n")
    assert assertion.load_key(config.AuthSettings(identity_key_file=str(key_file))) == b"f" * 40
    generated = tmp_path / "cache" / "identity.key"
    first = assertion.load_key(config.AuthSettings(), generated_file=generated)
    assert assertion.load_key(config.AuthSettings(), generated_file=generated) == first
    assert len(first) >= assertion.MIN_KEY_BYTES and generated.stat().st_mode & 0o077 == 0
    with pytest.raises(FailedPrecondition, match="needs 32 or more"):
        assertion.load_key(config.AuthSettings(identity_key="short"))
    with pytest.raises(FailedPrecondition, match="does-not-exist"):
        assertion.load_key(config.AuthSettings(identity_key_file=str(tmp_path / "does-not-exist")))


def test_an_assertion_is_reused_for_half_its_life_and_remembered_until_it_expires() -> None:
    now = [1_000_000.0]
    signer = Assertions(IDENTITY_KEY.encode(), clock=lambda: now[0])
    verifier = Assertions(IDENTITY_KEY.encode(), clock=lambda: now[0])
    first = signer.sign("u-1", "Ann")
    now[0] += assertion.REUSE_S - 1
    assert signer.sign("u-1", "Ann") == first and signer.sign("u-2", "Bo") != first
    assert verifier.verify(first) == assertion.Asserted("u-1", "Ann")
    now[0] += 2
    second = signer.sign("u-1", "Ann")
    assert second != first
    now[0] = 1_000_000.0 + assertion.TTL_S + assertion.LEEWAY_S + 1
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(first)  # remembered, but not past its expiry
