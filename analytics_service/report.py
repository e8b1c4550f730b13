"""The data-exploration report: `docs/eda/README.md` and its figures, from the database through the services.

Every number and every sentence about the data comes from the query and analytics services' answers;
this module only arranges them. The output is byte-for-byte reproducible except the one line that
starts with `Generated:` (numbers are printed with fixed precision, figures are deterministic PNGs).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import grpc
import pandas as pd

from analytics_service.sun import Site, sun_times
from analytics_service.timeseries import WEEKDAY_NAMES, lag_label
from meterdata import PROJECT_ROOT
from meterdata.grpc_client import sync_channel
from meterdata.obis import OBIS_CATALOGUE, lookup
from meterdata.settings import Settings
from meterdata.tenancy import DEFAULT_TENANT
from meterdata.v1 import analytics_pb2 as pb
from meterdata.v1 import analytics_pb2_grpc, common_pb2, query_pb2, query_pb2_grpc

DEADLINE = 60.0
PARALLEL_CALLS = 4
SNAPSHOT_SUMS = PROJECT_ROOT / "ingest_service" / "snapshot" / "SHA256SUMS"
OBIS_SOURCES = (
    'Leneda, "OBIS code meaning" (https://leneda.eu/en/docs/obis-code-meaning)',
    'Wikipedia (de), "OBIS-Kennzahlen" (https://de.wikipedia.org/wiki/OBIS-Kennzahlen)',
)
FIGURES = (  # kind, file suffix, width, height, interval
    (pb.PLOT_KIND_TIMESERIES, "timeseries", 1000, 400, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_HISTOGRAM, "histogram", 1000, 400, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_HOUR_OF_DAY, "hour-of-day", 1000, 450, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_DAILY, "daily", 1000, 450, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_WEEKDAY, "weekday", 800, 400, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_HEATMAP, "heatmap", 900, 550, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_ACF, "acf", 1000, 600, common_pb2.INTERVAL_QUARTER_HOUR),
    (pb.PLOT_KIND_ACF, "acf-hourly", 1000, 600, common_pb2.INTERVAL_HOUR),
    (pb.PLOT_KIND_DECOMPOSITION, "decomposition", 1000, 700, common_pb2.INTERVAL_QUARTER_HOUR),
)
HOURLY_NLAGS = 168  # one week of hours
RANGE_OF_SEVEN = 2.704  # expected range of 7 standard normal draws (the d2 constant of quality control)
CLASSIFICATION_WORDS = {
    pb.CLASSIFICATION_CONSUMPTION: "consumption (a household-like load drawing from the grid)",
    pb.CLASSIFICATION_PHOTOVOLTAIC_EXPORT: "photovoltaic export (generation fed into the grid, following daylight)",
    pb.CLASSIFICATION_OTHER_EXPORT: "export of another kind",
    pb.CLASSIFICATION_OTHER: "unclassified",
}
DIRECTION_WORDS = {
    common_pb2.DIRECTION_IMPORT: "import",
    common_pb2.DIRECTION_EXPORT: "export",
    common_pb2.DIRECTION_UNSPECIFIED: "unspecified",
}


# --- formatting ----------------------------------------------------------------------------------


def num(value: float, digits: int = 4) -> str:
    """Fixed precision, never '-0.0000', 'n/a' for NaN: the same bytes on every run."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def exact(value: float, digits: int = 6) -> str:
    """Rounded and without trailing zeros: 97.6082, 36.19725."""
    return num(value, digits).rstrip("0").rstrip(".") if math.isfinite(value) else "n/a"


def pct(share: float, digits: int = 1) -> str:
    return f"{num(share * 100, digits)} %"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


def utc(stamp: object) -> pd.Timestamp:
    return pd.Timestamp(stamp.ToDatetime(), tz="UTC")  # type: ignore[attr-defined]


