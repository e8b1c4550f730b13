"""Balance of an import and an export channel: net import per bucket and what it does (not) say.

Grid-side meters see only what crosses the connection point. Energy generated and used on site never
reaches them, so self-consumption, total generation and total consumption are not measured; the
findings state the lower bounds the data does give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analytics_service.fmt import local_time, pct
from analytics_service.timeseries import aggregate, local_naive

INTERVAL_WORDS = {"quarter_hour": "quarter-hour", "hour": "hour", "day": "day", "week": "week", "month": "month"}


@dataclass(frozen=True)
class BalanceResult:
    interval: str
    quarter_hours: int
    unmatched: int
    imported_total: float
    exported_total: float
    net_import_total: float
    export_to_import_ratio: float
    export_interval_share: float
    simultaneous_interval_share: float
    net_export_interval_share: float
    mean_import_with_export: float
    mean_import_without_export: float
    min_import_with_export: float  # the lowest import in a quarter-hour with export
    min_import: float  # the lowest import of all quarter-hours
    buckets: pd.DataFrame  # start, end, imported, exported, net_import, count
    findings: list[str] = field(default_factory=list)


def balance(imported: pd.Series, exported: pd.Series, interval: str, tz: str) -> BalanceResult:
    """Both series on their common quarter-hours (the others are counted as unmatched and left out)."""
    joined = pd.concat({"imported": imported, "exported": exported}, axis=1, join="inner").sort_index()
    unmatched = len(imported) + len(exported) - 2 * len(joined)
    imp, exp = joined["imported"], joined["exported"]

    starts = aggregate(imp, interval, tz)
    buckets = starts[["start", "end", "count"]].assign(
        imported=starts["value"], exported=aggregate(exp, interval, tz)["value"].to_numpy()
    )
    buckets["net_import"] = buckets["imported"] - buckets["exported"]

    imported_total, exported_total = float(imp.sum()), float(exp.sum())
    exporting = exp > 0
    hours = pd.Series(local_naive(joined.index, tz).hour, index=joined.index)
    export_hours = sorted(set(hours[exporting]))
    in_export_hours = hours.isin(export_hours)
    with_export = float(imp[exporting].mean()) if exporting.any() else float("nan")
    without = imp[in_export_hours & ~exporting]
    without_export = float(without.mean()) if len(without) else float("nan")

    result = BalanceResult(
        interval=interval,
        quarter_hours=len(joined),
        unmatched=unmatched,
        imported_total=imported_total,
        exported_total=exported_total,
        net_import_total=imported_total - exported_total,
        export_to_import_ratio=exported_total / imported_total if imported_total > 0 else float("nan"),
        export_interval_share=float(exporting.mean()) if len(joined) else 0.0,
        simultaneous_interval_share=float(((imp > 0) & exporting).mean()) if len(joined) else 0.0,
        net_export_interval_share=float((exp > imp).mean()) if len(joined) else 0.0,
        mean_import_with_export=with_export,
        mean_import_without_export=without_export,
        min_import_with_export=float(imp[exporting].min()) if exporting.any() else float("nan"),
        min_import=float(imp.min()) if len(imp) else float("nan"),
        buckets=buckets,
    )
    result.findings.extend(_findings(result, joined, tz, export_hours))
    return result


def _findings(result: BalanceResult, joined: pd.DataFrame, tz: str, export_hours: list[int]) -> list[str]:
    if joined.empty:
        return ["The two channels have no quarter-hour in common: there is nothing to balance."]
    word = INTERVAL_WORDS[result.interval]
    first, last = joined.index[0], joined.index[-1]
    findings = [
        f"Over {result.quarter_hours} common quarter-hours ({local_time(first, tz)} to "
        f"{local_time(last + pd.Timedelta(minutes=15), tz)} local time) {result.imported_total:.5f} kWh were imported "
        f"and {result.exported_total:.5f} kWh exported: a net import of {result.net_import_total:.5f} kWh; the export "
        f"equals {pct(result.export_to_import_ratio)} of the import.",
        f"Export was non-zero in {pct(result.export_interval_share)} of the quarter-hours; import and export were "
        f"both non-zero in {pct(result.simultaneous_interval_share)}, and export exceeded import in "
        f"{pct(result.net_export_interval_share)}.",
    ]
    if result.unmatched:
        findings.append(f"{result.unmatched} quarter-hours are present in only one channel and were left out.")
    net_export = result.buckets[result.buckets["net_import"] < 0]
    findings.append(
        f"Net import was negative (the site fed in more than it drew) in {len(net_export)} of "
        f"{len(result.buckets)} {word} buckets."
    )
    if export_hours:
        findings.append(
            f"In the local hours in which export ever occurs ({export_hours[0]:02d}:00 to {export_hours[-1] + 1:02d}:00),"
            f" import averaged {result.mean_import_with_export:.4f} kWh per quarter-hour when there was export and "
            f"{result.mean_import_without_export:.4f} kWh when there was none."
        )
    if export_hours and result.min_import_with_export > 0:
        findings.append(
            f"Import was non-zero in every quarter-hour with export: there its lowest value was "
            f"{result.min_import_with_export:.4f} kWh ({result.min_import_with_export * 4000:.0f} W average), against "
            f"{result.min_import:.4f} kWh over all quarter-hours. Were both channels the two registers of one netting "
            "meter, export (generation above the site's load) would push the import of the same quarter-hour toward "
            "zero; so either the registers are not netted against each other or the channels belong to different "
            "connection points, which these data cannot decide."
        )
    if result.simultaneous_interval_share > 0:
        findings.append(
            "A quarter-hour with both import and export means that the flow changed direction within those 15 minutes "
            "(or that the registers are not netted across phases); quarter-hour energies cannot tell which."
        )
    findings.append(
        "What grid-side meters cannot tell: they measure only the energy that crosses the connection point. "
        "Energy generated and used on site (self-consumption) never reaches them, so total generation and total "
        "consumption are unknown (consumption = import + generation - export). The data gives lower bounds only: "
        f"generation >= {result.exported_total:.2f} kWh exported, consumption >= {result.imported_total:.2f} kWh "
        "imported. That both channels belong to the same connection point is an assumption the data cannot confirm."
    )
    return findings
