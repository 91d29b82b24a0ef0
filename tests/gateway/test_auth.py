"""AuthService and access-token checks through a real gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import jwt
import pytest

from dragoman.v1 import auth_pb2, conversation_pb2, sessions_pb2
from gateway import auth
from tests.gateway.conftest import PASSWORD, SECRET, Stubs, bearer, unique_name
from tests.gateway.double import SessionDouble


async def expect_error(awaitable: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def test_register_gives_a_user_and_working_tokens(
    stubs: Stubs, double: SessionDouble
) -> None:
    username, reply = await stubs.register()
    assert reply.user_id
    claims = jwt.decode(reply.tokens.access_token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == reply.user_id
    assert claims["name"] == username
    assert claims["jti"]
    assert claims["exp"] - claims["iat"] == 900
    assert reply.tokens.access_token_expire_time.seconds == claims["exp"]
    refresh_ttl_s = reply.tokens.refresh_token_expire_time.seconds - claims["iat"]
    assert abs(refresh_ttl_s - 7 * 24 * 3600) <= 1
    assert reply.tokens.refresh_token and "." not in reply.tokens.refresh_token

    got = await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-1"),
        metadata=bearer(reply.tokens.access_token),
    )
    assert got.session.participants[0].user_id == reply.user_id
    assert double.calls[-1].asserted[1] == username


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "ab", "username must be 3 to 32"),
        ("username", "x" * 33, "username must be 3 to 32"),
        ("username", "bad name!", "username must be 3 to 32"),
        ("email", "not-an-email", "email must be an address"),
        ("email", "a@b", "email must be an address"),
        ("password", "short", "password must be 8 to 128 characters"),
        ("password", "p" * 129, "password must be 8 to 128 characters"),
        ("preferred_language_code", "", "preferred_language_code must be a BCP-47 code"),
        ("preferred_language_code", "english please", "preferred_language_code must be"),
    ],
)
async def test_register_rejects_bad_fields(
    stubs: Stubs, field: str, value: str, message: str
) -> None:
    username = unique_name()
    request = auth_pb2.RegisterRequest(
        username=username, email=f"{username}@example.org", password=PASSWORD,
        preferred_language_code="pt-BR",
    )
    setattr(request, field, value)
    details = await expect_error(stubs.auth.Register(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert message in details


async def test_register_names_every_bad_field(stubs: Stubs) -> None:
    details = await expect_error(
        stubs.auth.Register(auth_pb2.RegisterRequest(username="x", email="y")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    for field in ("username", "email", "password", "preferred_language_code"):
        assert field in details


async def test_taken_username_or_email_already_exists(stubs: Stubs) -> None:
    username, _ = await stubs.register()
    same_name = auth_pb2.RegisterRequest(
        username=username.upper(), email="other-" + f"{username}@example.org",
        password=PASSWORD, preferred_language_code="en",
    )
    details = await expect_error(stubs.auth.Register(same_name), grpc.StatusCode.ALREADY_EXISTS)
    assert "username" in details
    same_email = auth_pb2.RegisterRequest(
        username=unique_name(), email=f"{username}@EXAMPLE.org", password=PASSWORD,
        preferred_language_code="en",
    )
    details = await expect_error(stubs.auth.Register(same_email), grpc.StatusCode.ALREADY_EXISTS)
    assert "email" in details


async def test_login_gives_tokens_and_hides_which_credential_was_wrong(stubs: Stubs) -> None:
    username, registered = await stubs.register()
    reply = await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    assert reply.user_id == registered.user_id
    assert reply.tokens.refresh_token != registered.tokens.refresh_token

    wrong_password = await expect_error(
        stubs.auth.Login(auth_pb2.LoginRequest(username=username, password="wrong password")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    unknown_user = await expect_error(
        stubs.auth.Login(auth_pb2.LoginRequest(username=unique_name(), password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert wrong_password == unknown_user == "wrong username or password"


async def refresh(stubs: Stubs, refresh_token: str) -> auth_pb2.TokenPair:
    reply: auth_pb2.RefreshTokenResponse = await stubs.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=refresh_token)
    )
    return reply.tokens


async def refresh_fails(stubs: Stubs, refresh_token: str) -> str:
    return await expect_error(
        stubs.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_refresh_rotates_the_refresh_token(stubs: Stubs) -> None:
    _, registered = await stubs.register()
    first = registered.tokens
    second = await refresh(stubs, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    third = await refresh(stubs, second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    got = await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-1"), metadata=bearer(third.access_token)
    )
    assert got.session.participants[0].user_id == registered.user_id


async def test_reusing_a_spent_refresh_token_revokes_the_whole_login(stubs: Stubs) -> None:
    username, registered = await stubs.register()
    other_login = await stubs.auth.Login(
        auth_pb2.LoginRequest(username=username, password=PASSWORD)
    )
    spent = registered.tokens.refresh_token
    latest = await refresh(stubs, spent)

    assert "already used" in await refresh_fails(stubs, spent)
    assert await refresh_fails(stubs, latest.refresh_token) == auth.REVOKED_REFRESH
    # another login of the same user is another family: untouched
    assert (await refresh(stubs, other_login.tokens.refresh_token)).refresh_token


async def test_logout_revokes_the_refresh_token(stubs: Stubs) -> None:
    _, registered = await stubs.register()
    token = registered.tokens.refresh_token
    await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token=token))
    assert await refresh_fails(stubs, token) == auth.REVOKED_REFRESH
    # unknown tokens log out quietly; an empty one is a bad request
    await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token="never-issued"))
    details = await expect_error(
        stubs.auth.Logout(auth_pb2.LogoutRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert details == "refresh_token is required"


async def test_unknown_refresh_token_is_unauthenticated(stubs: Stubs) -> None:
    assert await refresh_fails(stubs, "garbage") == "invalid refresh token"


def crafted(secret: str | None = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    now = int(time.time())
    body = {"sub": "u-1", "name": "mallory", "sid": "login-1", "iat": now, "exp": now + 3600,
            "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, secret, algorithm=algorithm)


def expired() -> str:
    now = int(time.time())
    return crafted(iat=now - 1000, exp=now - 100)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (lambda: (), "missing access token"),
        (lambda: (("authorization", "Bearer "),), "missing access token"),
        (lambda: (("authorization", "Bearer garbage"),), "invalid access token"),
        (lambda: (("authorization", f"Basic {crafted()}"),), "invalid access token"),
        (lambda: bearer(crafted(secret="some-other-secret-of-at-least-32-bytes")),
         "invalid access token"),
        (lambda: bearer(crafted(secret=None, algorithm="none")), "invalid access token"),
        (lambda: bearer(crafted(sub="")), "invalid access token"),
        (lambda: bearer(crafted(sid="")), "invalid access token"),
        (lambda: bearer(expired()), "access token expired"),
    ],
    ids=["none", "empty", "garbage", "not-bearer", "other-key", "alg-none", "no-subject",
         "no-login", "expired"],
)
async def test_bad_access_tokens_are_unauthenticated(
    stubs: Stubs,
    double: SessionDouble,
    metadata: Callable[[], tuple[tuple[str, str], ...]],
    message: str,
) -> None:
    details = await expect_error(
        stubs.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id="s-1"), metadata=metadata()
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert details == message
    assert double.calls == []


async def test_a_crafted_token_with_the_right_key_is_accepted_for_a_standing_login(
    stubs: Stubs, double: SessionDouble
) -> None:
    """The other side of the check above: the signature, the expiry and that the
    login it names stands are what matter."""
    username, user = await stubs.register()
    login = jwt.decode(user.tokens.access_token, SECRET, algorithms=["HS256"])["sid"]
    await stubs.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id="s-1"),
        metadata=bearer(crafted(sub=user.user_id, name=username, sid=login)))
    assert double.calls[-1].asserted == (user.user_id, username)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # another user's login, or none
        await stubs.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id="s-1"),
            metadata=bearer(crafted(sub="u-1", name="mallory", sid=login)))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == auth.REVOKED_TOKEN
    assert double.calls[-1].asserted == (user.user_id, username)


async def test_every_proxied_call_needs_a_token(stubs: Stubs, double: SessionDouble) -> None:
    join = conversation_pb2.JoinConversation(session_id="s-1")
    calls = [
        stubs.sessions.CreateSession(sessions_pb2.CreateSessionRequest(language_code="en")),
        stubs.sessions.JoinSession(
            sessions_pb2.JoinSessionRequest(code="123456", language_code="en")
        ),
        stubs.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id="s-1")),
        stubs.conversation.SendAudio(conversation_pb2.SendAudioRequest(session_id="s-1")),
    ]
    for call in calls:
        details = await expect_error(call, grpc.StatusCode.UNAUTHENTICATED)
        assert details == "missing access token"

    listen = stubs.conversation.Listen(conversation_pb2.ListenRequest(join=join))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in listen:
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    converse = stubs.conversation.Converse(metadata=bearer("garbage"))
    await converse.write(conversation_pb2.ConverseRequest(join=join))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await converse.read()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "invalid access token"
    assert double.calls == []