def local(stamp: object, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return utc(stamp).tz_convert(tz).strftime(fmt)


def short(muid: str) -> str:
    return muid[:8]


# --- collecting the answers ----------------------------------------------------------------------


@dataclass
class MeterData:
    muid: str
    meter: common_pb2.Meter
    channel: common_pb2.Channel
    served_sha256: str = ""
    describe: dict[int, pb.Description] = field(default_factory=dict)
    profiles: dict[int, pb.Profile] = field(default_factory=dict)
    acf: dict[int, pb.Autocorrelation] = field(default_factory=dict)
    explanation: pb.Explanation | None = None
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def range(self) -> common_pb2.ChannelRange:
        return common_pb2.ChannelRange(muid=self.muid, obis=self.channel.obis)

    @property
    def label(self) -> str:
        return f"{short(self.muid)} ({DIRECTION_WORDS[self.channel.direction]})"


class Services:
    """The two stubs the report talks to, every call with a deadline, for the default tenant's meters."""

    def __init__(self, query_address: str, analytics_address: str, tenant: str = DEFAULT_TENANT) -> None:
        self._channels = [sync_channel(query_address, tenant=tenant), sync_channel(analytics_address, tenant=tenant)]
        self.query = query_pb2_grpc.QueryServiceStub(self._channels[0])
        self.analytics = analytics_pb2_grpc.AnalyticsServiceStub(self._channels[1])

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def served_sha256(self, muid: str, obis: str) -> str:
        """sha256 of the readings as served: lines 'ISO-UTC-start,value' with Python's shortest float repr."""
        digest = hashlib.sha256()
        request = query_pb2.ListReadingsRequest(
            muid=muid, obis=obis, order=common_pb2.SORT_ORDER_ASCENDING, page_size=10_000
        )
        while True:
            page = self.query.ListReadings(request, timeout=DEADLINE)
            for reading in page.readings:
                digest.update(f"{reading.ts.ToJsonString()},{reading.value!r}\n".encode())
            if not page.next_page_token:
                return digest.hexdigest()
            request.page_token = page.next_page_token


def _requests(data: MeterData, tz: str, out_dir: Path, services: Services) -> list[Callable[[], None]]:
    """Every call the report needs for one channel, as independent tasks that store their answer."""
    analytics = services.analytics
    tasks: list[Callable[[], None]] = [
        lambda: setattr(data, "served_sha256", services.served_sha256(data.muid, data.channel.obis)),
        lambda: setattr(
            data,
            "explanation",
            analytics.ExplainMeter(pb.ExplainMeterRequest(channel=data.range, time_zone=tz), timeout=DEADLINE),
        ),
    ]

    def describe(interval: int) -> None:
        request = pb.DescribeRequest(channel=data.range, time_zone=tz, top_n=5, interval=interval)
        data.describe[interval] = analytics.Describe(request, timeout=DEADLINE)

    def profile(kind: int) -> None:
        request = pb.GetProfileRequest(channel=data.range, kind=kind, time_zone=tz)
        data.profiles[kind] = analytics.GetProfile(request, timeout=DEADLINE)

    def autocorrelation(interval: int) -> None:
        nlags = HOURLY_NLAGS if interval == common_pb2.INTERVAL_HOUR else 0
        request = pb.GetAutocorrelationRequest(channel=data.range, interval=interval, nlags=nlags)
        data.acf[interval] = analytics.GetAutocorrelation(request, timeout=DEADLINE)

    def figure(kind: int, suffix: str, width: int, height: int, interval: int) -> None:
        request = pb.RenderPlotRequest(
            channel=data.range,
            kind=kind,
            time_zone=tz,
            width_px=width,
            height_px=height,
            interval=interval,
            nlags=HOURLY_NLAGS if interval == common_pb2.INTERVAL_HOUR else 0,
        )
        name = f"{short(data.muid)}-{suffix}.png"
        (out_dir / name).write_bytes(analytics.RenderPlot(request, timeout=DEADLINE).png)
        data.figures[suffix] = name

    intervals = (
        common_pb2.INTERVAL_QUARTER_HOUR,
        common_pb2.INTERVAL_HOUR,
        common_pb2.INTERVAL_DAY,
        common_pb2.INTERVAL_WEEK,
    )
    tasks += [partial(describe, interval) for interval in intervals]
    tasks += [partial(profile, kind) for kind in pb.ProfileKind.values() if kind != pb.PROFILE_KIND_UNSPECIFIED]
    tasks += [partial(autocorrelation, interval) for interval in intervals[:2]]
    tasks += [partial(figure, *spec) for spec in FIGURES]
    return tasks


def collect(services: Services, muids: Sequence[str], tz: str, out_dir: Path) -> list[MeterData]:
    """All answers for all channels of the given meters. The calls run a few at a time (the services
    compute while the report waits); each answer lands in its own slot, so the order cannot matter."""
    meters = []
    for muid in muids:
        meter = services.query.GetMeter(query_pb2.GetMeterRequest(muid=muid), timeout=DEADLINE)
        meters += [MeterData(muid, meter, channel) for channel in meter.channels]
    with ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as pool:
        futures = [pool.submit(task) for data in meters for task in _requests(data, tz, out_dir, services)]
        for future in futures:
            future.result()
    return meters


def pick_pair(meters: Sequence[MeterData]) -> tuple[MeterData, MeterData] | None:
    """The first import and the first export channel, for the balance."""
    imports = [m for m in meters if m.channel.direction == common_pb2.DIRECTION_IMPORT]
    exports = [m for m in meters if m.channel.direction == common_pb2.DIRECTION_EXPORT]
    return (imports[0], exports[0]) if imports and exports else None


# --- sections ------------------------------------------------------------------------------------


def _snapshot_sums() -> dict[str, str]:
    if not SNAPSHOT_SUMS.exists():
        return {}
    sums = {}
    for line in SNAPSHOT_SUMS.read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name.removesuffix(".json")] = digest
    return sums


