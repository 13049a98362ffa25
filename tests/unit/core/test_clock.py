"""The one clock's text form of a time, which a cache now serves."""

from datetime import UTC, datetime, timedelta, timezone

from core.clock import isoformat


def test_times_are_written_in_utc_with_milliseconds_and_a_z() -> None:
    assert isoformat(datetime(2026, 11, 23, 19, 30, 0, 123456, tzinfo=UTC)) == "2026-11-23T19:30:00.123Z"
    assert isoformat(None) is None


def test_one_instant_in_another_zone_is_written_as_the_same_utc_time_whichever_came_first() -> None:
    # Equal instants are one cache key: the cached text must be the UTC one, whichever zone was written first.
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 12, 3, 21, 15, 7, 250000, tzinfo=plus_two)
    assert isoformat(local) == "2026-12-03T19:15:07.250Z"
    assert isoformat(local.astimezone(UTC)) == "2026-12-03T19:15:07.250Z"
    later = datetime(2026, 12, 3, 19, 15, 8, 500000, tzinfo=UTC)
    assert isoformat(later) == "2026-12-03T19:15:08.500Z"
    assert isoformat(later.astimezone(plus_two)) == "2026-12-03T19:15:08.500Z"


def test_distinct_times_are_not_confused_by_the_cache() -> None:
    base = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    texts = [isoformat(base + timedelta(milliseconds=step)) for step in range(5000)]
    assert len(set(texts)) == 5000
    assert texts[1234] == "2026-12-03T00:00:01.234Z"
