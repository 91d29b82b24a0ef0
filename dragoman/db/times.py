"""Times as the tables store them (timestamptz) and as services hold them
(epoch seconds) or send them (protobuf Timestamp)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime | float) -> Timestamp:
    """A datetime or epoch seconds as a Timestamp."""
    ts = Timestamp()
    if isinstance(moment, datetime):
        ts.FromDatetime(moment)
    else:
        ts.FromNanoseconds(int(moment * 1e9))
    return ts


def to_datetime(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime, for a timestamptz column."""
    return datetime.fromtimestamp(seconds, UTC)
