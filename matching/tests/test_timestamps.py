"""Engine nanoseconds and datetimes convert exactly, at microsecond resolution."""

from datetime import UTC, datetime

from matching.timestamps import to_datetime, to_ns


def test_round_trip_and_known_values():
    moment = datetime(2026, 11, 25, 18, 42, 40, 95641, tzinfo=UTC)
    assert to_datetime(to_ns(moment)) == moment
    assert to_ns(moment) == 1_795_632_160_095_641_000
    assert to_datetime(1_795_632_160_095_641_999) == moment  # nanoseconds below a microsecond dropped
    assert to_datetime(0) == datetime(1970, 1, 1, tzinfo=UTC)
