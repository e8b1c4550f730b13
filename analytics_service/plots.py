"""PNG figures drawn with matplotlib (Agg, no pyplot) from the numbers the other modules compute.

Figures are deterministic: fixed font, sizes and DPI, and no "Software" metadata, so the report's
PNGs only change when the data or the code does. Each call builds its own Figure, so rendering in
worker threads is safe.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analytics_service.autocorrelation import (
    AutocorrelationResult,
    Decomposition,
    autocorrelation,
    decompose,
    steps,
)
from analytics_service.balance import BalanceResult
from analytics_service.profiles import ProfileGroup, hour_by_weekday_matrix, profile
from analytics_service.timeseries import WEEKDAY_NAMES, aggregate, local_naive

matplotlib.rcParams.update(
    {
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "path.simplify": True,
    }
)

DPI = 100
IMPORT_COLOR = "#1f77b4"
EXPORT_COLOR = "#e6a100"
NET_COLOR = "#333333"
KINDS = ("timeseries", "histogram", "hour_of_day", "weekday", "heatmap", "acf", "decomposition", "daily")


def _figure(width_px: int, height_px: int) -> Figure:
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _draw(width_px: int, height_px: int, draw: Callable[[Figure], None]) -> bytes:
    figure = _figure(width_px, height_px)
    draw(figure)
    return _png(figure)


def timeseries(series: pd.Series, tz: str, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.plot(local_naive(series.index, tz), series.to_numpy(), linewidth=0.5, color=IMPORT_COLOR)
        axes.set_title(title)
        axes.set_ylabel(f"{unit} per quarter-hour")
        axes.set_xlabel(f"local time ({tz})")
        axes.margins(x=0)
        figure.autofmt_xdate()

    return _draw(width_px, height_px, draw)


def histogram(series: pd.Series, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    values = series.to_numpy()
    zeros = int((values == 0).sum())

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        positive = values[values > 0]
        if len(positive):
            axes.hist(positive, bins=60, color=IMPORT_COLOR)
        axes.set_yscale("log")
        axes.set_title(f"{title}\n{len(values)} quarter-hours, {zeros} of them zero (not drawn)")
        axes.set_xlabel(f"{unit} per quarter-hour")
        axes.set_ylabel("quarter-hours (log scale)")

    return _draw(width_px, height_px, draw)


def _band_profile(axes: Axes, x: np.ndarray, groups: list[ProfileGroup], unit: str) -> None:
    axes.fill_between(x, [g.p10 for g in groups], [g.p90 for g in groups], alpha=0.2, label="p10-p90")
    axes.fill_between(x, [g.p25 for g in groups], [g.p75 for g in groups], alpha=0.3, label="p25-p75")
    axes.plot(x, [g.mean for g in groups], marker="o", markersize=3, label="mean")
    axes.plot(x, [g.median for g in groups], linestyle="--", label="median")
    axes.set_ylabel(f"{unit} per quarter-hour")
    axes.legend(loc="upper left", fontsize=8)


def hour_of_day(groups: list[ProfileGroup], tz: str, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        x = np.array([g.hour + (max(g.minute, 0) + 7.5) / 60 if g.minute >= 0 else g.hour + 0.5 for g in groups])
        _band_profile(axes, x, groups, unit)
        axes.set_xticks(range(0, 25, 2))
        axes.set_xlim(0, 24)
        axes.set_xlabel(f"hour of day ({tz})")
        axes.set_title(title)

    return _draw(width_px, height_px, draw)


def weekday(groups: list[ProfileGroup], title: str, unit: str, width_px: int, height_px: int) -> bytes:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        x = np.array([g.weekday for g in groups])
        axes.bar(x, [g.mean for g in groups], color=IMPORT_COLOR, alpha=0.8, label="mean")
        axes.plot(x, [g.median for g in groups], "k_", markersize=20, label="median")
        axes.set_xticks(x, [WEEKDAY_NAMES[g.weekday - 1][:3] for g in groups])
        axes.set_ylabel(f"{unit} per quarter-hour")
        axes.set_title(title)
        axes.legend(loc="upper left", fontsize=8)

    return _draw(width_px, height_px, draw)


def heatmap(groups: list[ProfileGroup], tz: str, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    matrix = hour_by_weekday_matrix(groups)

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        image = axes.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="viridis", origin="upper")
        axes.set_xticks(range(7), [name[:3] for name in WEEKDAY_NAMES])
        axes.set_yticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
        axes.set_ylabel(f"hour of day ({tz})")
        axes.grid(False)
        axes.set_title(title)
        figure.colorbar(image, ax=axes, label=f"mean {unit} per quarter-hour")

    return _draw(width_px, height_px, draw)


def acf_pacf(result: AutocorrelationResult, title: str, step: str, width_px: int, height_px: int) -> bytes:
    lags = np.array([v.lag for v in result.lags])

    def draw(figure: Figure) -> None:
        top, bottom = figure.subplots(2, 1, sharex=True)
        for axes, values, name in (
            (top, [v.acf for v in result.lags], "ACF"),
            (bottom, [v.pacf for v in result.lags], "PACF"),
        ):
            axes.vlines(lags, 0, values, linewidth=0.8, color=IMPORT_COLOR)
            band = result.confidence_band
            axes.axhspan(-band, band, color="grey", alpha=0.25, label=f"95 % band +-{band:.3f}")
            axes.axhline(0, color="black", linewidth=0.5)
            axes.set_ylabel(name)
            for lag in result.named_lags:
                axes.axvline(lag, color="red", linewidth=0.6, linestyle=":")
        top.axhspan(
            -result.named_lag_band,
            result.named_lag_band,
            fill=False,
            linestyle="--",
            edgecolor="red",
            label=f"named-lag band +-{result.named_lag_band:.3f}",
        )
        top.legend(loc="upper right", fontsize=8)
        top.set_title(f"{title}\nnamed lags (dotted): {', '.join(map(str, result.named_lags))}")
        bottom.set_xlabel(f"lag ({step} steps)")

    return _draw(width_px, height_px, draw)


def decomposition(
    observed: pd.Series, parts: Decomposition, tz: str, title: str, unit: str, width_px: int, height_px: int
) -> bytes:
    x = local_naive(observed.index, tz)

    def draw(figure: Figure) -> None:
        axes = figure.subplots(4, 1, sharex=True)
        rows = (
            ("observed", observed),
            ("trend", parts.trend),
            (f"seasonal (period {parts.period})", parts.seasonal),
            ("residual", parts.resid),
        )
        for ax, (name, values) in zip(axes, rows, strict=True):
            ax.plot(x, values.to_numpy(), linewidth=0.5, color=IMPORT_COLOR)
            ax.set_ylabel(name, fontsize=8)
            ax.margins(x=0)
        axes[0].set_title(
            f"{title}\nseasonal strength {parts.seasonal_strength:.3f}, trend strength {parts.trend_strength:.3f} "
            f"({unit})"
        )
        figure.autofmt_xdate()

    return _draw(width_px, height_px, draw)


def daily(days: pd.DataFrame, tz: str, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    """Bars of local-day totals (columns start, value, count, expected); weekends darker, partial days hatched."""
    starts = local_naive(pd.DatetimeIndex(days["start"]), tz)

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        colors = [EXPORT_COLOR if day.weekday() >= 5 else IMPORT_COLOR for day in starts]
        bars = axes.bar(starts, days["value"].to_numpy(), width=0.8, color=colors, align="edge")
        for bar, count, expected in zip(bars, days["count"], days["expected"], strict=True):
            if count < expected:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        axes.set_ylabel(f"{unit} per day")
        axes.set_title(f"{title}\nweekends in orange; hatched: partial days (fewer quarter-hours than the day has)")
        figure.autofmt_xdate()

    return _draw(width_px, height_px, draw)


def balance_chart(result: BalanceResult, tz: str, title: str, unit: str, width_px: int, height_px: int) -> bytes:
    buckets = result.buckets
    starts = local_naive(pd.DatetimeIndex(buckets["start"]), tz)
    widths = (buckets["end"] - buckets["start"]).to_numpy() * 0.8

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.bar(starts, buckets["imported"].to_numpy(), width=widths, align="edge", color=IMPORT_COLOR, label="import")
        axes.bar(
            starts, -buckets["exported"].to_numpy(), width=widths, align="edge", color=EXPORT_COLOR, label="export (-)"
        )
        axes.step(
            starts, buckets["net_import"].to_numpy(), where="post", color=NET_COLOR, linewidth=1, label="net import"
        )
        axes.axhline(0, color="black", linewidth=0.5)
        axes.set_ylabel(f"{unit} per {result.interval.replace('_', '-')}")
        axes.set_title(
            f"{title}\nimport {result.imported_total:.2f} {unit}, export {result.exported_total:.2f} {unit}, "
            f"net import {result.net_import_total:.2f} {unit}"
        )
        axes.legend(loc="upper right", fontsize=8)
        figure.autofmt_xdate()

    return _draw(width_px, height_px, draw)


def render(
    kind: str,
    series: pd.Series,
    *,
    tz: str,
    title: str,
    unit: str,
    width_px: int,
    height_px: int,
    interval: str = "quarter_hour",
    nlags: int | None = None,
) -> bytes:
    """One figure of one channel: computes the numbers with the analysis modules, then draws them."""
    if kind == "timeseries":
        return timeseries(series, tz, title, unit, width_px, height_px)
    if kind == "histogram":
        return histogram(series, title, unit, width_px, height_px)
    if kind == "hour_of_day":
        groups = profile(series, "quarter_hour_of_day", tz)
        return hour_of_day(groups, tz, f"{title}: by quarter-hour of day", unit, width_px, height_px)
    if kind == "weekday":
        return weekday(profile(series, "day_of_week", tz), f"{title}: by weekday", unit, width_px, height_px)
    if kind == "heatmap":
        groups = profile(series, "hour_by_weekday", tz)
        return heatmap(groups, tz, f"{title}: hour of day x weekday", unit, width_px, height_px)
    if kind == "daily":
        return daily(aggregate(series, "day", tz), tz, f"{title}: local-day totals", unit, width_px, height_px)
    values, steps_per_hour, _ = steps(series, interval, tz)
    step = "quarter-hour" if steps_per_hour == 4 else "hour"
    if kind == "acf":
        result = autocorrelation(values, steps_per_hour=steps_per_hour, nlags=nlags, decomposition=False)
        return acf_pacf(result, f"{title}: ACF and PACF of the {step} series", step, width_px, height_px)
    if kind == "decomposition":
        parts = decompose(values, 24 * steps_per_hour)
        return decomposition(values, parts, tz, f"{title}: STL of the {step} series", unit, width_px, height_px)
    raise ValueError(f"unknown plot kind {kind!r}")
