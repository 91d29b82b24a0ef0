"""Page tokens of newest-first lists (ListSessions, ListRecordings): an opaque position
after a row, by its creation time and id, so rows created while paging shift nothing."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from dragoman.errors import InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


def size(page_size: int) -> int:
    """The rows a page holds: `page_size`, or the default for 0; INVALID_ARGUMENT out of range."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be 0 to {MAX_PAGE_SIZE}, got {page_size}")
    return page_size or DEFAULT_PAGE_SIZE


def token(created_at: datetime, row_id: str) -> str:
    """The position after the row created at `created_at` with id `row_id`."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{row_id}".encode()).decode()


def parse(page_token: str, rpc: str) -> tuple[datetime, str] | None:
    """(created_at, id) of a `token`; None for the first page; INVALID_ARGUMENT naming
    `rpc` for anything else."""
    if not page_token:
        return None
    try:
        micros, sep, row_id = base64.urlsafe_b64decode(page_token.encode()).decode().partition(":")
        if sep and row_id:
            return _EPOCH + timedelta(microseconds=int(micros)), row_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        pass
    raise InvalidArgument(bad_token(rpc))


def bad_token(rpc: str) -> str:
    return f"page_token is not a token from {rpc}"
