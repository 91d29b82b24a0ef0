"""The exceptions every call raises: one class per kind of failure, each keeping
the gRPC status code and the server's message.

    try:
        await client.login("ana", "wrong")
    except dragoman_client.AuthenticationError as e:
        print(e.code, e.message)   # StatusCode.UNAUTHENTICATED, "wrong username or password"
"""

from __future__ import annotations

import grpc


class DragomanError(Exception):
    """A call failed; `code` is its gRPC status, `message` what the server said."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgumentError(DragomanError):
    """The request was malformed (INVALID_ARGUMENT, OUT_OF_RANGE)."""


class AuthenticationError(DragomanError):
    """Wrong credentials, or a token that expired or was revoked (UNAUTHENTICATED)."""


class PermissionDeniedError(DragomanError):
    """Signed in, but not allowed to do this (PERMISSION_DENIED)."""


class NotFoundError(DragomanError):
    """No such session, code or user (NOT_FOUND)."""


class AlreadyExistsError(DragomanError):
    """The username or email is taken (ALREADY_EXISTS)."""


class FailedPreconditionError(DragomanError):
    """Not now: the session is full, locked or ended, or the language pair is not served
    (FAILED_PRECONDITION)."""


class ResourceExhaustedError(DragomanError):
    """A limit was reached (RESOURCE_EXHAUSTED); retry after `retry_after` seconds."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class AbortedError(DragomanError):
    """Another stream of the same user replaced this one (ABORTED)."""


class UnavailableError(DragomanError):
    """The service could not be reached or did not answer in time (UNAVAILABLE,
    DEADLINE_EXCEEDED); the call may be retried."""


_CLASSES: dict[grpc.StatusCode, type[DragomanError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


def from_rpc_error(error: grpc.aio.AioRpcError) -> DragomanError:
    """The DragomanError for a failed call."""
    code, message = error.code(), error.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # the server names how long to wait in the `retry-after` trailer (seconds)
        trailers = dict(error.trailing_metadata() or ())
        retry_after = trailers.get("retry-after")
        return ResourceExhaustedError(code, message, float(retry_after) if retry_after else None)
    return _CLASSES.get(code, DragomanError)(code, message)
