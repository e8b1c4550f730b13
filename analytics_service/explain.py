"""Explain a channel: import or export, and what kind of source or load, with the numbers behind it.

Two independent readings are compared. The OBIS code says the direction (C=1 import, C=2 export).
The shape says it again without the code: a generator is silent at night and follows the sun's
elevation; a load draws energy at night too. The classification rules are fixed thresholds stated in
the evidence (`rule`, `met`), so every sentence of the answer can be checked against a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analytics_service.fmt import clock, local_time, pct
from analytics_service.profiles import profile
from analytics_service.sun import HORIZON_DEG, Site, elevations, sun_times
from analytics_service.timeseries import WEEKDAY_NAMES, aggregate, local_naive
from meterdata.obis import hex_to_notation, lookup

# Classification thresholds (the rules printed with the evidence).
NIGHT_ENERGY_SHARE_MAX = 0.02  # a generator delivers at most 2 % of its energy with the sun down
SUN_CORRELATION_MIN = 0.5  # ... and follows the sun's elevation
PEAK_OFFSET_MAX_HOURS = 2.0  # ... with its mean maximum within 2 h of solar noon
NIGHT_ZERO_SHARE_LOAD_MAX = 0.5  # a load draws energy in most night quarter-hours
SPIKE_IQR_FACTOR = 3.0  # Tukey's far-out fence: Q3 + 3 IQR
DAYTIME_HOURS = (6, 22)  # local clock hours counted as "daytime" for spike timing

# Evidence whose sentence repeats another one's number; kept as evidence, left out of the findings.
_NOT_FINDINGS = {"spike_energy_share", "base_load_energy_share", "daily_energy_cv"}

CLASSIFICATIONS = ("consumption", "photovoltaic_export", "other_export", "other")


@dataclass(frozen=True)
class Evidence:
    name: str
    value: float
    unit: str
    text: str
    rule: str = ""
    met: bool = False


@dataclass(frozen=True)
class Explanation:
    obis: str
    obis_notation: str
    obis_name: str
    obis_direction: str  # "import" | "export" | "unspecified"
    shape_direction: str
    direction: str
    classification: str
    headline: str
    findings: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class _Shape:
    """The shape measurements shared by both kinds of channel."""

    total: float
    night_count: int
    night_energy_share: float
    night_zero_share: float
    sun_correlation: float
    peak_slot: str
    peak_mean: float
    peak_offset_hours: float
    solar_noon: float
    sunrise: float
    sunset: float


def _shape(series: pd.Series, tz: str, site: Site) -> tuple[_Shape, np.ndarray, pd.DataFrame]:
    elev = elevations(series.index, site)
    night = elev <= HORIZON_DEG
    values = series.to_numpy()
    total = float(values.sum())
    sun_weight = np.clip(np.sin(np.radians(elev)), 0.0, None)
    correlation = (
        float(np.corrcoef(values, sun_weight)[0, 1]) if values.std() > 0 and sun_weight.std() > 0 else float("nan")
    )
    slots = profile(series, "quarter_hour_of_day", tz)
    peak = max(slots, key=lambda g: g.mean)
    times = sun_times(series.index, site, tz)
    noon = float(times["noon"].median())
    peak_middle = peak.hour + (peak.minute + 7.5) / 60
    shape = _Shape(
        total=total,
        night_count=int(night.sum()),
        night_energy_share=float(values[night].sum() / total) if total > 0 else float("nan"),
        night_zero_share=float((values[night] == 0).mean()) if night.any() else float("nan"),
        sun_correlation=correlation,
        peak_slot=peak.key,
        peak_mean=peak.mean,
        peak_offset_hours=peak_middle - noon,
        solar_noon=noon,
        sunrise=float(times["sunrise"].median()),
        sunset=float(times["sunset"].median()),
    )
    return shape, night, times


def _generator_rules(shape: _Shape) -> list[Evidence]:
    return [
        Evidence(
            "night_energy_share",
            shape.night_energy_share,
            "share",
            f"{pct(shape.night_energy_share)} of the energy flows while the sun is below the horizon "
            f"({shape.night_count} night quarter-hours).",
            f"<= {NIGHT_ENERGY_SHARE_MAX}",
            bool(shape.night_energy_share <= NIGHT_ENERGY_SHARE_MAX),
        ),
        Evidence(
            "sun_elevation_correlation",
            shape.sun_correlation,
            "r",
            f"The quarter-hour values correlate with the sine of the sun's elevation at r = {shape.sun_correlation:.2f}.",
            f">= {SUN_CORRELATION_MIN}",
            bool(shape.sun_correlation >= SUN_CORRELATION_MIN),
        ),
        Evidence(
            "peak_offset_from_solar_noon",
            shape.peak_offset_hours,
            "h",
            f"The mean is highest in the quarter-hour starting {shape.peak_slot} local time "
            f"({shape.peak_mean:.4f} kWh), {shape.peak_offset_hours:+.2f} h from the median solar noon "
            f"{clock(shape.solar_noon)}.",
            f"|x| <= {PEAK_OFFSET_MAX_HOURS}",
            bool(abs(shape.peak_offset_hours) <= PEAK_OFFSET_MAX_HOURS),
        ),
    ]


def _load_rule(shape: _Shape) -> Evidence:
    return Evidence(
        "night_zero_share",
        shape.night_zero_share,
        "share",
        f"{pct(shape.night_zero_share)} of the {shape.night_count} night quarter-hours are zero.",
        f"< {NIGHT_ZERO_SHARE_LOAD_MAX}",
        bool(shape.night_zero_share < NIGHT_ZERO_SHARE_LOAD_MAX),
    )


def _full_days(series: pd.Series, tz: str) -> pd.DataFrame:
    days = aggregate(series, "day", tz)
    days = days[days["count"] == days["expected"]].copy()
    days["weekday"] = local_naive(pd.DatetimeIndex(days["start"]), tz).day_of_week + 1
    return days


def _activity_window(series: pd.Series, tz: str, times: pd.DataFrame) -> list[Evidence]:
    """When a channel that rests at night starts and stops each day, against sunrise and sunset."""
    naive = local_naive(series.index, tz)
    frame = pd.DataFrame({"date": naive.date, "hour": naive.hour + naive.minute / 60, "value": series.to_numpy()})
    active = frame[frame["value"] > 0].groupby("date")["hour"].agg(["min", "max"])
    if active.empty:
        return []
    joined = active.join(times, how="inner")
    start_offset = float(((joined["min"] - joined["sunrise"]) * 60).median())
    end_offset = float(((joined["max"] + 0.25 - joined["sunset"]) * 60).median())
    days = len(joined)
    return [
        Evidence(
            "first_activity_after_sunrise",
            start_offset,
            "min",
            f"On the {days} days with a non-zero value, the first one starts a median of {start_offset:.0f} min "
            f"after sunrise (median sunrise {clock(float(joined['sunrise'].median()))} local time).",
        ),
        Evidence(
            "last_activity_before_sunset",
            -end_offset,
            "min",
            f"The last non-zero quarter-hour ends a median of {-end_offset:.0f} min before sunset "
            f"(median sunset {clock(float(joined['sunset'].median()))}).",
        ),
    ]


def _daily_spread(series: pd.Series, tz: str) -> list[Evidence]:
    days = _full_days(series, tz)
    if days.empty:
        return []
    daily = days["value"]
    cv = float(daily.std() / daily.mean()) if daily.mean() > 0 and len(daily) > 1 else float("nan")
    return [
        Evidence(
            "daily_energy_mean",
            float(daily.mean()),
            "kWh",
            f"Over {len(daily)} full local days the daily total ranges from {daily.min():.2f} to {daily.max():.2f} kWh "
            f"(mean {daily.mean():.2f} kWh, coefficient of variation {cv:.2f}).",
        ),
        Evidence("daily_energy_cv", cv, "ratio", f"Day-to-day coefficient of variation {cv:.2f}."),
    ]


def _spikes(series: pd.Series, tz: str) -> list[Evidence]:
    q1, q3 = (float(v) for v in series.quantile([0.25, 0.75]))
    fence = q3 + SPIKE_IQR_FACTOR * (q3 - q1)
    spikes = series[series > fence]
    evidence = [
        Evidence(
            "spike_fence",
            fence,
            "kWh",
            f"Spikes are quarter-hours above Tukey's far-out fence Q3 + 3 IQR = {q3:.4f} + 3 x {q3 - q1:.4f} "
            f"= {fence:.4f} kWh.",
        )
    ]
    if spikes.empty:
        evidence.append(Evidence("spike_count", 0, "quarter-hours", "No quarter-hour exceeds the fence."))
        return evidence
    total = float(series.sum())
    steps = spikes.index.to_series().diff() != pd.Timedelta(minutes=15)
    episode_ids = steps.cumsum()
    lengths = episode_ids.value_counts().sort_index() * 15
    hours = pd.Series(local_naive(spikes.index, tz).hour)
    top_hours = hours.value_counts().sort_index().sort_values(ascending=False, kind="mergesort").head(3)
    daytime = float(hours.between(DAYTIME_HOURS[0], DAYTIME_HOURS[1] - 1).mean())
    top_text = ", ".join(f"{h:02d}:00-{h + 1:02d}:00 ({n})" for h, n in top_hours.items())
    biggest_at = spikes.idxmax()
    evidence += [
        Evidence(
            "spike_count",
            len(spikes),
            "quarter-hours",
            f"{len(spikes)} quarter-hours ({pct(len(spikes) / len(series))}) are spikes; they carry "
            f"{pct(float(spikes.sum()) / total)} of the energy.",
        ),
        Evidence(
            "spike_energy_share", float(spikes.sum()) / total, "share", "Share of the energy in spike quarter-hours."
        ),
        Evidence(
            "spike_max_kw",
            float(spikes.max()) * 4,
            "kW",
            f"The largest is {spikes.max():.4f} kWh at {local_time(biggest_at, tz)} local time, an average of "
            f"{spikes.max() * 4:.2f} kW over the quarter-hour.",
        ),
        Evidence(
            "spike_episodes",
            len(lengths),
            "episodes",
            f"They form {len(lengths)} episodes of consecutive spike quarter-hours, median {lengths.median():.0f} min, "
            f"longest {lengths.max():.0f} min.",
        ),
        Evidence(
            "spike_daytime_share",
            daytime,
            "share",
            f"{pct(daytime)} of the spikes fall between {DAYTIME_HOURS[0]:02d}:00 and {DAYTIME_HOURS[1]:02d}:00 "
            f"local time; the most frequent hours are {top_text}.",
        ),
    ]
    return evidence


def _base_load(series: pd.Series) -> list[Evidence]:
    base = float(series.quantile(0.05))
    median = float(series.median())
    total = float(series.sum())
    share = base * len(series) / total if total > 0 else float("nan")
    return [
        Evidence(
            "base_load_w",
            base * 4000,
            "W",
            f"Base load: the p05 quarter-hour is {base:.4f} kWh, a continuous draw of about {base * 4000:.0f} W; "
            f"that alone accounts for {pct(share)} of the {total:.2f} kWh.",
        ),
        Evidence("base_load_energy_share", share, "share", "Share of the energy explained by the base load."),
        Evidence(
            "peak_to_median",
            float(series.max()) / median if median > 0 else float("nan"),
            "ratio",
            f"The largest quarter-hour is {series.max() / median:.1f} times the median ({median:.4f} kWh)."
            if median > 0
            else "The median quarter-hour is zero.",
        ),
    ]


def _week_pattern(series: pd.Series, tz: str) -> list[Evidence]:
    days = _full_days(series, tz)
    weekday = days[days["weekday"] <= 5]["value"]
    weekend = days[days["weekday"] >= 6]["value"]
    if weekday.empty or weekend.empty:
        return []
    ratio = float(weekend.mean() / weekday.mean()) if weekday.mean() > 0 else float("nan")
    by_day = days.groupby("weekday")["value"].mean()
    top = int(by_day.idxmax())
    return [
        Evidence(
            "weekend_to_weekday_ratio",
            ratio,
            "ratio",
            f"Mean daily energy {weekday.mean():.2f} kWh on {len(weekday)} full weekdays against {weekend.mean():.2f} "
            f"kWh on {len(weekend)} full weekend days (weekend / weekday = {ratio:.2f}); the highest weekday mean is "
            f"{WEEKDAY_NAMES[top - 1]} ({by_day.max():.2f} kWh).",
        )
    ]


def _hour_pattern(series: pd.Series, tz: str) -> list[Evidence]:
    hours = profile(series, "hour_of_day", tz)
    high = max(hours, key=lambda g: g.mean)
    low = min(hours, key=lambda g: g.mean)
    return [
        Evidence(
            "hour_of_day_high_to_low",
            high.mean / low.mean if low.mean > 0 else float("nan"),
            "ratio",
            f"By hour of day the mean quarter-hour is highest at {high.hour:02d}:00-{high.hour + 1:02d}:00 "
            f"({high.mean:.4f} kWh) and lowest at {low.hour:02d}:00-{low.hour + 1:02d}:00 ({low.mean:.4f} kWh).",
        )
    ]


def _obis_direction(obis: str) -> tuple[str, str, str]:
    entry = lookup(obis)
    notation = hex_to_notation(obis) if len(obis) == 12 else obis
    if entry is None:
        return notation, "", "unspecified"
    return entry.notation, entry.name, entry.direction


def explain(series: pd.Series, obis: str, tz: str, site: Site) -> Explanation:
    """Classify a non-empty, non-negative quarter-hour series; every sentence carries its number."""
    notation, name, obis_direction = _obis_direction(obis)
    shape, _night, times = _shape(series, tz, site)
    generator_rules = _generator_rules(shape)
    load_rule = _load_rule(shape)
    generator_like = all(rule.met for rule in generator_rules)
    shape_direction = "export" if generator_like else "import" if load_rule.met else "unspecified"
    direction = obis_direction if obis_direction != "unspecified" else shape_direction

    if direction == "export":
        classification = "photovoltaic_export" if generator_like else "other_export"
    elif direction == "import":
        classification = "consumption" if load_rule.met and not generator_like else "other"
    else:
        classification = "other"

    findings: list[str] = []
    code_text = f"OBIS {obis} = {notation}"
    if name:
        findings.append(f"{code_text}: {name}, kWh in each 15-minute period; the code says {obis_direction}.")
    else:
        findings.append(f"{code_text} is not in the OBIS catalogue; the direction comes from the shape alone.")
    findings.append(
        f"The shape alone says {shape_direction}: "
        + " ".join(rule.text for rule in [*generator_rules, load_rule])
        + (" The code and the shape agree." if shape_direction == obis_direction else "")
    )
    if obis_direction != "unspecified" and shape_direction not in (obis_direction, "unspecified"):
        findings.append(f"The code ({obis_direction}) and the shape ({shape_direction}) disagree.")

    evidence = [*generator_rules, load_rule]
    if direction == "export" or generator_like:
        extra = _activity_window(series, tz, times) + _daily_spread(series, tz)
        peak = float(series.max())
        extra.append(
            Evidence(
                "peak_power_kw",
                peak * 4,
                "kW",
                f"The largest quarter-hour is {peak:.5f} kWh at {local_time(series.idxmax(), tz)} local time, "
                f"an average of {peak * 4:.3f} kW.",
            )
        )
    else:
        extra = _base_load(series) + _spikes(series, tz) + _week_pattern(series, tz) + _hour_pattern(series, tz)
        extra += _daily_spread(series, tz)
    evidence += extra
    findings += [item.text for item in extra if item.name not in _NOT_FINDINGS]

    headline = _headline(classification, name or notation, shape, {e.name: e for e in evidence})
    return Explanation(
        obis=obis,
        obis_notation=notation,
        obis_name=name,
        obis_direction=obis_direction,
        shape_direction=shape_direction,
        direction=direction,
        classification=classification,
        headline=headline,
        findings=findings,
        evidence=evidence,
    )


def _headline(classification: str, channel: str, shape: _Shape, evidence: dict[str, Evidence]) -> str:
    if classification == "photovoltaic_export":
        return (
            f"Photovoltaic export: {channel}; {pct(shape.night_zero_share)} of the night quarter-hours are zero, "
            f"the mean peaks at {shape.peak_slot} local time ({shape.peak_offset_hours:+.1f} h from solar noon) and "
            f"follows the sun's elevation (r = {shape.sun_correlation:.2f})."
        )
    if classification == "consumption":
        text = (
            f"Consumption: {channel}; a base load of about {evidence['base_load_w'].value:.0f} W that runs day "
            f"and night ({pct(shape.night_zero_share)} of the night quarter-hours are zero)"
        )
        spikes = int(evidence["spike_count"].value)
        if spikes:
            text += f", with {spikes} spike quarter-hours up to {evidence['spike_max_kw'].value:.2f} kW"
        return text + "."
    failed = [e.name for e in evidence.values() if e.rule and not e.met]
    kind = "Export of another kind" if classification == "other_export" else "Unclassified"
    return f"{kind}: {channel}; rules not met: {', '.join(failed) or 'none'}."
