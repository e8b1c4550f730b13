"""Bucket boundaries in local time (pure logic, no database): DST days, odd offsets, clipping, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from meterdata.errors import InvalidArgument
from query_service.buckets import Interval, bucket_around, parse_zone, plan_buckets

ZURICH = ZoneInfo("Europe/Zurich")


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("day", "hours", "quarters"),
    [((2023, 3, 26), 23, 92), ((2023, 10, 29), 25, 100), ((2023, 6, 1), 24, 96)],
)
def test_zurich_days_and_hours_around_dst(day: tuple[int, int, int], hours: int, quarters: int) -> None:
    start = local(ZURICH, *day)
    end = start + timedelta(hours=hours)
    assert end.astimezone(ZURICH).hour == 0  # the next local midnight, by construction of the case
    (bucket,) = plan_buckets(start, end, Interval.DAY, ZURICH, 100)
    assert (bucket.start, bucket.end, bucket.expected) == (start, end, quarters)
    hourly = plan_buckets(start, end, Interval.HOUR, ZURICH, 100)
    assert len(hourly) == hours
    assert all(b.expected == 4 and b.end - b.start == timedelta(hours=1) for b in hourly)
    assert len(plan_buckets(start, end, Interval.QUARTER_HOUR, ZURICH, 1000)) == quarters


def test_repeated_autumn_hour_is_two_buckets() -> None:
    start = local(ZURICH, 2023, 10, 29)
    labels = [
        b.start.astimezone(ZURICH).isoformat()
        for b in plan_buckets(start, start + timedelta(hours=25), Interval.HOUR, ZURICH, 100)
    ]
    assert labels[1:5] == [
        "2023-10-29T01:00:00+02:00",
        "2023-10-29T02:00:00+02:00",
        "2023-10-29T02:00:00+01:00",
        "2023-10-29T03:00:00+01:00",
    ]


def test_half_hour_zone_hours_start_at_half_past_utc() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    buckets = plan_buckets(utc(2023, 2, 1), utc(2023, 2, 1, 3), Interval.HOUR, kolkata, 100)
    # 00:00Z is 05:30 local: the first bucket is clipped to 30 minutes, the next ones start at :30 UTC.
    assert [(b.start.minute, b.expected) for b in buckets] == [(0, 2), (30, 4), (30, 4), (30, 2)]


def test_lord_howe_half_hour_dst_shift() -> None:
    """Lord Howe Island moves its clocks by 30 minutes: the local day is 23.5 hours, 94 quarter-hours."""
    zone = ZoneInfo("Australia/Lord_Howe")
    start, end = local(zone, 2023, 10, 1), local(zone, 2023, 10, 2)
    hourly = plan_buckets(start, end, Interval.HOUR, zone, 100)
    assert sum(b.expected for b in hourly) == 94
    assert [b.expected for b in hourly].count(2) == 1  # the hour the shift cuts in half
    assert bucket_around(start + timedelta(hours=5), Interval.DAY, zone).expected == 94


def test_midnight_skipped_by_dst_starts_the_day_at_the_first_existing_instant() -> None:
    """In Santiago clocks jump from 24:00 to 01:00 on 2023-09-03: that day begins at 01:00 local."""
    santiago = ZoneInfo("America/Santiago")
    bucket = bucket_around(utc(2023, 9, 3, 12), Interval.DAY, santiago)
    assert bucket.start == utc(2023, 9, 3, 4)
    assert bucket.start.astimezone(santiago).isoformat() == "2023-09-03T01:00:00-03:00"
    assert bucket.expected == 92


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    week = bucket_around(utc(2023, 2, 16, 12), Interval.WEEK, ZURICH)  # a Thursday
    assert week.start.astimezone(ZURICH).isoformat() == "2023-02-13T00:00:00+01:00"
    assert week.end - week.start == timedelta(days=7)
    months = plan_buckets(local(ZURICH, 2023, 1, 1), local(ZURICH, 2024, 1, 1), Interval.MONTH, ZURICH, 100)
    assert [b.start.astimezone(ZURICH).strftime("%m-%d %H:%M") for b in months] == [
        f"{m:02d}-01 00:00" for m in range(1, 13)
    ]
    # March loses an hour and October gains one.
    assert [b.expected for b in months][2] == 31 * 96 - 4
    assert [b.expected for b in months][9] == 31 * 96 + 4


def test_range_inside_a_bucket_clips_it() -> None:
    buckets = plan_buckets(utc(2023, 2, 1, 10, 7), utc(2023, 2, 3, 5), Interval.DAY, ZoneInfo("UTC"), 100)
    assert [(b.start.isoformat(), b.expected) for b in buckets] == [
        ("2023-02-01T10:07:00+00:00", 55),  # 10:15 .. 23:45
        ("2023-02-02T00:00:00+00:00", 96),
        ("2023-02-03T00:00:00+00:00", 20),
    ]


def test_too_many_buckets_names_end() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_buckets(utc(2023, 1, 1), utc(2024, 1, 1), Interval.QUARTER_HOUR, ZURICH, 20_000)
    assert caught.value.field == "end"
    assert (
        len(
            plan_buckets(
                utc(2023, 1, 1), utc(2023, 1, 1) + timedelta(hours=5000), Interval.QUARTER_HOUR, ZURICH, 20_000
            )
        )
        == 20_000
    )


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", " UTC", "/usr/share/zoneinfo/UTC"])
def test_unknown_zone_names_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_zone(name, "tz")
    assert caught.value.field == "tz"


def test_hour_planning_of_two_years_is_fast() -> None:
    import time

    started = time.perf_counter()
    buckets = plan_buckets(utc(2021, 1, 1), utc(2023, 1, 1), Interval.HOUR, ZURICH, 20_000)
    assert len(buckets) == 2 * 365 * 24
    assert time.perf_counter() - started < 1.0
