"""Unit tests of the analytics modules on fixed-seed synthetic series (no database, no gRPC)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from astral import Observer
from astral.sun import elevation
from PIL import Image
from statsmodels.tsa.stattools import acf, pacf

from analytics_service import plots
from analytics_service.autocorrelation import autocorrelation, decompose, steps
from analytics_service.balance import balance
from analytics_service.describe import describe
from analytics_service.explain import explain
from analytics_service.profiles import profile
from analytics_service.sun import Site
from analytics_service.timeseries import aggregate, check_time_zone, lag_label, make_series
from meterdata.errors import FailedPrecondition, InvalidArgument

ZURICH = Site("Zurich", 47.3769, 8.5417)
TZ = "Europe/Zurich"
IMPORT_OBIS, EXPORT_OBIS, UNKNOWN_OBIS = "0100011D00FF", "0100021D00FF", "0100FF1D00FF"


def quarter_hours(start: str, days: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 96, freq="15min")


def daily_periodic(seed: int = 7, days: int = 21) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = quarter_hours("2023-01-02", days)
    t = np.arange(len(index))
    return pd.Series(1.0 + np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.3, len(t)), index=index)


def white_noise(seed: int = 11, days: int = 21) -> pd.Series:
    index = quarter_hours("2023-01-02", days)
    return pd.Series(np.random.default_rng(seed).normal(0, 1, len(index)), index=index)


def pv_export(seed: int = 3, start: str = "2023-02-01", days: int = 28) -> pd.Series:
    """Export following the sun's elevation (computed here with astral), scaled by a daily cloud factor."""
    rng = np.random.default_rng(seed)
    index = quarter_hours(start, days)
    observer = Observer(latitude=47.3769, longitude=8.5417)
    sun = np.array([elevation(observer, (ts + pd.Timedelta(minutes=7.5)).to_pydatetime()) for ts in index])
    clouds = np.repeat(rng.uniform(0.15, 1.0, days), 96)
    values = 0.25 * np.clip(np.sin(np.radians(sun)), 0, None) * clouds * rng.uniform(0.8, 1.0, len(index))
    return pd.Series(np.round(np.where(sun > 2, values, 0.0), 5), index=index)


def household_load(seed: int = 5, days: int = 28) -> pd.Series:
    """A base load, morning and evening bumps in local time, and random appliance spikes."""
    rng = np.random.default_rng(seed)
    index = quarter_hours("2023-02-01", days)
    hour = index.tz_convert(TZ).hour.to_numpy()
    values = 0.012 + 0.02 * ((hour >= 6) & (hour < 8)) + 0.04 * ((hour >= 18) & (hour < 22))
    values = values + rng.exponential(0.005, len(index))
    spikes = rng.random(len(index)) < 0.03
    return pd.Series(np.round(values + spikes * rng.uniform(0.3, 0.9, len(index)), 4), index=index)


# --- autocorrelation -----------------------------------------------------------------------------


def test_acf_and_pacf_equal_statsmodels() -> None:
    series = daily_periodic()
    result = autocorrelation(series, steps_per_hour=4, nlags=200)
    expected_acf = acf(series.to_numpy(), nlags=200, fft=True)
    expected_pacf = pacf(series.to_numpy(), nlags=200, method="ywm")
    assert [v.lag for v in result.lags] == list(range(1, 201))
    np.testing.assert_allclose([v.acf for v in result.lags], expected_acf[1:], rtol=0, atol=1e-12)
    np.testing.assert_allclose([v.pacf for v in result.lags], expected_pacf[1:], rtol=0, atol=1e-10)
    assert result.confidence_band == pytest.approx(1.959964 / np.sqrt(len(series)), rel=1e-6)
    assert all(abs(v.pacf) <= 1 for v in result.lags)


def test_daily_period_names_lag_96() -> None:
    result = autocorrelation(daily_periodic(), steps_per_hour=4)
    assert 96 in result.significant_lags
    assert 1 in result.significant_lags
    assert result.strongest_lag == 96
    assert result.seasonal_period == 96
    assert result.seasonal_strength > 0.8 > 0.2 > result.seasonal_strength_noise
    assert all(row.p_value < 1e-10 for row in result.ljung_box)
    assert [row.lag for row in result.ljung_box] == [96, 672]
    assert lag_label(96, 4) == "lag 96 (1 day)"
    assert lag_label(672, 4) == "lag 672 (1 week)"