def section_data(meters: Sequence[MeterData], settings: Settings, tz: str) -> list[str]:
    sums = _snapshot_sums()
    lines = [
        "## 1. The data set",
        "",
        f"Source: the published Exnaton challenge files, `{settings.upstream_base_url}/challenge/<muid>.json`, one per "
        "meter (provenance in [`ingest_service/snapshot/SOURCE.md`](../../ingest_service/snapshot/SOURCE.md)), "
        "ingested by the ingest service and read back here through the query service. Each reading is the energy of "
        "one 15-minute period in kWh; its timestamp is the period's start in UTC.",
        "",
    ]
    rows = []
    for m in meters:
        d = m.describe[common_pb2.INTERVAL_QUARTER_HOUR]
        rows.append(
            (
                f"`{m.muid}`",
                f"`{m.channel.obis}`",
                m.channel.reading_count,
                utc(m.channel.first_reading).strftime("%Y-%m-%d %H:%M"),
                utc(m.channel.last_reading).strftime("%Y-%m-%d %H:%M"),
                d.expected,
                d.expected - d.readings,
                exact(d.total),
            )
        )
    lines += table(
        ("meter", "OBIS", "readings", "first start (UTC)", "last start (UTC)", "expected", "missing", "sum kWh"), rows
    )
    lines += [
        "`expected` counts the quarter-hours from the first start to the end of the last period; `missing` is the "
        "difference to the readings found. Duplicates cannot exist: `(muid, obis, ts)` is the primary key of the "
        "readings table.",
        "",
    ]
    rows = [(f"`{m.muid}`", f"`{sums.get(m.muid, 'n/a')}`", f"`{m.served_sha256}`") for m in meters]
    lines += table(("meter", "sha256 of the published file", "sha256 of the readings as served"), rows, "lll")
    lines += [
        "The first hash is the one of the bundled snapshot (`ingest_service/snapshot/SHA256SUMS`, byte-identical to "
        "the public files); the second is computed over what the query service returns, one line "
        "`<start as ISO UTC>,<value>` per reading, so it changes when the stored data changes.",
        "",
    ]
    first = min(utc(m.describe[common_pb2.INTERVAL_QUARTER_HOUR].start) for m in meters)
    last = max(utc(m.describe[common_pb2.INTERVAL_QUARTER_HOUR].end) for m in meters)
    offsets = sorted(
        {first.tz_convert(tz).strftime("%z"), (last - pd.Timedelta(minutes=15)).tz_convert(tz).strftime("%z")}
    )
    day_profile = meters[0].profiles[pb.PROFILE_KIND_DAY].groups
    lines += [
        f"Local time is {tz} (UTC offset {' / '.join(offsets)} in this range). In local time the data runs from "
        f"{first.tz_convert(tz).strftime('%Y-%m-%d %H:%M')} to {last.tz_convert(tz).strftime('%Y-%m-%d %H:%M')}: "
        f"{len(day_profile)} local dates, of which the first has {day_profile[0].count} and the last "
        f"{day_profile[-1].count} quarter-hours. Every grouping below is done in local time; partial days are "
        "marked where they matter.",
        "",
    ]
    return lines


def section_obis(meters: Sequence[MeterData]) -> list[str]:
    lines = [
        "## 2. What the OBIS codes mean",
        "",
        "Upstream names each value by its OBIS code (IEC 62056-61) written as 6 bytes in hex, `A-B:C.D.E*F`: A = 1 "
        "electricity, B = 0 the channel, C the quantity (1 = active energy import +A, drawn from the grid; 2 = active "
        "energy export -A, fed into the grid; 3 and 4 would be reactive energy), D = 29 the energy over a capture "
        "period (here the 15 minutes of each reading), E = 0 the total over all tariffs, F = 255 unused.",
        "",
    ]
    used = {m.channel.obis for m in meters}
    rows = []
    for code, entry in OBIS_CATALOGUE.items():
        meters_with = ", ".join(f"`{short(m.muid)}`" for m in meters if m.channel.obis == code)
        rows.append((f"`{code}`", entry.notation, entry.name, entry.direction, entry.unit, meters_with or "-"))
    for code in sorted(used - set(OBIS_CATALOGUE)):
        rows.append((f"`{code}`", "?", "not in the catalogue", "?", "?", ""))
    lines += table(("hex", "OBIS", "meaning", "direction", "unit", "meters here"), rows, "llllll")
    lines += ["Sources: " + "; ".join(OBIS_SOURCES) + ".", ""]
    for m in meters:
        entry = lookup(m.channel.obis)
        if entry:
            lines.append(
                f"- `{m.muid}` carries `{m.channel.obis}` = `{entry.notation}`: {entry.name}, i.e. "
                f"{'energy drawn from the grid' if entry.direction == 'import' else 'energy fed into the grid'} in "
                f"each quarter-hour ({'reactive' if entry.reactive else 'active'} energy, {entry.unit})."
            )
    return [*lines, ""]


