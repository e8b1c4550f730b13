"""Analytics of a channel (profile, autocorrelation, summary, explanation, plots) and the import/export
balance: thin translations to AnalyticsService calls, JSON or CSV, errors as problem+json."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from gateway import convert
from gateway.backends import BackendError
from gateway.csvout import csv_response, unit_column
from gateway.deps import Gateway, GatewayDep
from gateway.params import INT32_MAX, End, MuidPath, Obis, Start, Tz, parse_time
from gateway.problems import PROBLEM_JSON, InvalidParameter, problem_response, rpc_problem
from gateway.routes.docs import csv_content, problems
from gateway.schemas import EXPORT_MUID, Problem
from meterdata.timeconv import to_timestamp
from meterdata.v1 import analytics_pb2 as pb
from meterdata.v1 import common_pb2

IMPORT_MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"

# gRPC request fields of the analytics service -> the HTTP parameters that carry them.
PARAMETERS = {
    "channel.muid": "muid",
    "channel.obis": "obis",
    "channel.start": "start",
    "channel.end": "end",
    "import_channel.muid": "import_muid",
    "import_channel.obis": "import_obis",
    "import_channel.start": "start",
    "import_channel.end": "end",
    "export_channel.muid": "export_muid",
    "export_channel.obis": "export_obis",
    "export_channel.start": "start",
    "export_channel.end": "end",
    "time_zone": "tz",
    "top_n": "top",
    "width_px": "width",
    "height_px": "height",
}

PROFILE_KINDS = {
    "hour_of_day": pb.PROFILE_KIND_HOUR_OF_DAY,
    "quarter_hour_of_day": pb.PROFILE_KIND_QUARTER_HOUR_OF_DAY,
    "day_of_week": pb.PROFILE_KIND_DAY_OF_WEEK,
    "hour_by_weekday": pb.PROFILE_KIND_HOUR_BY_WEEKDAY,
    "day": pb.PROFILE_KIND_DAY,
    "week": pb.PROFILE_KIND_WEEK,
    "month": pb.PROFILE_KIND_MONTH,
}
PLOT_KINDS = {
    "timeseries": pb.PLOT_KIND_TIMESERIES,
    "histogram": pb.PLOT_KIND_HISTOGRAM,
    "hour-of-day": pb.PLOT_KIND_HOUR_OF_DAY,
    "weekday": pb.PLOT_KIND_WEEKDAY,
    "heatmap": pb.PLOT_KIND_HEATMAP,
    "acf": pb.PLOT_KIND_ACF,
    "decomposition": pb.PLOT_KIND_DECOMPOSITION,
    "daily": pb.PLOT_KIND_DAILY,
}
CLASSIFICATIONS = {
    pb.CLASSIFICATION_CONSUMPTION: "consumption",
    pb.CLASSIFICATION_PHOTOVOLTAIC_EXPORT: "photovoltaic_export",
    pb.CLASSIFICATION_OTHER_EXPORT: "other_export",
    pb.CLASSIFICATION_OTHER: "other",
}
DIRECTIONS = {**convert.DIRECTIONS, common_pb2.DIRECTION_UNSPECIFIED: None}
STAT_FIELDS = ("count", "sum", "mean", "median", "min", "max", "p10", "p25", "p75", "p90")

# --- parameters ----------------------------------------------------------------------------------

ProfileKind = Annotated[
    Literal["hour_of_day", "quarter_hour_of_day", "day_of_week", "hour_by_weekday", "day", "week", "month"],
    Query(
        description="How the quarter-hour readings are grouped, in local time of `tz`: `hour_of_day` (24 groups), "
        "`quarter_hour_of_day` (96), `day_of_week` (ISO, 1 = Monday), `hour_by_weekday` (the 24 x 7 matrix, key "
        "`<weekday>-<hour>`), `day`, `week` (ISO week) or `month`.",
        examples=["hour_of_day"],
    ),
]
AcfInterval = Annotated[
    Literal["15min", "hour"],
    Query(
        description="Step of the analysed series: `15min` (the readings, default) or `hour` (hourly sums).",
        examples=["15min"],
    ),
]
Nlags = Annotated[
    int | None,
    Query(
        description="Lags to compute, 1 to 5000; at least twice as many observations are needed. Default: two days "
        "(192 quarter-hours or 48 hours).",
        examples=[192],
        ge=1,
        le=INT32_MAX,
    ),
]
LjungBoxLags = Annotated[
    str | None,
    Query(
        description="Comma-separated lags for the Ljung-Box test. Default: one day and one week of steps, where the "
        "series is long enough.",
        examples=["96,672"],
    ),
]
Alpha = Annotated[
    float | None,
    Query(description="Significance level of the confidence band and the tests, default 0.05.", examples=[0.05]),
]
SummaryInterval = Annotated[
    Literal["15min", "hour", "day", "week", "month"],
    Query(
        description="The values described: the quarter-hour readings (`15min`, default) or their sums per local "
        "`hour`, `day`, `week` or `month`.",
        examples=["15min"],
    ),
]
Top = Annotated[
    int | None,
    Query(
        description="How many peak intervals and peak days to list, 1 to 100, default 5.",
        examples=[5],
        ge=1,
        le=INT32_MAX,
    ),
]
BalanceInterval = Annotated[
    Literal["15min", "hour", "day", "week", "month"],
    Query(description="Bucket length of the balance in local time of `tz`, default `day`.", examples=["day"]),
]
Format = Annotated[
    Literal["json", "csv"],
    Query(
        description="`json` (default) or `csv`: the table of the answer as `text/csv` with a header row; value "
        "columns carry the unit in their name (`sum_kWh`).",
        examples=["csv"],
    ),
]
PlotKind = Annotated[
    Literal["timeseries", "histogram", "hour-of-day", "weekday", "heatmap", "acf", "decomposition", "daily"],
    Path(
        description="The figure: `timeseries` (quarter-hour values), `histogram`, `hour-of-day` (profile by "
        "quarter-hour of day with p10-p90 band), `weekday`, `heatmap` (hour x weekday), `acf` (ACF and PACF with "
        "the confidence band), `decomposition` (STL with a daily period) or `daily` (local-day totals).",
        examples=["heatmap"],
    ),
]
Width = Annotated[
    int | None,
    Query(description="Image width in pixels, 300 to 4000, default 1000.", examples=[1000], ge=1, le=INT32_MAX),
]
Height = Annotated[
    int | None,
    Query(description="Image height in pixels, 200 to 3000, default 500.", examples=[500], ge=1, le=INT32_MAX),
]
ImportMuid = Annotated[
    str,
    Query(description="UUID of the meter whose channel imports from the grid (+A).", examples=[IMPORT_MUID]),
]
ExportMuid = Annotated[
    str,
    Query(description="UUID of the meter whose channel exports to the grid (-A).", examples=[EXPORT_MUID]),
]
ImportObis = Annotated[
    str | None,
    Query(
        description="OBIS code of the import channel; may be omitted for a one-channel meter.",
        examples=["0100011D00FF"],
    ),
]
ExportObis = Annotated[
    str | None,
    Query(
        description="OBIS code of the export channel; may be omitted for a one-channel meter.",
        examples=["0100021D00FF"],
    ),
]

# --- response models (the OpenAPI contract) ------------------------------------------------------


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


GROUP_EXAMPLE = {
    "key": "12",
    "hour": 12,
    "weekday": None,
    "minute": None,
    "count": 112,
    "sum": 5.588,
    "mean": 0.0499,
    "median": 0.0405,
    "min": 0.0,
    "max": 0.1733,
    "p10": 0.0071,
    "p25": 0.0131,
    "p75": 0.0749,
    "p90": 0.1301,
}


class ProfileGroup(BaseModel):
    model_config = _example(GROUP_EXAMPLE)
    key: str = Field(
        description="`00`..`23`, `00:15`, `1`..`7`, `1-00` (weekday-hour), `2023-02-01`, `2023-W05`, `2023-02`."
    )
    hour: int | None = Field(description="Hour of day, where the grouping has one.")
    weekday: int | None = Field(description="ISO weekday (1 = Monday), where the grouping has one.")
    minute: int | None = Field(description="Minute of the hour for `quarter_hour_of_day`.")
    count: int = Field(description="Quarter-hour readings in the group.")
    sum: float = Field(description="Energy of the group, kWh.")
    mean: float = Field(description="Mean quarter-hour, kWh.")
    median: float
    min: float
    max: float
    p10: float
    p25: float
    p75: float
    p90: float


class Profile(BaseModel):
    model_config = _example(
        {
            "muid": EXPORT_MUID,
            "obis": "0100021D00FF",
            "unit": "kWh",
            "time_zone": "Europe/Zurich",
            "kind": "hour_of_day",
            "groups": [GROUP_EXAMPLE],
        }
    )
    muid: str
    obis: str
    unit: str
    time_zone: str = Field(description="The zone the groups are cut in.")
    kind: str
    groups: list[ProfileGroup] = Field(
        description="Groups in clock or calendar order; statistics of quarter-hour values."
    )


class Lag(BaseModel):
    model_config = _example(
        {"lag": 96, "acf": 0.4222, "pacf": -0.0121, "acf_significant": True, "pacf_significant": False}
    )
    lag: int
    acf: float
    pacf: float
    acf_significant: bool = Field(description="|acf| beyond `confidence_band`.")
    pacf_significant: bool = Field(description="|pacf| beyond `confidence_band`.")


class LjungBox(BaseModel):
    model_config = _example({"lag": 96, "statistic": 30153.9, "p_value": 0.0})
    lag: int
    statistic: float
    p_value: float


AUTOCORRELATION_EXAMPLE = {
    "muid": EXPORT_MUID,
    "obis": "0100021D00FF",
    "interval": "15min",
    "observations": 2688,
    "filled": 0,
    "alpha": 0.05,
    "confidence_band": 0.0378,
    "named_lags": [1, 4, 48, 96],
    "named_lag_band": 0.0482,
    "significant_lags": [1, 4, 48, 96],
    "strongest_lag": 96,
    "seasonal_period": 96,
    "seasonal_strength": 0.544,
    "seasonal_strength_noise": 0.098,
    "trend_strength": 0.347,
    "ljung_box": [{"lag": 96, "statistic": 30153.9, "p_value": 0.0}],
    "lags": [{"lag": 96, "acf": 0.4222, "pacf": -0.0121, "acf_significant": True, "pacf_significant": False}],
}


class Autocorrelation(BaseModel):
    model_config = _example(AUTOCORRELATION_EXAMPLE)
    muid: str
    obis: str
    interval: Literal["15min", "hour"]
    observations: int = Field(description="Length of the analysed series.")
    filled: int = Field(description="Missing steps filled by linear interpolation first.")
    alpha: float
    confidence_band: float = Field(description="z(1 - alpha/2) / sqrt(n).")
    named_lags: list[int] = Field(
        description="The lags tested by name: one step, one hour, 12 hours, one day, one week."
    )
    named_lag_band: float = Field(description="Bonferroni-widened band the named lags are tested against.")
    significant_lags: list[int] = Field(description="Named lags whose |ACF| is beyond `named_lag_band`.")
    strongest_lag: int = Field(description="The lag >= 2 with the highest ACF local maximum (0: none).")
    seasonal_period: int = Field(description="Steps per day.")
    seasonal_strength: float | None = Field(description="STL daily seasonal strength, 0..1; null if too short.")
    seasonal_strength_noise: float | None = Field(description="The same for the values shuffled: the noise floor.")
    trend_strength: float | None
    ljung_box: list[LjungBox]
    lags: list[Lag]


PEAK_EXAMPLE = {"start": "2023-02-20T16:00:00+01:00", "end": "2023-02-20T16:15:00+01:00", "value": 0.9612}


class Peak(BaseModel):
    model_config = _example(PEAK_EXAMPLE)
    start: str
    end: str
    value: float


SUMMARY_EXAMPLE = {
    "muid": IMPORT_MUID,
    "obis": "0100011D00FF",
    "unit": "kWh",
    "time_zone": "Europe/Zurich",
    "interval": "15min",
    "start": "2023-02-01T01:00:00+01:00",
    "end": "2023-03-01T01:00:00+01:00",
    "expected": 2688,
    "readings": 2688,
    "count": 2688,
    "total": 97.6082,
    "mean": 0.03631,
    "std": 0.07306,
    "min": 0.0114,
    "min_at": "2023-02-12T16:15:00+01:00",
    "max": 0.9612,
    "max_at": "2023-02-20T16:00:00+01:00",
    "quantiles": {"p05": 0.0116, "p25": 0.0117, "p50": 0.0118, "p75": 0.0294, "p95": 0.11886, "p99": 0.45},
    "zero_share": 0.0,
    "baseline": 0.0116,
    "baseline_energy_share": 0.3194,
    "peak_intervals": [PEAK_EXAMPLE],
    "peak_days": [{"start": "2023-02-08T00:00:00+01:00", "end": "2023-02-09T00:00:00+01:00", "value": 4.808}],
}


class Summary(BaseModel):
    model_config = _example(SUMMARY_EXAMPLE)
    muid: str
    obis: str
    unit: str
    time_zone: str
    interval: Literal["15min", "hour", "day", "week", "month"] = Field(description="The values described.")
    start: str = Field(description="Start of the range described.")
    end: str = Field(description="End of the range described, exclusive.")
    expected: int = Field(description="Quarter-hours in the range.")
    readings: int = Field(description="Quarter-hour readings found; `expected - readings` are missing.")
    count: int = Field(description="Values described (readings, or buckets for a coarser interval).")
    total: float
    mean: float
    std: float = Field(description="Sample standard deviation.")
    min: float
    min_at: str = Field(description="Start of the first interval with the minimum.")
    max: float
    max_at: str = Field(description="Start of the first interval with the maximum.")
    quantiles: dict[str, float]
    zero_share: float
    baseline: float = Field(description="The p05 quarter-hour: the load that is nearly always there.")
    baseline_energy_share: float = Field(description="baseline x quarter-hours / total.")
    peak_intervals: list[Peak]
    peak_days: list[Peak] = Field(description="The largest local-day totals.")


EVIDENCE_EXAMPLE = {
    "name": "night_energy_share",
    "value": 0.0001,
    "unit": "share",
    "text": "0.01 % of the energy flows while the sun is below the horizon (1531 night quarter-hours).",
    "rule": "<= 0.02",
    "met": True,
}


class Evidence(BaseModel):
    model_config = _example(EVIDENCE_EXAMPLE)
    name: str
    value: float | None
    unit: str
    text: str = Field(description="The sentence the number supports.")
    rule: str = Field(description="The classification rule tested on the value; empty if none.")
    met: bool


class Explanation(BaseModel):
    model_config = _example(
        {
            "muid": EXPORT_MUID,
            "obis": "0100021D00FF",
            "obis_notation": "1-0:2.29.0*255",
            "obis_name": "Active energy export (-A) per period",
            "direction": "export",
            "obis_direction": "export",
            "shape_direction": "export",
            "classification": "photovoltaic_export",
            "headline": "Photovoltaic export: Active energy export (-A) per period; 99.7 % of the night "
            "quarter-hours are zero, the mean peaks at 12:00 local time (-0.5 h from solar noon) and follows the "
            "sun's elevation (r = 0.66).",
            "findings": ["The last non-zero quarter-hour ends a median of 35 min before sunset (median sunset 17:48)."],
            "evidence": [EVIDENCE_EXAMPLE],
            "time_zone": "Europe/Zurich",
            "site": "Zurich (47.3769 N, 8.5417 E)",
        }
    )
    muid: str
    obis: str
    obis_notation: str
    obis_name: str
    direction: Literal["import", "export"] | None = Field(description="The code's direction, else the shape's.")
    obis_direction: Literal["import", "export"] | None
    shape_direction: Literal["import", "export"] | None
    classification: Literal["consumption", "photovoltaic_export", "other_export", "other"]
    headline: str
    findings: list[str] = Field(description="Sentences with numbers, computed from the data.")
    evidence: list[Evidence]
    time_zone: str
    site: str = Field(description="Location used for sunrise and sunset.")


BUCKET_EXAMPLE = {
    "start": "2023-02-21T00:00:00+01:00",
    "end": "2023-02-22T00:00:00+01:00",
    "imported": 4.4677,
    "exported": 4.3693,
    "net_import": 0.0985,
    "count": 96,
}


class BalanceBucket(BaseModel):
    model_config = _example(BUCKET_EXAMPLE)
    start: str
    end: str
    imported: float
    exported: float
    net_import: float = Field(description="imported - exported; negative when more was fed in than drawn.")
    count: int = Field(description="Quarter-hours present in both channels.")


class Balance(BaseModel):
    model_config = _example(
        {
            "import_muid": IMPORT_MUID,
            "export_muid": EXPORT_MUID,
            "unit": "kWh",
            "time_zone": "Europe/Zurich",
            "interval": "day",
            "quarter_hours": 2688,
            "unmatched": 0,
            "imported_total": 97.6082,
            "exported_total": 36.19725,
            "net_import_total": 61.41095,
            "export_to_import_ratio": 0.3708,
            "export_interval_share": 0.375,
            "simultaneous_interval_share": 0.375,
            "net_export_interval_share": 0.2,
            "mean_import_with_export": 0.0351,
            "mean_import_without_export": 0.0316,
            "findings": ["Export was non-zero in 37.5 % of the quarter-hours; ..."],
            "buckets": [BUCKET_EXAMPLE],
        }
    )
    import_muid: str
    export_muid: str
    unit: str
    time_zone: str
    interval: Literal["15min", "hour", "day", "week", "month"]
    quarter_hours: int = Field(description="Quarter-hours present in both channels.")
    unmatched: int = Field(description="Quarter-hours present in only one channel (left out).")
    imported_total: float
    exported_total: float
    net_import_total: float
    export_to_import_ratio: float | None
    export_interval_share: float = Field(description="Share of quarter-hours with export > 0.")
    simultaneous_interval_share: float = Field(description="Share with import and export both > 0.")
    net_export_interval_share: float = Field(description="Share with export > import.")
    mean_import_with_export: float | None
    mean_import_without_export: float | None = Field(
        description="Mean import without export, at the local hours in which export occurs."
    )
    findings: list[str] = Field(description="Sentences with numbers, including what grid-side meters cannot tell.")
    buckets: list[BalanceBucket]


PNG_CONTENT = {"image/png": {"schema": {"type": "string", "format": "binary"}, "example": "(PNG image bytes)"}}
CONFLICT = {
    409: {
        "model": Problem,
        "description": "Too little data for the request (FAILED_PRECONDITION); `detail` says how much is needed.",
        "content": {
            PROBLEM_JSON: {
                "example": {
                    "type": "about:blank",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "192 lags need at least 386 observations (PACF needs more than twice the lags); the "
                    "series has 96",
                    "instance": f"/api/v1/meters/{IMPORT_MUID}/autocorrelation",
                    "code": "FAILED_PRECONDITION",
                    "backend": "analytics",
                }
            }
        },
    }
}
ERRORS = {**problems(400, 404), **CONFLICT, **problems(503, 504)}

# --- helpers -------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined statistics are null."""
    return value if math.isfinite(value) else None


