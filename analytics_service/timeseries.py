"""Local-time helpers shared by the analytics modules.

Every series inside the analytics service is a pandas Series of kWh per quarter-hour with a UTC
DatetimeIndex of period starts. Grouping happens on local wall-clock time; bucket bounds are instants
computed from local midnights, so DST days have 92 or 100 quarter-hours like in the query service.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from meterdata.errors import InvalidArgument

QUARTER_HOUR = pd.Timedelta(minutes=15)
STEPS_PER_HOUR = 4
STEPS_PER_DAY = 96
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Bucket sizes as plain names; the server maps the proto Interval enum onto them.
INTERVALS = ("quarter_hour", "hour", "day", "week", "month")


def check_time_zone(name: str, field: str = "time_zone") -> str:
    """The IANA name if it exists, else INVALID_ARGUMENT naming the field."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(field, f"unknown IANA time zone {name!r}") from exc
    return name


def make_series(timestamps: list[datetime] | pd.DatetimeIndex, values: list[float] | np.ndarray) -> pd.Series:
    """A sorted kWh series on a UTC index, the shape every analytics function expects."""
    index = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True), name="ts")
    return pd.Series(np.asarray(values, dtype=float), index=index, name="kwh").sort_index()


def local_naive(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Wall-clock times in `tz` without the zone: what a person in that zone reads on the clock."""
    return index.tz_convert(tz).tz_localize(None)


def localize(naive: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Local wall-clock times to UTC instants; a nonexistent time moves forward, an ambiguous one is the first."""
    ambiguous = np.ones(len(naive), dtype=bool)  # True = the DST reading = the earlier of the two instants
    return naive.tz_localize(tz, ambiguous=ambiguous, nonexistent="shift_forward").tz_convert("UTC")


def _naive_bucket_starts(naive: pd.DatetimeIndex, interval: str) -> pd.DatetimeIndex:
    days = naive.normalize()
    if interval == "day":
        return days
    if interval == "week":
        return days - pd.to_timedelta(naive.day_of_week, unit="D")
    if interval == "month":
        return days - pd.to_timedelta(naive.day - 1, unit="D")
    raise ValueError(f"not a calendar interval: {interval}")


def _naive_advance(naive: pd.DatetimeIndex, interval: str) -> pd.DatetimeIndex:
    if interval == "day":
        return naive + pd.Timedelta(days=1)
    if interval == "week":
        return naive + pd.Timedelta(days=7)
    return naive + pd.DateOffset(months=1)


def bucket_bounds(index: pd.DatetimeIndex, interval: str, tz: str) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """(start, end) UTC instants of the local bucket holding each timestamp of `index`."""
    if interval == "quarter_hour":
        starts = index.floor("15min")
        return starts, starts + QUARTER_HOUR
    if interval == "hour":
        # Offsets change on whole hours, so the local hour starts `minutes past the local hour` earlier;
        # this keeps the two 02:00 hours of an autumn DST night apart.
        naive = local_naive(index, tz)
        starts = index - (naive - naive.floor("h"))
        return starts, starts + pd.Timedelta(hours=1)
    naive_starts = _naive_bucket_starts(local_naive(index, tz), interval)
    return localize(naive_starts, tz), localize(pd.DatetimeIndex(_naive_advance(naive_starts, interval)), tz)


def aggregate(series: pd.Series, interval: str, tz: str) -> pd.DataFrame:
    """Sum per local bucket: columns start, end, value (kWh), count, expected (quarter-hours spanned)."""
    starts, ends = bucket_bounds(series.index, interval, tz)
    frame = pd.DataFrame({"start": starts, "end": ends, "value": series.to_numpy()})
    grouped = frame.groupby(["start", "end"], sort=True)["value"].agg(["sum", "count"]).reset_index()
    grouped = grouped.rename(columns={"sum": "value"})
    grouped["expected"] = ((grouped["end"] - grouped["start"]) / QUARTER_HOUR).astype("int64")
    return grouped


def expected_quarter_hours(start: datetime | pd.Timestamp, end: datetime | pd.Timestamp) -> int:
    """Quarter-hours in [start, end)."""
    return int((pd.Timestamp(end) - pd.Timestamp(start)) / QUARTER_HOUR)


def regular(series: pd.Series, step: pd.Timedelta = QUARTER_HOUR) -> tuple[pd.Series, int]:
    """The series on a complete grid of `step` from its first to its last timestamp, gaps linearly
    interpolated; returns (series, number of filled steps). ACF, PACF and STL need equal spacing."""
    if series.empty:
        return series, 0
    grid = pd.date_range(series.index[0], series.index[-1], freq=step, name=series.index.name)
    full = series.reindex(grid)
    missing = int(full.isna().sum())
    return (full.interpolate(method="linear") if missing else full), missing


def lag_label(lag: int, steps_per_hour: int) -> str:
    """'lag 96 (1 day)': a lag with its duration, for findings and the report."""
    minutes = lag * 60 // steps_per_hour
    if minutes % (7 * 24 * 60) == 0:
        amount, unit = minutes // (7 * 24 * 60), "week"
    elif minutes % (24 * 60) == 0:
        amount, unit = minutes // (24 * 60), "day"
    elif minutes % 60 == 0:
        amount, unit = minutes // 60, "hour"
    else:
        amount, unit = minutes, "minute"
    return f"lag {lag} ({amount} {unit}{'' if amount == 1 else 's'})"
