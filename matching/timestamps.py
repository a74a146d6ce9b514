"""Engine time (integer nanoseconds since the epoch) to and from aware datetimes, exactly (no floats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_datetime(ns: int) -> datetime:
    """A UTC datetime (microsecond resolution: the nanoseconds below it are dropped)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def to_ns(moment: datetime) -> int:
    return (moment - EPOCH) // _MICROSECOND * 1000