def _time(message: Any, field: str, zone: ZoneInfo) -> str | None:
    return convert.time_field(message, field, zone)


def _channel(
    muid: str, obis: str | None, start: str | None, end: str | None, zone: ZoneInfo
) -> common_pb2.ChannelRange:
    message = common_pb2.ChannelRange(muid=muid, obis=obis or "")
    for field, value in (("start", parse_time(start, zone, "start")), ("end", parse_time(end, zone, "end"))):
        if value is not None:
            getattr(message, field).CopyFrom(to_timestamp(value))
    return message


def _renamed_problem(exc: BackendError, path: str) -> JSONResponse:
    """The gateway's problem for a failed call, with the analytics service's field names turned into ours."""
    response = rpc_problem(exc.error, exc.backend, path, exc.not_found_parameter)
    body = json.loads(bytes(response.body))
    for param in body.get("invalid_params") or []:
        param["name"] = PARAMETERS.get(param["name"], param["name"])
    field, _, rest = body["detail"].partition(": ")
    if field in PARAMETERS and rest:
        body["detail"] = f"{PARAMETERS[field]}: {rest}"
    status, detail, instance = body.pop("status"), body.pop("detail"), body.pop("instance")
    params = body.pop("invalid_params", None)
    extra = {k: v for k, v in body.items() if k not in ("type", "title")}
    return problem_response(status, detail, instance, params, **extra)