def test_white_noise_names_no_lag() -> None:
    result = autocorrelation(white_noise(), steps_per_hour=4)
    assert result.significant_lags == []
    assert result.named_lags == [1, 4, 48, 96, 192][: len(result.named_lags)]
    assert result.seasonal_strength < 0.2
    assert abs(result.seasonal_strength - result.seasonal_strength_noise) < 0.05
    assert all(row.p_value > 0.05 for row in result.ljung_box)


def test_hourly_steps_and_decomposition() -> None:
    values, steps_per_hour, filled = steps(daily_periodic(), "hour", TZ)
    assert (steps_per_hour, filled, len(values)) == (1, 0, 21 * 24)
    result = autocorrelation(values, steps_per_hour=1)
    assert 24 in result.significant_lags
    parts = decompose(values, 24)
    np.testing.assert_allclose((parts.trend + parts.seasonal + parts.resid).to_numpy(), values.to_numpy())


def test_gaps_are_filled_and_counted() -> None:
    series = daily_periodic().drop(daily_periodic().index[[10, 11, 500]])
    values, _, filled = steps(series, "quarter_hour", TZ)
    assert filled == 3
    assert len(values) == 21 * 96


def test_too_little_data_is_a_failed_precondition_with_the_need() -> None:
    short = daily_periodic(days=1)
    with pytest.raises(FailedPrecondition, match="need at least 386 observations"):
        autocorrelation(short, steps_per_hour=4)
    with pytest.raises(FailedPrecondition, match="needs at least 193 observations"):
        decompose(short, 96)
    with pytest.raises(FailedPrecondition, match="constant"):
        autocorrelation(pd.Series(0.0, index=quarter_hours("2023-01-02", 5)), steps_per_hour=4)
    with pytest.raises(InvalidArgument) as error:
        autocorrelation(short, steps_per_hour=4, nlags=0)
    assert error.value.field == "nlags"
    with pytest.raises(InvalidArgument) as error:
        autocorrelation(daily_periodic(), steps_per_hour=4, alpha=1.5)
    assert error.value.field == "alpha"
    with pytest.raises(InvalidArgument) as error:
        steps(short, "day", TZ)
    assert error.value.field == "interval"


# --- profiles, describe, time zones --------------------------------------------------------------


def test_profile_matches_pandas_in_local_time() -> None:
    series = household_load()
    local = series.tz_convert(TZ)
    groups = profile(series, "hour_of_day", TZ)
    expected = local.groupby(local.index.hour).agg(["count", "sum", "mean", "median"])
    assert [g.hour for g in groups] == list(range(24))
    np.testing.assert_allclose([g.sum for g in groups], expected["sum"])
    np.testing.assert_allclose([g.median for g in groups], expected["median"])
    np.testing.assert_allclose([g.p90 for g in groups], local.groupby(local.index.hour).quantile(0.9))
    matrix = profile(series, "hour_by_weekday", TZ)
    assert len(matrix) == 168
    assert matrix[0].key == "1-00"
    week = profile(series, "week", TZ)
    assert [g.key for g in week] == ["2023-W05", "2023-W06", "2023-W07", "2023-W08", "2023-W09"]
    quarter = profile(series, "quarter_hour_of_day", TZ)
    assert (len(quarter), quarter[1].key, quarter[1].minute) == (96, "00:15", 15)


def test_dst_days_have_92_and_100_quarter_hours() -> None:
    spring = make_series(quarter_hours("2023-03-25", 3), np.ones(3 * 96))
    days = aggregate(spring, "day", TZ)
    march_26 = days[days["start"] == pd.Timestamp("2023-03-25 23:00", tz="UTC")].iloc[0]
    assert (march_26["count"], march_26["expected"]) == (92, 92)
    autumn = make_series(quarter_hours("2023-10-28", 3), np.ones(3 * 96))
    days = aggregate(autumn, "day", TZ)
    october_29 = days[days["start"] == pd.Timestamp("2023-10-28 22:00", tz="UTC")].iloc[0]
    assert (october_29["count"], october_29["expected"]) == (100, 100)
    hours = aggregate(autumn, "hour", TZ)
    assert (hours["count"] == 4).all()  # the two 02:00 hours stay apart
    with pytest.raises(InvalidArgument) as error:
        check_time_zone("Mars/Olympus")
    assert error.value.field == "time_zone"


