"""DST days and gaps stay visible: 92/100 quarter-hour days, the repeated hour, count < expected for a gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.query_api.helpers import (
    DST_MUID,
    GAP_MUID,
    REMOVED_HOUR,
    Stack,
    close,
    dst_points,
    frame,
    gap_points,
    series_path,
)


@pytest.mark.parametrize(
    ("tz", "spring", "autumn"),
    [("Europe/Zurich", "2023-03-26", "2023-10-29"), ("America/New_York", "2023-03-12", "2023-11-05")],
)
def test_dst_days_are_92_and_100_quarter_hours(stack: Stack, tz: str, spring: str, autumn: str) -> None:
    local = frame(dst_points()).tz_convert(tz)
    for day, quarters in ((spring, 92), (autumn, 100)):
        next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
        body = stack.json(series_path(DST_MUID), interval="day", agg="sum", tz=tz, start=day, end=next_day)
        if day == "2023-11-05":  # New York's autumn day is past the synthetic data (it ends 2023-11-01)
            assert body["buckets"][0]["count"] == 0 and body["buckets"][0]["value"] is None
            assert body["buckets"][0]["expected"] == quarters
            continue
        (bucket,) = body["buckets"]
        assert bucket["expected"] == bucket["count"] == quarters == len(local[day])
        assert close(bucket["value"], float(local[day].sum()))
        hours = stack.json(series_path(DST_MUID), interval="hour", agg="count", tz=tz, start=day, end=next_day)
        assert len(hours["buckets"]) == quarters // 4
        assert all(b["count"] == b["expected"] == 4 for b in hours["buckets"])


def test_zurich_autumn_day_repeats_two_oclock(stack: Stack) -> None:
    body = stack.json(
        series_path(DST_MUID), interval="hour", agg="sum", tz="Europe/Zurich", start="2023-10-29", end="2023-10-30"
    )
    starts = [b["start"] for b in body["buckets"]]
    assert starts[1:5] == [
        "2023-10-29T01:00:00+02:00",
        "2023-10-29T02:00:00+02:00",
        "2023-10-29T02:00:00+01:00",
        "2023-10-29T03:00:00+01:00",
    ]
    local = frame(dst_points())
    for bucket in body["buckets"]:
        start = datetime.fromisoformat(bucket["start"])
        assert close(bucket["value"], float(local[start : start + timedelta(minutes=45)].sum()))


def test_monthly_sums_across_both_switches(stack: Stack) -> None:
    local = frame(dst_points()).tz_convert("Europe/Zurich")
    body = stack.json(series_path(DST_MUID), interval="month", agg="sum", tz="Europe/Zurich")
    expected = local.resample("MS").agg(["sum", "count"])
    assert [b["start"] for b in body["buckets"]] == [ts.isoformat() for ts in expected.index]
    for bucket, (_, row) in zip(body["buckets"], expected.iterrows(), strict=True):
        assert close(bucket["value"], row["sum"]) and bucket["count"] == row["count"]
    by_month = {b["start"][:7]: b for b in body["buckets"]}
    assert by_month["2023-03"]["expected"] == 31 * 96 - 4  # March loses an hour
    assert by_month["2023-10"]["expected"] == 31 * 96 + 4  # October gains one
    assert by_month["2023-03"]["count"] == 31 * 96 - 4 - 4  # the data starts at 01:00 local on March 1st
    assert by_month["2023-10"]["count"] == by_month["2023-10"]["expected"]


def test_removed_hour_shows_count_below_expected(stack: Stack) -> None:
    kept = frame(gap_points()).tz_convert("Europe/Zurich")
    hours = stack.json(
        series_path(GAP_MUID), interval="hour", agg="sum", tz="Europe/Zurich", start="2023-02-10", end="2023-02-11"
    )
    assert len(hours["buckets"]) == 24
    gap = [b for b in hours["buckets"] if b["count"] < b["expected"]]
    assert gap == [
        {
            "start": REMOVED_HOUR.astimezone(kept.index.tz).isoformat(),
            "end": (REMOVED_HOUR + timedelta(hours=1)).astimezone(kept.index.tz).isoformat(),
            "value": None,
            "count": 0,
            "expected": 4,
        }
    ]
    assert gap[0]["start"] == "2023-02-10T11:00:00+01:00"
    (day,) = stack.json(
        series_path(GAP_MUID), interval="day", agg="sum", tz="Europe/Zurich", start="2023-02-10", end="2023-02-11"
    )["buckets"]
    assert (day["count"], day["expected"]) == (92, 96)
    assert close(day["value"], float(kept["2023-02-10"].sum()))
    mean = stack.json(
        series_path(GAP_MUID), interval="day", agg="mean", tz="Europe/Zurich", start="2023-02-10", end="2023-02-11"
    )["buckets"][0]
    assert close(mean["value"], float(kept["2023-02-10"].mean()))  # the mean of what is there, the gap says so


def test_empty_buckets_inside_the_range_are_present(stack: Stack) -> None:
    """A range reaching past the data keeps its empty buckets, with count 0 and value null."""
    body = stack.json(series_path(DST_MUID), interval="day", agg="sum", tz="UTC", start="2023-10-30", end="2023-11-03")
    assert [(b["start"][:10], b["count"], b["value"] is None) for b in body["buckets"]] == [
        ("2023-10-30", 96, False),
        ("2023-10-31", 96, False),
        ("2023-11-01", 0, True),
        ("2023-11-02", 0, True),
    ]


def test_naive_and_offset_times_mean_the_same_instant(stack: Stack) -> None:
    """`start` without offset is read in `tz`; with an offset or Z it is that instant, whatever `tz` says."""
    variants = [
        {"start": "2023-06-01T08:00", "end": "2023-06-01T10:00", "tz": "Europe/Zurich"},
        {"start": "2023-06-01T06:00:00Z", "end": "2023-06-01T08:00:00Z", "tz": "Europe/Zurich"},
        {"start": "2023-06-01T08:00:00+02:00", "end": "2023-06-01T10:00:00+02:00", "tz": "Europe/Zurich"},
        {"start": "2023-06-01T08:00:00 02:00", "end": "2023-06-01T10:00:00 02:00", "tz": "Europe/Zurich"},  # lost '+'
    ]
    expected = float(
        frame(dst_points())[datetime(2023, 6, 1, 6, tzinfo=UTC) : datetime(2023, 6, 1, 7, 45, tzinfo=UTC)].sum()
    )
    for params in variants:
        body = stack.json(series_path(DST_MUID), interval="day", agg="sum", **params)
        (bucket,) = body["buckets"]
        assert (bucket["start"], bucket["end"]) == ("2023-06-01T08:00:00+02:00", "2023-06-01T10:00:00+02:00")
        assert bucket["count"] == bucket["expected"] == 8  # a clipped day: only the 8 quarter-hours asked for
        assert close(bucket["value"], expected)


def test_start_after_the_data_is_an_empty_series(stack: Stack) -> None:
    body = stack.json(series_path(DST_MUID), interval="day", tz="UTC", start="2024-01-01")
    assert body["buckets"] == [] and body["start"] == body["end"] == "2024-01-01T00:00:00+00:00"