def _figure(m: MeterData, suffix: str, caption: str) -> str:
    return f"![{caption}]({m.figures[suffix]})"


def section_grouping(meters: Sequence[MeterData], tz: str) -> list[str]:
    lines = ["## 3. Grouping by time interval", ""]
    names = [m.label for m in meters]

    # 3.1 quarter-hours
    lines += ["### 3.1 Quarter-hours (the readings themselves)", ""]
    stats = [m.describe[common_pb2.INTERVAL_QUARTER_HOUR] for m in meters]
    rows = [
        ("values", *(d.count for d in stats)),
        ("total kWh", *(exact(d.total) for d in stats)),
        ("mean kWh", *(num(d.mean, 5) for d in stats)),
        ("std kWh", *(num(d.std, 5) for d in stats)),
        ("min kWh (first at, local)", *(f"{exact(d.min)} ({local(d.min_at, tz)})" for d in stats)),
        ("max kWh (first at, local)", *(f"{exact(d.max)} ({local(d.max_at, tz)})" for d in stats)),
        *((f"{q} kWh", *(num(d.quantiles[q], 5) for d in stats)) for q in ("p05", "p25", "p50", "p75", "p95", "p99")),
        ("zero values", *(f"{round(d.zero_share * d.count)} ({pct(d.zero_share)})" for d in stats)),
        (
            "baseline (p05) and its share of the energy",
            *(f"{num(d.baseline, 4)} ({pct(d.baseline_energy_share)})" for d in stats),
        ),
    ]
    lines += table(("", *names), rows)
    for m, d in zip(meters, stats, strict=True):
        peaks = ", ".join(f"{local(p.start, tz)} {exact(p.value)}" for p in d.peak_intervals)
        lines.append(f"- Largest quarter-hours of `{short(m.muid)}` (local start, kWh): {peaks}.")
    lines.append("")
    for m in meters:
        lines += [_figure(m, "timeseries", f"{m.label}: quarter-hour values"), ""]
        lines += [_figure(m, "histogram", f"{m.label}: histogram of the quarter-hour values"), ""]

    # 3.2 hours
    lines += ["### 3.2 Hours", "", "Hourly energy (sum of the four quarter-hours of each local hour):", ""]
    hourly = [m.describe[common_pb2.INTERVAL_HOUR] for m in meters]
    rows = [
        ("hours", *(d.count for d in hourly)),
        ("mean kWh per hour", *(num(d.mean, 4) for d in hourly)),
        ("median kWh per hour", *(num(d.quantiles["p50"], 4) for d in hourly)),
        ("p95 kWh per hour", *(num(d.quantiles["p95"], 4) for d in hourly)),
        ("max kWh per hour (local start)", *(f"{num(d.max, 4)} ({local(d.max_at, tz)})" for d in hourly)),
        ("hours with zero energy", *(f"{round(d.zero_share * d.count)} ({pct(d.zero_share)})" for d in hourly)),
    ]
    lines += table(("", *names), rows)
    lines += [
        "By hour of day (local): the energy of all quarter-hours starting in that hour over the whole range, and "
        "the mean and p90 of those quarter-hours.",
        "",
    ]
    groups = [m.profiles[pb.PROFILE_KIND_HOUR_OF_DAY].groups for m in meters]
    headers = ["hour"]
    for name in names:
        headers += [f"{name} sum kWh", "mean", "p90"]
    rows = []
    for index in range(len(groups[0])):
        row: list[object] = [f"{groups[0][index].key}:00"]
        for g in groups:
            row += [num(g[index].sum, 3), num(g[index].mean, 4), num(g[index].p90, 4)]
        rows.append(row)
    lines += table(headers, rows)
    for m in meters:
        lines += [_figure(m, "hour-of-day", f"{m.label}: profile by quarter-hour of day"), ""]

    # 3.3 days
    lines += ["### 3.3 Days", ""]
    daily = [m.describe[common_pb2.INTERVAL_DAY] for m in meters]
    rows = [
        ("local dates", *(d.count for d in daily)),
        ("mean kWh per date", *(num(d.mean, 3) for d in daily)),
        ("min kWh (date)", *(f"{num(d.min, 3)} ({local(d.min_at, tz, '%Y-%m-%d')})" for d in daily)),
        ("max kWh (date)", *(f"{num(d.max, 3)} ({local(d.max_at, tz, '%Y-%m-%d')})" for d in daily)),
        ("std kWh", *(num(d.std, 3) for d in daily)),
    ]
    lines += table(("", *names), rows)
    day_groups = [m.profiles[pb.PROFILE_KIND_DAY].groups for m in meters]
    for m, d, groups in zip(meters, daily, day_groups, strict=True):
        counts = {g.key: g.count for g in groups}
        low = local(d.min_at, tz, "%Y-%m-%d")
        lines.append(f"- `{m.label}`: the lowest date, {low}, has {counts.get(low, 0)} quarter-hours in the data.")
    lines.append("")
    headers = ["local date", "weekday", "quarter-hours"]
    for name in names:
        headers += [f"{name} kWh", "max quarter-hour"]
    rows = []
    for index, first in enumerate(day_groups[0]):
        weekday = WEEKDAY_NAMES[pd.Timestamp(first.key).day_of_week][:3]
        row = [first.key, weekday, first.count]
        for g in day_groups:
            row += [num(g[index].sum, 3), num(g[index].max, 4)]
        rows.append(row)
    lines += table(headers, rows, "llr" + "r" * (len(headers) - 3))
    for m in meters:
        lines += [_figure(m, "daily", f"{m.label}: local-day totals"), ""]

    # 3.4 weeks
    lines += ["### 3.4 ISO weeks", ""]
    week_groups = [m.profiles[pb.PROFILE_KIND_WEEK].groups for m in meters]
    headers = ["ISO week", "quarter-hours (of 672)"] + [f"{name} kWh" for name in names]
    rows = [
        [first.key, first.count, *(num(g[index].sum, 3) for g in week_groups)]
        for index, first in enumerate(week_groups[0])
    ]
    lines += table(headers, rows)
    partial = [f"{g.key} ({g.count})" for g in week_groups[0] if g.count < 672]
    lines += [f"Partial ISO weeks (quarter-hours in the data): {', '.join(partial) or 'none'}.", ""]

    # 3.5 weekdays
    lines += ["### 3.5 Weekdays", ""]
    weekday_groups = [m.profiles[pb.PROFILE_KIND_DAY_OF_WEEK].groups for m in meters]
    headers = ["weekday", "quarter-hours", "days"]
    for name in names:
        headers += [f"{name} kWh", "kWh per day", "median quarter-hour"]
    rows = []
    for index, first in enumerate(weekday_groups[0]):
        days = first.count / 96
        row = [WEEKDAY_NAMES[first.weekday - 1], first.count, num(days, 2)]
        for g in weekday_groups:
            row += [num(g[index].sum, 3), num(g[index].sum / days, 3), num(g[index].median, 4)]
        rows.append(row)
    lines += table(headers, rows)
    lines += ["`days` = quarter-hours / 96: the partial first and last local dates count by their share.", ""]
    for m in meters:
        lines += [_figure(m, "weekday", f"{m.label}: mean quarter-hour by weekday"), ""]

    # 3.6 hour x weekday
    lines += ["### 3.6 Hour of day x weekday", ""]
    for m in meters:
        cells = m.profiles[pb.PROFILE_KIND_HOUR_BY_WEEKDAY].groups
        top = max(cells, key=lambda g: g.mean)
        counts = sorted({g.count for g in cells})
        lines += [
            f"`{m.label}`: {len(cells)} cells with {' to '.join(map(str, counts[:: max(1, len(counts) - 1)]))} "
            f"quarter-hours each; the highest mean is {WEEKDAY_NAMES[top.weekday - 1]} {top.hour:02d}:00 "
            f"({num(top.mean, 4)} kWh per quarter-hour, from {top.count} values).",
            "",
            _figure(m, "heatmap", f"{m.label}: mean by hour of day and weekday"),
            "",
        ]
    return lines


