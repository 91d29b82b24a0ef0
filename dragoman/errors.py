"""The one error hierarchy of dragoman, and its mapping to gRPC status codes.

Domain code raises these; `dragoman.rpc.wrap_handler`, around every call a
service serves, turns them into a status with the message (AIP-193 meanings).
Anything else becomes INTERNAL with a generic message and the traceback logged
under a reference id.
"""

from __future__ import annotations

import logging

import grpc


class DragomanError(Exception):
    """Base of every error that maps to a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DragomanError):
    """The request itself is wrong: bad field, unknown language, bad audio."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(DragomanError):
    """The request is well formed but the system is not in a state to serve it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(DragomanError):
    """An unknown session, code, voice or model (or one the caller may not see)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DragomanError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(DragomanError):
    """Missing, malformed or expired credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DragomanError):
    """Authenticated, but not allowed."""

    code = grpc.StatusCode.PERMISSION_DENIED


SHOWN_CHARS = 80
"""Most characters of a caller's input an error message repeats back."""


def shown(value: object, limit: int = SHOWN_CHARS, quote: bool = True) -> str:
    """`value` as an error message quotes it (its repr, or str without `quote`), cut
    to `limit` characters with an ellipsis: a message names the bad input without
    echoing kilobytes of it."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


RETRY_AFTER = "retry-after"
"""Trailer of a RESOURCE_EXHAUSTED status: seconds to wait before retrying."""


class ResourceExhausted(DragomanError):
    """A queue or a rate limit is full; retry after `retry_after_s`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(DragomanError):
    """Loading, draining, or a downstream service cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DragomanError):
    """A downstream call ran out of time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(DragomanError):
    """The call lost a conflict, e.g. a newer stream replaced it."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(DragomanError):
    """A position past the end of what exists, e.g. resuming after an event not yet sent."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(DragomanError):
    """A feature the API names but this deployment does not offer."""

    code = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: dict[grpc.StatusCode, type[DragomanError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument, FailedPrecondition, NotFound, AlreadyExists, Unauthenticated,
        PermissionDenied, ResourceExhausted, Unavailable, DeadlineExceeded, Aborted, OutOfRange,
        Unimplemented,
    )
}


def from_rpc_error(err: grpc.aio.AioRpcError, service: str) -> DragomanError:
    """Translates a downstream call's failure into our hierarchy.

    Client errors keep their code and message, so a caller of the gateway sees
    the precise reason an inner service gave; an unreachable service becomes
    UNAVAILABLE naming it.
    """
    code = err.code()
    detail = err.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        # The transport detail names internal addresses: log it, don't pass it on.
        logging.getLogger(__name__).warning("%s unavailable: %s", service, detail)
        return Unavailable(f"{service} is unavailable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{service} did not answer in time")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # keep how long the inner service asked to wait
        return ResourceExhausted(detail, retry_after_s=_retry_after(err) or 1.0)
    cls = _BY_CODE.get(code, DragomanError)
    return cls(detail)


def _retry_after(err: grpc.aio.AioRpcError) -> float | None:
    for key, value in err.trailing_metadata() or ():
        if key == RETRY_AFTER:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None