async def _call(gateway: Gateway, method: str, message: Any, parameter: str | None = "muid") -> Any:
    return await gateway.backends.call("analytics", method, message, parameter)


class AnalyticsRoute(APIRoute):
    """Answers a failed analytics call itself, so that its field names come out as this router's parameters."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except BackendError as exc:
                return _renamed_problem(exc, request.url.path)

        return handle


router = APIRouter(prefix="/api/v1", tags=["analytics"], route_class=AnalyticsRoute)


def _rows(rows: list[list[Any]]) -> AsyncIterator[list[list[Any]]]:
    async def one_batch() -> AsyncIterator[list[list[Any]]]:
        yield rows

    return one_batch()


def _lag_list(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InvalidParameter("ljung_box_lags", f"comma-separated whole numbers expected, got {text!r}") from None


# --- routes --------------------------------------------------------------------------------------


@router.get(
    "/meters/{muid}/profile",
    summary="Profile: readings grouped by a calendar key",
    description="The quarter-hour readings of one channel grouped in local time (`kind`), each group with count, "
    "sum, mean, median, min, max and the p10/p25/p75/p90 quantiles. `format=csv` returns the groups as a table.",
    response_model=Profile,
    responses={
        200: {
            "content": csv_content(
                "key,hour,weekday,minute,count,sum_kWh,mean_kWh,median_kWh,min_kWh,max_kWh,p10_kWh,p25_kWh,"
                "p75_kWh,p90_kWh\r\n12,12,,,112,5.588,0.0499,0.0405,0.0,0.1733,0.0071,0.0131,0.0749,0.1301\r\n"
            )
        },
        **ERRORS,
    },
)
async def get_profile(
    gateway: GatewayDep,
    muid: MuidPath,
    kind: ProfileKind = "hour_of_day",
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    message = pb.GetProfileRequest(
        channel=_channel(muid, obis, start, end, zone), kind=PROFILE_KINDS[kind], time_zone=zone.key
    )
    answer = await _call(gateway, "GetProfile", message)
    groups = [
        {
            "key": g.key,
            "hour": g.hour if g.hour >= 0 else None,
            "weekday": g.weekday or None,
            "minute": g.minute if g.minute >= 0 else None,
            **{name: getattr(g, name) for name in STAT_FIELDS},
        }
        for g in answer.groups
    ]
    if format == "csv":
        header = ["key", "hour", "weekday", "minute", "count"] + [unit_column(n, answer.unit) for n in STAT_FIELDS[1:]]
        rows = [[g["key"], g["hour"], g["weekday"], g["minute"], *(g[n] for n in STAT_FIELDS)] for g in groups]
        return csv_response(header, _rows(rows), f"{answer.muid}_{answer.obis}_profile_{kind}.csv")
    return JSONResponse(
        {
            "muid": answer.muid,
            "obis": answer.obis,
            "unit": answer.unit,
            "time_zone": answer.time_zone,
            "kind": kind,
            "groups": groups,
        }
    )


@router.get(
    "/meters/{muid}/autocorrelation",
    summary="Autocorrelation: ACF, PACF, Ljung-Box, daily seasonality",
    description="ACF and PACF (statsmodels) of the quarter-hour or hourly series up to `nlags`, with the "
    "confidence band, the Ljung-Box test at chosen lags, the named lags (one step, one hour, 12 hours, one day, "
    "one week) found significant, and the STL strength of the daily seasonality against its noise floor. Too "
    "little data answers 409 saying how much is needed. `format=csv` returns the lag table.",
    response_model=Autocorrelation,
    responses={
        200: {
            "content": csv_content(
                "lag,acf,pacf,acf_significant,pacf_significant\r\n1,0.9902,0.9902,true,true\r\n"
                "2,0.9631,-0.7751,true,true\r\n"
            )
        },
        **ERRORS,
    },
)
async def get_autocorrelation(
    gateway: GatewayDep,
    muid: MuidPath,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    interval: AcfInterval = "15min",
    nlags: Nlags = None,
    ljung_box_lags: LjungBoxLags = None,
    alpha: Alpha = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    if nlags is not None and nlags <= 0:
        raise InvalidParameter("nlags", f"must be between 1 and 5000, got {nlags}")
    if alpha is not None and not 0 < alpha < 1:
        raise InvalidParameter("alpha", f"must be between 0 and 1 (exclusive), got {alpha}")
    message = pb.GetAutocorrelationRequest(
        channel=_channel(muid, obis, start, end, zone),
        interval=convert.INTERVALS[interval],
        nlags=nlags or 0,
        ljung_box_lags=_lag_list(ljung_box_lags),
        alpha=alpha or 0.0,
    )
    answer = await _call(gateway, "GetAutocorrelation", message)
    lags = [
        {
            "lag": v.lag,
            "acf": v.acf,
            "pacf": v.pacf,
            "acf_significant": v.acf_significant,
            "pacf_significant": v.pacf_significant,
        }
        for v in answer.lags
    ]
    if format == "csv":
        rows = [
            [v["lag"], v["acf"], v["pacf"], str(v["acf_significant"]).lower(), str(v["pacf_significant"]).lower()]
            for v in lags
        ]
        return csv_response(
            list(lags[0]) if lags else ["lag"], _rows(rows), f"{answer.muid}_{answer.obis}_acf_{interval}.csv"
        )
    return JSONResponse(
        {
            "muid": answer.muid,
            "obis": answer.obis,
            "interval": interval,
            "observations": answer.observations,
            "filled": answer.filled,
            "alpha": answer.alpha,
            "confidence_band": answer.confidence_band,
            "named_lags": list(answer.named_lags),
            "named_lag_band": answer.named_lag_band,
            "significant_lags": list(answer.significant_lags),
            "strongest_lag": answer.strongest_lag,
            "seasonal_period": answer.seasonal_period,
            "seasonal_strength": _finite(answer.seasonal_strength),
            "seasonal_strength_noise": _finite(answer.seasonal_strength_noise),
            "trend_strength": _finite(answer.trend_strength),
            "ljung_box": [{"lag": r.lag, "statistic": r.statistic, "p_value": r.p_value} for r in answer.ljung_box],
            "lags": lags,
        }
    )


@router.get(
    "/meters/{muid}/summary",
    summary="Summary: totals, spread, baseline and peaks",
    description="Count, total, mean, standard deviation, minimum and maximum with their times, quantiles, share "
    "of zero values, the baseline (p05 quarter-hour) with the share of energy it explains, and the top intervals "
    "and local days, of the quarter-hour readings or their sums per `interval`.",
    response_model=Summary,
    responses=ERRORS,
)
async def get_summary(
    gateway: GatewayDep,
    muid: MuidPath,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    interval: SummaryInterval = "15min",
    top: Top = None,
    tz: Tz = None,
) -> Response:
    zone = gateway.zone(tz)
    if top is not None and top <= 0:
        raise InvalidParameter("top", f"must be between 1 and 100, got {top}")
    message = pb.DescribeRequest(
        channel=_channel(muid, obis, start, end, zone),
        time_zone=zone.key,
        top_n=top or 0,
        interval=convert.INTERVALS[interval],
    )
    d = await _call(gateway, "Describe", message)

    def peaks(items: Any) -> list[dict[str, Any]]:
        return [{"start": _time(p, "start", zone), "end": _time(p, "end", zone), "value": p.value} for p in items]

    return JSONResponse(
        {
            "muid": d.muid,
            "obis": d.obis,
            "unit": d.unit,
            "time_zone": d.time_zone,
            "interval": interval,
            "start": _time(d, "start", zone),
            "end": _time(d, "end", zone),
            "expected": d.expected,
            "readings": d.readings,
            "count": d.count,
            "total": d.total,
            "mean": d.mean,
            "std": d.std,
            "min": d.min,
            "min_at": _time(d, "min_at", zone),
            "max": d.max,
            "max_at": _time(d, "max_at", zone),
            "quantiles": dict(sorted(d.quantiles.items())),
            "zero_share": d.zero_share,
            "baseline": d.baseline,
            "baseline_energy_share": d.baseline_energy_share,
            "peak_intervals": peaks(d.peak_intervals),
            "peak_days": peaks(d.peak_days),
        }
    )


@router.get(
    "/meters/{muid}/explain",
    summary="Explain: what the channel measures, with the evidence",
    description="A classification (consumption, photovoltaic export, other) with the direction from the OBIS code "
    "and, independently, from the shape (night share, correlation with the sun's elevation, the midday peak "
    "against solar noon, base load, spikes, weekday against weekend), each number with its sentence and the rule "
    "it is tested against.",
    response_model=Explanation,
    responses=ERRORS,
)
async def explain_meter(
    gateway: GatewayDep,
    muid: MuidPath,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    tz: Tz = None,
) -> Response:
    zone = gateway.zone(tz)
    message = pb.ExplainMeterRequest(channel=_channel(muid, obis, start, end, zone), time_zone=zone.key)
    e = await _call(gateway, "ExplainMeter", message)
    return JSONResponse(
        {
            "muid": e.muid,
            "obis": e.obis,
            "obis_notation": e.obis_notation,
            "obis_name": e.obis_name,
            "direction": DIRECTIONS[e.direction],
            "obis_direction": DIRECTIONS[e.obis_direction],
            "shape_direction": DIRECTIONS[e.shape_direction],
            "classification": CLASSIFICATIONS[e.classification],
            "headline": e.headline,
            "findings": list(e.findings),
            "evidence": [
                {
                    "name": v.name,
                    "value": _finite(v.value),
                    "unit": v.unit,
                    "text": v.text,
                    "rule": v.rule,
                    "met": v.met,
                }
                for v in e.evidence
            ],
            "time_zone": e.time_zone,
            "site": e.site,
        }
    )


@dataclass(frozen=True)
class BalanceQuery:
    """The parameters the balance and its figure share, parsed once into the backend request."""

    message: pb.GetBalanceRequest
    zone: ZoneInfo
    interval: str


async def balance_query(
    gateway: GatewayDep,
    import_muid: ImportMuid,
    export_muid: ExportMuid,
    import_obis: ImportObis = None,
    export_obis: ExportObis = None,
    start: Start = None,
    end: End = None,
    interval: BalanceInterval = "day",
    tz: Tz = None,
) -> BalanceQuery:
    zone = gateway.zone(tz)
    message = pb.GetBalanceRequest(
        import_channel=_channel(import_muid, import_obis, start, end, zone),
        export_channel=_channel(export_muid, export_obis, start, end, zone),
        interval=convert.INTERVALS[interval],
        time_zone=zone.key,
    )
    return BalanceQuery(message, zone, interval)


BalanceQueryDep = Annotated[BalanceQuery, Depends(balance_query)]


@router.get(
    "/balance",
    summary="Balance of an import and an export channel",
    description="Imported and exported energy per local bucket and in total, the net import, the share of "
    "quarter-hours with export, with both flows and with export above import, and what grid-side meters cannot "
    "tell about self-consumption. `format=csv` returns the buckets.",
    response_model=Balance,
    responses={
        200: {
            "content": csv_content(
                "start,end,imported_kWh,exported_kWh,net_import_kWh,count\r\n"
                "2023-02-21T00:00:00+01:00,2023-02-22T00:00:00+01:00,4.4677,4.36925,0.09845,96\r\n"
            )
        },
        **ERRORS,
    },
)
async def get_balance(gateway: GatewayDep, query: BalanceQueryDep, format: Format = "json") -> Response:
    zone, interval = query.zone, query.interval
    b = await _call(gateway, "GetBalance", query.message, None)
    buckets = [
        {
            "start": _time(x, "start", zone),
            "end": _time(x, "end", zone),
            "imported": x.imported,
            "exported": x.exported,
            "net_import": x.net_import,
            "count": x.count,
        }
        for x in b.buckets
    ]
    if format == "csv":
        header = ["start", "end", *(unit_column(n, b.unit) for n in ("imported", "exported", "net_import")), "count"]
        rows = [list(x.values()) for x in buckets]
        return csv_response(header, _rows(rows), f"balance_{b.import_muid}_{b.export_muid}_{interval}.csv")
    return JSONResponse(
        {
            "import_muid": b.import_muid,
            "export_muid": b.export_muid,
            "unit": b.unit,
            "time_zone": b.time_zone,
            "interval": interval,
            "quarter_hours": b.quarter_hours,
            "unmatched": b.unmatched,
            "imported_total": b.imported_total,
            "exported_total": b.exported_total,
            "net_import_total": b.net_import_total,
            "export_to_import_ratio": _finite(b.export_to_import_ratio),
            "export_interval_share": b.export_interval_share,
            "simultaneous_interval_share": b.simultaneous_interval_share,
            "net_export_interval_share": b.net_export_interval_share,
            "mean_import_with_export": _finite(b.mean_import_with_export),
            "mean_import_without_export": _finite(b.mean_import_without_export),
            "findings": list(b.findings),
            "buckets": buckets,
        }
    )


@router.get(
    "/balance/plot.png",
    summary="Balance figure",
    description="Imported (up) and exported (down) energy per bucket with the net import as a line, as PNG.",
    response_class=Response,
    responses={200: {"description": "A PNG image.", "content": PNG_CONTENT}, **ERRORS},
)
async def get_balance_plot(gateway: GatewayDep, query: BalanceQueryDep) -> Response:
    plot = await _call(gateway, "RenderBalancePlot", query.message, None)
    return Response(plot.png, media_type="image/png")


@router.get(
    "/meters/{muid}/plots/{kind}.png",
    summary="Figure of a channel",
    description="A PNG drawn with matplotlib from the same numbers the other analytics routes return.",
    response_class=Response,
    responses={200: {"description": "A PNG image.", "content": PNG_CONTENT}, **ERRORS},
)
async def get_plot(
    gateway: GatewayDep,
    muid: MuidPath,
    kind: PlotKind,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    width: Width = None,
    height: Height = None,
    interval: AcfInterval = "15min",
    nlags: Nlags = None,
    tz: Tz = None,
) -> Response:
    zone = gateway.zone(tz)
    message = pb.RenderPlotRequest(
        channel=_channel(muid, obis, start, end, zone),
        kind=PLOT_KINDS[kind],
        time_zone=zone.key,
        width_px=width or 0,
        height_px=height or 0,
        interval=convert.INTERVALS[interval],
        nlags=nlags or 0,
    )
    plot = await _call(gateway, "RenderPlot", message)
    return Response(plot.png, media_type="image/png", headers={"Cache-Control": "no-cache"})