def _acf_sentences(m: MeterData, answer: pb.Autocorrelation) -> list[str]:
    steps_per_hour = 4 if answer.interval == common_pb2.INTERVAL_QUARTER_HOUR else 1
    by_lag = {v.lag: v for v in answer.lags}
    sentences = []
    named = []
    for lag in answer.named_lags:
        value = by_lag[lag]
        verdict = "beyond" if lag in answer.significant_lags else "within"
        named.append(f"{lag_label(lag, steps_per_hour)} {num(value.acf, 3)} ({verdict})")
    sentences.append(
        f"ACF at the named lags, against the band +-{num(answer.named_lag_band, 3)}: " + "; ".join(named) + "."
    )
    inside = next((v.lag for v in answer.lags if abs(v.acf) <= answer.confidence_band), 0)
    if inside:
        sentences.append(
            f"The ACF first falls inside the band +-{num(answer.confidence_band, 3)} at {lag_label(inside, steps_per_hour)}."
        )
    if answer.strongest_lag:
        value = by_lag[answer.strongest_lag]
        sentences.append(
            f"The highest ACF peak after lag 1 is at {lag_label(answer.strongest_lag, steps_per_hour)}: "
            f"{num(value.acf, 3)}."
        )
    for row in answer.ljung_box:
        verdict = "rejects" if row.p_value < answer.alpha else "does not reject"
        sentences.append(
            f"Ljung-Box up to {lag_label(row.lag, steps_per_hour)}: Q = {num(row.statistic, 1)}, p = {row.p_value:.3g}; "
            f"it {verdict} 'no autocorrelation' at alpha {num(answer.alpha, 2)}."
        )
    pacf_big = sorted(answer.lags, key=lambda v: -abs(v.pacf))[:3]
    sentences.append(
        "Largest partial autocorrelations: "
        + ", ".join(f"{lag_label(v.lag, steps_per_hour)} {num(v.pacf, 3)}" for v in pacf_big)
        + "."
    )
    sentences.append(
        f"STL with a daily period ({answer.seasonal_period} steps): seasonal strength {num(answer.seasonal_strength, 3)} "
        f"against {num(answer.seasonal_strength_noise, 3)} for the same values in random order; trend strength "
        f"{num(answer.trend_strength, 3)}."
    )
    return sentences


