"""Describe a channel: how much, how spread, what is always there (baseline) and when the peaks were."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analytics_service.timeseries import aggregate

QUANTILES = {"p05": 0.05, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95, "p99": 0.99}
BASELINE_QUANTILE = 0.05


@dataclass(frozen=True)
class Peak:
    start: pd.Timestamp
    end: pd.Timestamp
    value: float


@dataclass(frozen=True)
class Description:
    interval: str
    count: int
    readings: int
    total: float
    mean: float
    std: float
    min: float
    min_at: pd.Timestamp
    max: float
    max_at: pd.Timestamp
    quantiles: dict[str, float]
    zero_share: float
    baseline: float
    baseline_energy_share: float
    peak_intervals: list[Peak]
    peak_days: list[Peak]


def _top(frame: pd.DataFrame, n: int) -> list[Peak]:
    """The n largest values; ties keep the earlier interval first."""
    ordered = frame.sort_values(["value", "start"], ascending=[False, True], kind="mergesort").head(n)
    return [Peak(row.start, row.end, float(row.value)) for row in ordered.itertuples(index=False)]


def describe(series: pd.Series, tz: str, *, interval: str = "quarter_hour", top_n: int = 5) -> Description:
    """Statistics of the `interval` sums of a non-empty quarter-hour series, in local time `tz`.

    The baseline is always taken from the quarter-hour values (the p05 quarter-hour is the load that is
    there nearly all the time); `baseline_energy_share` is the part of the total it explains.
    """
    buckets = aggregate(series, interval, tz)
    values = buckets["value"]
    total = float(series.sum())
    baseline = float(series.quantile(BASELINE_QUANTILE))
    at_min = buckets.loc[values.idxmin()]
    at_max = buckets.loc[values.idxmax()]
    days = aggregate(series, "day", tz)
    return Description(
        interval=interval,
        count=len(values),
        readings=len(series),
        total=total,
        mean=float(values.mean()),
        std=float(values.std()) if len(values) > 1 else 0.0,
        min=float(at_min["value"]),
        min_at=at_min["start"],
        max=float(at_max["value"]),
        max_at=at_max["start"],
        quantiles={name: float(values.quantile(q)) for name, q in QUANTILES.items()},
        zero_share=float((values == 0).mean()),
        baseline=baseline,
        baseline_energy_share=baseline * len(series) / total if total > 0 else 0.0,
        peak_intervals=_top(buckets, top_n),
        peak_days=_top(days, top_n),
    )
