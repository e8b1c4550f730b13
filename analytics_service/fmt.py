"""Number and time formatting shared by the findings, the plots and the report (one style everywhere)."""

from __future__ import annotations

import math

import pandas as pd


def pct(share: float) -> str:
    """Percent with one decimal, two below 1 % so that a small share does not print as 0.0 %."""
    if not math.isfinite(share):
        return "n/a"
    return f"{share * 100:.2f} %" if 0 < abs(share) < 0.01 else f"{share * 100:.1f} %"


def clock(hours: float) -> str:
    """12.65 -> '12:39'."""
    if not math.isfinite(hours):
        return "n/a"
    minutes = round(hours * 60)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def local_time(ts: pd.Timestamp, tz: str) -> str:
    """An instant as local wall-clock time, minute precision."""
    return ts.tz_convert(tz).strftime("%Y-%m-%d %H:%M")