def section_autocorrelation(meters: Sequence[MeterData]) -> list[str]:
    first = meters[0].acf[common_pb2.INTERVAL_QUARTER_HOUR]
    lines = [
        "## 4. Autocorrelation",
        "",
        "ACF and PACF (statsmodels; PACF by Yule-Walker MLE, Levinson-Durbin) of the quarter-hour series up to two days "
        f"({len(first.lags)} lags) and of the hourly series up to one week ({HOURLY_NLAGS} lags). The grey band is "
        f"+-1.96/sqrt(n) (+-{num(first.confidence_band, 3)} for the {first.observations} quarter-hours). Named lags "
        "(one step, one hour, half a day, one day, one week) are tested together, so each is called significant "
        "only beyond the Bonferroni-widened band. The seasonal strength compares the STL residual with seasonal plus "
        "residual (0 = no daily pattern, 1 = the same day every day); the noise floor is what the same values reach "
        "when shuffled.",
        "",
    ]
    for m in meters:
        lines += [f"### {m.label}", ""]
        for interval, title in (
            (common_pb2.INTERVAL_QUARTER_HOUR, "Quarter-hours"),
            (common_pb2.INTERVAL_HOUR, "Hours"),
        ):
            answer = m.acf[interval]
            lines.append(f"{title} ({answer.observations} values, {answer.filled} filled gaps):")
            lines.append("")
            lines += [f"- {sentence}" for sentence in _acf_sentences(m, answer)]
            lines.append("")
        lines += [
            _figure(m, "acf", f"{m.label}: ACF and PACF, quarter-hours"),
            "",
            _figure(m, "acf-hourly", f"{m.label}: ACF and PACF, hours"),
            "",
            _figure(m, "decomposition", f"{m.label}: STL decomposition"),
            "",
        ]
    lines += ["What it shows, in numbers:", ""]
    for m in meters:
        qh, hours = m.acf[common_pb2.INTERVAL_QUARTER_HOUR], m.acf[common_pb2.INTERVAL_HOUR]
        lag1 = qh.lags[0].acf
        day = next((v.acf for v in hours.lags if v.lag == 24), float("nan"))
        lines.append(
            f"- `{m.label}`: neighbouring quarter-hours correlate at {num(lag1, 3)}; hours one day apart at "
            f"{num(day, 3)}; the daily seasonal strength is {num(qh.seasonal_strength, 3)} (noise floor "
            f"{num(qh.seasonal_strength_noise, 3)}), i.e. {num(qh.seasonal_strength / qh.seasonal_strength_noise, 1)} "
            "times what the same values without order give."
            if qh.seasonal_strength_noise > 0
            else f"- `{m.label}`: neighbouring quarter-hours correlate at {num(lag1, 3)}."
        )
    return [*lines, ""]


def section_hypotheses(meters: Sequence[MeterData], site: str) -> list[str]:
    lines = [
        "## 5. Hypotheses: what each meter measures",
        "",
        "Each hypothesis is the analytics service's ExplainMeter answer: the direction from the OBIS code and, "
        "independently, from the shape; then fixed rules (printed with their thresholds) decide the class. "
        f"Sunrise, sunset and the sun's elevation are computed with astral for {site}.",
        "",
    ]
    for m in meters:
        e = m.explanation
        assert e is not None
        lines += [
            f"### {m.muid}",
            "",
            f"**Hypothesis: {CLASSIFICATION_WORDS[e.classification]}.** {e.headline}",
            "",
            f"Direction: {DIRECTION_WORDS[e.direction]} (OBIS code: {DIRECTION_WORDS[e.obis_direction]}, shape: "
            f"{DIRECTION_WORDS[e.shape_direction]}).",
            "",
            *(f"- {finding}" for finding in e.findings),
            "",
        ]
        rows = [
            (f"`{ev.name}`", num(ev.value, 4), ev.unit, f"`{ev.rule}`" if ev.rule else "", "yes" if ev.met else "no")
            for ev in e.evidence
            if ev.rule
        ]
        lines += ["Classification rules:", "", *table(("evidence", "value", "unit", "rule", "met"), rows, "lrlll")]
    return lines


