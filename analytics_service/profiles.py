"""Profiles: the quarter-hour values of a channel grouped by a calendar key in local time.

The groups answer "when is energy used or fed in": by hour of day, ISO weekday, local day, ISO week,
month, hour x weekday (the 24x7 matrix behind the heatmap) and quarter-hour of day.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analytics_service.timeseries import local_naive

KINDS = ("hour_of_day", "day_of_week", "day", "week", "month", "hour_by_weekday", "quarter_hour_of_day")
QUANTILES = {"p10": 0.10, "p25": 0.25, "p75": 0.75, "p90": 0.90}


@dataclass(frozen=True)
class ProfileGroup:
    key: str
    hour: int  # -1 where not applicable
    weekday: int  # ISO 1..7, 0 where not applicable
    minute: int  # -1 where not applicable
    count: int
    sum: float
    mean: float
    median: float
    min: float
    max: float
    p10: float
    p25: float
    p75: float
    p90: float


def _keys(naive: pd.DatetimeIndex, kind: str) -> tuple[list[str], pd.DataFrame]:
    """Group key columns (sortable) and the label parts (key, hour, weekday, minute) per row."""
    hour = pd.Series(naive.hour, dtype="int64")
    minute = pd.Series(naive.minute, dtype="int64")
    weekday = pd.Series(naive.day_of_week + 1, dtype="int64")
    none = pd.Series(-1, index=hour.index, dtype="int64")
    zero = pd.Series(0, index=hour.index, dtype="int64")
    if kind == "hour_of_day":
        parts = {"hour": hour, "weekday": zero, "minute": none, "key": hour.map("{:02d}".format)}
        return ["hour"], pd.DataFrame(parts)
    if kind == "quarter_hour_of_day":
        key = hour.map("{:02d}".format) + ":" + minute.map("{:02d}".format)
        return ["hour", "minute"], pd.DataFrame({"hour": hour, "weekday": zero, "minute": minute, "key": key})
    if kind == "day_of_week":
        return ["weekday"], pd.DataFrame({"hour": none, "weekday": weekday, "minute": none, "key": weekday.map(str)})
    if kind == "hour_by_weekday":
        key = weekday.map(str) + "-" + hour.map("{:02d}".format)
        return ["weekday", "hour"], pd.DataFrame({"hour": hour, "weekday": weekday, "minute": none, "key": key})
    if kind == "day":
        key = pd.Series(naive.strftime("%Y-%m-%d"))
    elif kind == "week":
        iso = naive.isocalendar()
        key = pd.Series(
            [f"{year:04d}-W{week:02d}" for year, week in zip(iso["year"], iso["week"], strict=True)], dtype="object"
        )
    elif kind == "month":
        key = pd.Series(naive.strftime("%Y-%m"))
    else:
        raise ValueError(f"unknown profile kind {kind!r}")
    return ["key"], pd.DataFrame({"hour": none, "weekday": zero, "minute": none, "key": key.astype("object")})


def profile(series: pd.Series, kind: str, tz: str) -> list[ProfileGroup]:
    """The groups of `kind` in time zone `tz`, ordered by their key (chronological or clock order)."""
    if series.empty:
        return []
    by, parts = _keys(local_naive(series.index, tz), kind)
    frame = parts.assign(value=series.to_numpy())
    grouped = frame.groupby(by, sort=True)
    stats = grouped["value"].agg(["count", "sum", "mean", "median", "min", "max"])
    for name, q in QUANTILES.items():
        stats[name] = grouped["value"].quantile(q)
    labels = grouped[["key", "hour", "weekday", "minute"]].first()
    table = stats.join(labels)
    ints = ("hour", "weekday", "minute", "count")
    return [
        ProfileGroup(**{k: (str(v) if k == "key" else int(v) if k in ints else float(v)) for k, v in row.items()})
        for row in table.to_dict("records")
    ]


def hour_by_weekday_matrix(groups: list[ProfileGroup], field: str = "mean") -> pd.DataFrame:
    """The 24x7 matrix (rows hours 0..23, columns ISO weekdays 1..7) of a hour_by_weekday profile."""
    matrix = pd.DataFrame(index=range(24), columns=range(1, 8), dtype=float)
    for group in groups:
        matrix.loc[group.hour, group.weekday] = getattr(group, field)
    return matrix