def test_describe() -> None:
    series = pv_export()
    result = describe(series, TZ, top_n=3)
    assert result.count == len(series)
    assert result.total == pytest.approx(series.sum())
    assert result.zero_share == pytest.approx((series == 0).mean())
    assert result.max == series.max()
    assert result.max_at == series.idxmax()
    assert result.quantiles["p95"] == pytest.approx(series.quantile(0.95))
    assert [p.value for p in result.peak_intervals] == sorted(series.nlargest(3).tolist(), reverse=True)
    daily = series.tz_convert(TZ).groupby(series.tz_convert(TZ).index.date).sum()
    assert result.peak_days[0].value == pytest.approx(daily.max())
    hourly = describe(series, TZ, interval="hour")
    assert hourly.count == len(series) // 4
    assert hourly.total == pytest.approx(series.sum())


# --- explain -------------------------------------------------------------------------------------


def evidence(result, name: str) -> float:  # type: ignore[no-untyped-def]
    return next(e.value for e in result.evidence if e.name == name)


def test_pv_shaped_export_is_photovoltaic() -> None:
    series = pv_export()
    result = explain(series, EXPORT_OBIS, TZ, ZURICH)
    assert (result.classification, result.direction, result.shape_direction) == (
        "photovoltaic_export",
        "export",
        "export",
    )
    assert evidence(result, "night_energy_share") == 0
    assert evidence(result, "sun_elevation_correlation") > 0.5
    assert abs(evidence(result, "peak_offset_from_solar_noon")) < 1
    assert evidence(result, "first_activity_after_sunrise") >= 0
    assert all(e.met for e in result.evidence if e.rule and e.name != "night_zero_share")
    assert "Photovoltaic export" in result.headline
    # Without a known OBIS code the shape alone decides.
    assert explain(series, UNKNOWN_OBIS, TZ, ZURICH).classification == "photovoltaic_export"
    # In summer the same rules hold with the longer day.
    assert explain(pv_export(start="2023-06-01", days=14), EXPORT_OBIS, TZ, ZURICH).classification == (
        "photovoltaic_export"
    )


def test_household_load_is_consumption() -> None:
    series = household_load()
    result = explain(series, IMPORT_OBIS, TZ, ZURICH)
    assert (result.classification, result.direction, result.shape_direction) == ("consumption", "import", "import")
    assert evidence(result, "night_zero_share") == 0
    assert evidence(result, "base_load_w") == pytest.approx(series.quantile(0.05) * 4000)
    assert evidence(result, "spike_count") > 0
    assert "weekend_to_weekday_ratio" in {e.name for e in result.evidence}
    assert result.headline.startswith("Consumption")
    assert explain(series, UNKNOWN_OBIS, TZ, ZURICH).direction == "import"
    # An export code on a load shape: the code wins the direction, the shape says it is no PV.
    assert explain(series, EXPORT_OBIS, TZ, ZURICH).classification == "other_export"


# --- balance -------------------------------------------------------------------------------------


def test_balance() -> None:
    imported, exported = household_load(), pv_export()
    result = balance(imported, exported.iloc[:-4], "day", TZ)
    assert result.unmatched == 4
    common = imported.iloc[:-4]
    assert result.imported_total == pytest.approx(common.sum())
    assert result.exported_total == pytest.approx(exported.iloc[:-4].sum())
    assert result.net_import_total == pytest.approx(common.sum() - exported.iloc[:-4].sum())
    assert result.export_interval_share == pytest.approx((exported.iloc[:-4] > 0).mean())
    assert result.buckets["net_import"].sum() == pytest.approx(result.net_import_total)
    assert len(result.buckets) == 28  # local days Feb 1 (from 01:00) .. Feb 28: Mar 1 00:00-00:45 was dropped
    assert any("cannot tell" in text for text in result.findings)


# --- plots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", plots.KINDS)
def test_plots_are_deterministic_pngs(kind: str) -> None:
    series = pv_export(days=7)
    render = {"tz": TZ, "title": "test", "unit": "kWh", "width_px": 600, "height_px": 400, "nlags": 100}
    png = plots.render(kind, series, **render)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < len(png) < 1_000_000
    assert Image.open(io.BytesIO(png)).size == (600, 400)
    assert plots.render(kind, series, **render) == png
    assert b"Software" not in png[:200]


def test_balance_chart() -> None:
    result = balance(household_load(days=7), pv_export(days=7), "day", TZ)
    png = plots.balance_chart(result, TZ, "balance", "kWh", 800, 400)
    assert Image.open(io.BytesIO(png)).size == (800, 400)


def test_make_series_sorts_and_is_utc() -> None:
    series = make_series([datetime(2023, 2, 1, 0, 15, tzinfo=UTC), datetime(2023, 2, 1, tzinfo=UTC)], [2.0, 1.0])
    assert series.index.tz is not None and str(series.index.tz) == "UTC"
    assert series.tolist() == [1.0, 2.0]