def section_balance(services: Services, pair: tuple[MeterData, MeterData] | None, tz: str, out_dir: Path) -> list[str]:
    lines = ["## 6. Balance of import and export", ""]
    if pair is None:
        return [*lines, "There is no pair of an import and an export channel to balance.", ""]
    imported, exported = pair
    request = pb.GetBalanceRequest(
        import_channel=imported.range, export_channel=exported.range, interval=common_pb2.INTERVAL_DAY, time_zone=tz
    )
    answer = services.analytics.GetBalance(request, timeout=DEADLINE)
    (out_dir / "balance.png").write_bytes(services.analytics.RenderBalancePlot(request, timeout=DEADLINE).png)
    weekly = services.analytics.GetBalance(
        pb.GetBalanceRequest(
            import_channel=imported.range,
            export_channel=exported.range,
            interval=common_pb2.INTERVAL_WEEK,
            time_zone=tz,
        ),
        timeout=DEADLINE,
    )
    lines += [
        f"Import channel `{imported.muid}`, export channel `{exported.muid}`, treated as one site.",
        "",
        *(f"- {finding}" for finding in answer.findings),
        "",
    ]
    lines += table(
        ("", "kWh"),
        [
            ("imported", exact(answer.imported_total)),
            ("exported", exact(answer.exported_total)),
            ("net import", exact(answer.net_import_total)),
            ("export / import", pct(answer.export_to_import_ratio)),
            ("quarter-hours with export", pct(answer.export_interval_share)),
            ("quarter-hours with import and export", pct(answer.simultaneous_interval_share)),
            ("quarter-hours with export > import", pct(answer.net_export_interval_share)),
        ],
    )
    rows = [
        (local(b.start, tz, "%Y-%m-%d"), b.count, num(b.imported, 3), num(b.exported, 3), num(b.net_import, 3))
        for b in weekly.buckets
    ]
    lines += ["By ISO week (local Monday start):", ""]
    lines += table(("week from", "quarter-hours", "import kWh", "export kWh", "net import kWh"), rows)
    lines += ["![daily balance](balance.png)", ""]
    return lines


def section_limits(meters: Sequence[MeterData], site: Site, tz: str) -> list[str]:
    first = meters[0]
    qh = first.describe[common_pb2.INTERVAL_QUARTER_HOUR]
    start, end = utc(qh.start), utc(qh.end)
    days = (end - start) / pd.Timedelta(days=1)
    weekdays = first.profiles[pb.PROFILE_KIND_DAY_OF_WEEK].groups
    cells = first.profiles[pb.PROFILE_KIND_HOUR_BY_WEEKDAY].groups
    times = sun_times(pd.date_range(start, end, freq="1D", inclusive="left"), site, tz)
    length = times["sunset"] - times["sunrise"]
    months = [f"{g.key} ({g.count})" for g in first.profiles[pb.PROFILE_KIND_MONTH].groups]
    offsets = {utc(qh.start).tz_convert(tz).utcoffset(), (end - pd.Timedelta(minutes=15)).tz_convert(tz).utcoffset()}
    lag_week = 7 * 96
    cell_counts = sorted({g.count for g in cells})
    cell_text = (
        " to ".join(str(c) for c in (cell_counts[0], cell_counts[-1])) if len(cell_counts) > 1 else str(cell_counts[0])
    )
    per_weekday = sorted({num(g.count / 96, 2) for g in weekdays})
    days_per_weekday = min(g.count for g in weekdays) / 96
    noise = []
    for m in meters:
        evidence = {e.name: e.value for e in m.explanation.evidence} if m.explanation else {}
        if "daily_energy_mean" in evidence and "daily_energy_cv" in evidence:
            std = evidence["daily_energy_mean"] * evidence["daily_energy_cv"]
            means = [g.sum / (g.count / 96) for g in m.profiles[pb.PROFILE_KIND_DAY_OF_WEEK].groups]
            error = std / math.sqrt(days_per_weekday)
            noise.append(
                f"`{m.label}` {num(error, 2)} kWh, so seven weekday means without any weekday effect would span about "
                f"{num(RANGE_OF_SEVEN * error, 2)} kWh; the measured span is {num(max(means) - min(means), 2)} kWh"
            )
    lines = [
        "## 7. What one month of data cannot tell",
        "",
        f"- Length: {num(days, 2)} days ({qh.expected} quarter-hours). Each weekday occurs {'/'.join(per_weekday)} "
        f"times, and each of the {len(cells)} hour x weekday cells holds {cell_text} quarter-hours. The standard "
        "error of a weekday's mean daily energy (day-to-day standard deviation / sqrt(days per weekday)) is "
        + "; ".join(noise)
        + ".",
        f"- Season: only {', '.join(months)} (local months touched, with quarter-hours). Day length at {site.name} "
        f"grows from {num(length.iloc[0], 2)} h to {num(length.iloc[-1], 2)} h over the range; generation in other "
        "seasons, heating or cooling loads, and any yearly pattern are not in the data.",
        f"- Autocorrelation: a lag of one week ({lag_week} quarter-hours) has only {qh.expected - lag_week} pairs, "
        f"and the weekly Ljung-Box test spans {num(qh.expected / lag_week, 1)} weeks. A week is also seven days, so a "
        "daily pattern alone makes the weekly lag correlate; a weekly cycle of its own would need many more weeks.",
        "- Trend: an STL trend over a few weeks mixes weather (sunny and overcast spells) with any real change of "
        "behaviour; the data cannot separate them.",
        f"- Time zone: {'no' if len(offsets) == 1 else 'a'} daylight-saving change falls in the range, so days of "
        "92 or 100 quarter-hours do not occur in this data (the code handles them; see the tests).",
        "- Meaning: the meters come without metadata. Appliances behind the spikes, the size of the PV system, "
        "whether both meters belong to one site, and the self-consumption are not observable here; the hypotheses "
        "above are about the shape of the data, not verified facts about the sites.",
        "",
    ]
    return lines


