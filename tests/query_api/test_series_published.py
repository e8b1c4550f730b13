"""Series of both published meters through the gateway, against values pandas computes from the raw JSON."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tests.query_api.helpers import EXPORT_MUID, IMPORT_MUID, Stack, close, published_frame, series_path

METERS = [IMPORT_MUID, EXPORT_MUID]
PANDAS_AGG = {"sum": "sum", "mean": "mean", "min": "min", "max": "max", "count": "count"}
PANDAS_RULE = {"15min": "15min", "hour": "h", "day": "D", "month": "MS"}


def expected_buckets(muid: str, tz: str, interval: str, agg: str) -> pd.DataFrame:
    local = published_frame(muid).tz_convert(tz)
    if interval == "week":
        grouped = local.resample("W-MON", label="left", closed="left")
    else:
        grouped = local.resample(PANDAS_RULE[interval])
    return pd.DataFrame({"value": grouped.agg(PANDAS_AGG[agg]), "count": grouped.count()})


def assert_series_matches(body: dict, expected: pd.DataFrame, agg: str) -> None:  # type: ignore[type-arg]
    buckets = body["buckets"]
    assert [b["start"] for b in buckets] == [ts.isoformat() for ts in expected.index]
    for bucket, (_, row) in zip(buckets, expected.iterrows(), strict=True):
        assert bucket["count"] == row["count"], bucket
        if row["count"] == 0:
            assert bucket["value"] is None
        else:
            assert close(bucket["value"], float(row["value"])), (bucket, row["value"], agg)
        start, end = datetime.fromisoformat(bucket["start"]), datetime.fromisoformat(bucket["end"])
        assert bucket["expected"] == (end - start).total_seconds() / 900


@pytest.mark.parametrize("muid", METERS)
@pytest.mark.parametrize("tz", ["Europe/Zurich", "UTC"])
def test_daily_sums(stack: Stack, muid: str, tz: str) -> None:
    body = stack.json(series_path(muid), interval="day", agg="sum", tz=tz)
    assert (body["unit"], body["time_zone"], body["interval"], body["aggregation"]) == ("kWh", tz, "day", "sum")
    expected = expected_buckets(muid, tz, "day", "sum")
    assert_series_matches(body, expected, "sum")
    if tz == "UTC":
        assert len(body["buckets"]) == 28
        assert all(b["count"] == b["expected"] == 96 for b in body["buckets"])
    else:  # the data is February in UTC: 01:00 Feb 1 .. 00:45 Mar 1 in Zurich
        assert len(body["buckets"]) == 29
        first, last = body["buckets"][0], body["buckets"][-1]
        assert (first["start"], first["count"], first["expected"]) == ("2023-02-01T00:00:00+01:00", 92, 96)
        assert (last["start"], last["count"], last["expected"]) == ("2023-03-01T00:00:00+01:00", 4, 96)


@pytest.mark.parametrize("muid", METERS)
def test_hourly_means(stack: Stack, muid: str) -> None:
    body = stack.json(series_path(muid), interval="hour", agg="mean", tz="Europe/Zurich")
    assert_series_matches(body, expected_buckets(muid, "Europe/Zurich", "hour", "mean"), "mean")
    assert len(body["buckets"]) == 28 * 24


@pytest.mark.parametrize(("muid", "total", "peak"), [(IMPORT_MUID, 97.6082, 0.9612), (EXPORT_MUID, 36.19725, 0.17325)])
def test_monthly_totals_and_maxima(stack: Stack, muid: str, total: float, peak: float) -> None:
    raw = published_frame(muid)
    assert close(float(raw.sum()), total) and close(float(raw.max()), peak)  # the published facts, from the raw JSON
    (month,) = stack.json(series_path(muid), interval="month", agg="sum", tz="UTC")["buckets"]
    assert (month["start"], month["end"]) == ("2023-02-01T00:00:00+00:00", "2023-03-01T00:00:00+00:00")
    assert close(month["value"], total) and month["count"] == month["expected"] == 2688
    assert month["value"] == total  # exact decimal sums: no binary noise for the frontend to round away
    (month_max,) = stack.json(series_path(muid), interval="month", agg="max", tz="UTC")["buckets"]
    assert close(month_max["value"], float(raw.max())) and close(month_max["value"], peak)
    # In Zurich the last UTC hour of February is March 1st: the two local months still add up.
    zurich = stack.json(series_path(muid), interval="month", agg="sum", tz="Europe/Zurich")
    assert_series_matches(zurich, expected_buckets(muid, "Europe/Zurich", "month", "sum"), "sum")
    assert close(sum(b["value"] for b in zurich["buckets"]), total)
    daily_max = stack.json(series_path(muid), interval="day", agg="max", tz="Europe/Zurich")
    assert_series_matches(daily_max, expected_buckets(muid, "Europe/Zurich", "day", "max"), "max")
    assert close(max(b["value"] for b in daily_max["buckets"]), float(raw.max()))


@pytest.mark.parametrize("agg", ["min", "count", "mean"])
def test_weekly_buckets_start_on_monday(stack: Stack, agg: str) -> None:
    body = stack.json(series_path(EXPORT_MUID), interval="week", agg=agg, tz="Europe/Zurich")
    assert_series_matches(body, expected_buckets(EXPORT_MUID, "Europe/Zurich", "week", agg), agg)
    assert all(datetime.fromisoformat(b["start"]).weekday() == 0 for b in body["buckets"])
    assert body["unit"] == ("readings" if agg == "count" else "kWh")


def test_quarter_hours_are_the_raw_readings(stack: Stack) -> None:
    body = stack.json(
        series_path(IMPORT_MUID), interval="15min", agg="sum", tz="Europe/Zurich", start="2023-02-14", end="2023-02-15"
    )
    raw = published_frame(IMPORT_MUID).tz_convert("Europe/Zurich")["2023-02-14"]
    assert [b["start"] for b in body["buckets"]] == [ts.isoformat() for ts in raw.index]
    assert all(close(b["value"], v) for b, v in zip(body["buckets"], raw.tolist(), strict=True))
    assert (body["start"], body["end"]) == ("2023-02-14T00:00:00+01:00", "2023-02-15T00:00:00+01:00")


def test_export_meter_zeros_count_as_readings(stack: Stack) -> None:
    """0 kWh is a reading, not a gap: counts stay full where the meter exported nothing."""
    raw = published_frame(EXPORT_MUID)
    assert int((raw == 0).sum()) == 1680
    body = stack.json(series_path(EXPORT_MUID), interval="day", agg="min", tz="UTC")
    assert all(b["count"] == 96 and b["value"] == 0 for b in body["buckets"])