# --- the whole report ----------------------------------------------------------------------------


def render(services: Services, settings: Settings, out_dir: Path, tz: str, generated_at: datetime) -> str:
    site = Site(settings.site_name, settings.site_latitude, settings.site_longitude)
    meters = collect(services, list(settings.upstream_muids), tz, out_dir)
    pair = pick_pair(meters)
    lines = [
        "# Exploring the published meter data",
        "",
        "<!-- Generated by `make report` (python -m analytics_service report); do not edit by hand. -->",
        f"Generated: {generated_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} from the database, through the "
        "query and analytics services.",
        "",
        "Every number and every sentence about the data below is computed by the code "
        "([`analytics_service/`](../../analytics_service/)) from the stored readings; the prose around them only "
        "explains the method. Regenerate with `make report`.",
        "",
        "Contents: 1. The data set; 2. What the OBIS codes mean; 3. Grouping by time interval; 4. Autocorrelation; "
        "5. Hypotheses; 6. Balance; 7. Limits.",
        "",
        "Summary:",
        "",
    ]
    for m in meters:
        assert m.explanation is not None
        d = m.describe[common_pb2.INTERVAL_QUARTER_HOUR]
        lines.append(
            f"- `{m.muid}` (`{m.channel.obis_notation}`, {DIRECTION_WORDS[m.channel.direction]}): {d.readings} "
            f"quarter-hours, {exact(d.total)} kWh, {round(d.zero_share * d.count)} zero values; hypothesis: "
            f"{CLASSIFICATION_WORDS[m.explanation.classification]}."
        )
    lines.append("")
    lines += section_data(meters, settings, tz)
    lines += section_obis(meters)
    lines += section_grouping(meters, tz)
    lines += section_autocorrelation(meters)
    lines += section_hypotheses(meters, site.describe())
    lines += section_balance(services, pair, tz, out_dir)
    lines += section_limits(meters, site, tz)
    return "\n".join(lines).rstrip() + "\n"


def build_report(
    settings: Settings,
    out_dir: Path,
    *,
    query_address: str,
    analytics_address: str,
    time_zone: str | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write README.md and the figures into `out_dir` (stale PNGs removed first); returns the README path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    services = Services(query_address, analytics_address)
    try:
        text = render(
            services, settings, out_dir, time_zone or settings.default_time_zone, generated_at or datetime.now(UTC)
        )
    finally:
        services.close()
    path = out_dir / "README.md"
    path.write_text(text)
    return path


def run(settings: Settings, out_dir: Path, *, use_running: bool = False, time_zone: str | None = None) -> int:
    """`python -m analytics_service report`: with the running services, or a topology of its own."""
    try:
        return _run(settings, out_dir, use_running=use_running, time_zone=time_zone)
    except grpc.RpcError as error:
        print(f"report failed: {error.code().name}: {error.details()}")  # type: ignore[attr-defined]
        return 1


def _run(settings: Settings, out_dir: Path, *, use_running: bool, time_zone: str | None) -> int:
    if use_running:
        path = build_report(
            settings,
            out_dir,
            query_address=settings.query_address,
            analytics_address=settings.analytics_address,
            time_zone=time_zone,
        )
        print(f"report: {path}")
        return 0

    from ingest_service.cli import pull_through_service
    from meterdata.runner import Topology, prepare_database

    database_url = prepare_database(settings)
    topology = Topology.on_free_ports(database_url, settings.data_dir / "logs" / "report")
    try:
        print("services: starting query, ingest and analytics on free ports")
        topology.start(["query", "ingest", "analytics"])
        pull_through_service(settings, topology.address("ingest"))
        path = build_report(
            settings,
            out_dir,
            query_address=topology.address("query"),
            analytics_address=topology.address("analytics"),
            time_zone=time_zone,
        )
    finally:
        topology.stop()
    print(f"report: {path} ({len(list(out_dir.glob('*.png')))} figures)")
    return 0
