"""Meters, their raw readings and their aggregated series: thin translations to QueryService calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from gateway import convert
from gateway.csvout import csv_response, paged_rows, unit_column
from gateway.deps import GatewayDep
from gateway.params import INT32_MAX, End, Format, MuidPath, Obis, PageToken, Start, Tz, parse_time
from gateway.routes.docs import csv_content, problems
from gateway.schemas import MeterDetail, MeterList, ReadingPage, Series
from meterdata.timeconv import to_timestamp
from meterdata.v1 import query_pb2

router = APIRouter(prefix="/api/v1", tags=["meters"])

CSV_PAGE_SIZE = 10_000  # backend page size while streaming a CSV body

MetersLimit = Annotated[
    int | None,
    Query(description="Meters per page: default 100, at most 1000.", examples=[100], ge=1, le=INT32_MAX),
]
ReadingsLimit = Annotated[
    int | None,
    Query(
        description="Readings per page: default 1000, at most 10,000 (the server's `MAX_PAGE_SIZE`). "
        "Ignored with `format=csv`, which streams the whole range.",
        examples=[96],
        ge=1,
        le=INT32_MAX,
    ),
]
Order = Annotated[
    Literal["asc", "desc"],
    Query(description="`asc` (oldest first, default) or `desc` (newest first).", examples=["desc"]),
]
IntervalParam = Annotated[
    Literal["15min", "hour", "day", "week", "month"],
    Query(
        description="Bucket length, in local time of `tz`: `15min`, `hour` (default), `day` (local midnight to "
        "local midnight, 23 or 25 hours on DST days), `week` (starting Monday) or `month`.",
        examples=["day"],
    ),
]
AggParam = Annotated[
    Literal["sum", "mean", "min", "max", "count"],
    Query(
        description="How the quarter-hour readings in a bucket are combined: `sum` (default; kWh per bucket), "
        "`mean`, `min`, `max` (kWh per quarter-hour) or `count` (number of readings).",
        examples=["sum"],
    ),
]


def _set_times(message: Any, **times: Any) -> None:
    for field, value in times.items():
        if value is not None:
            getattr(message, field).CopyFrom(to_timestamp(value))


@router.get(
    "/meters",
    summary="List meters",
    description="Every meter with its channels (OBIS code, name, direction, unit), first and last reading and "
    "reading count, ordered by `muid`, in pages. With `format=csv`: every meter, one row per channel.",
    response_model=MeterList,
    responses={
        200: {
            "content": csv_content(
                "muid,tenant,obis,obis_notation,name,direction,unit,first_reading,last_reading,reading_count\r\n"
                "95ce3367-cbce-4a4d-bbe3-da082831d7bd,default,0100011D00FF,1-0:1.29.0*255,"
                "Active energy import (+A) per period,import,kWh,2023-02-01T01:00:00+01:00,"
                "2023-03-01T00:45:00+01:00,2688\r\n"
            )
        },
        **problems(400, 503, 504),
    },
)
async def list_meters(
    gateway: GatewayDep,
    limit: MetersLimit = None,
    page_token: PageToken = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    request = query_pb2.ListMetersRequest(page_size=limit or 0, page_token=page_token or "")
    if format == "csv":
        request.page_size = 1000
    first = await gateway.backends.call("query", "ListMeters", request)
    if format == "json":
        return JSONResponse(
            {
                "time_zone": zone.key,
                "meters": [convert.meter_json(m, zone) for m in first.meters],
                "next_page_token": first.next_page_token or None,
            }
        )

    async def next_page(token: str) -> Any:
        request.page_token = token
        return await gateway.backends.call("query", "ListMeters", request)

    def to_rows(page: Any) -> list[list[Any]]:
        return [row for meter in page.meters for row in convert.meter_csv_rows(meter, zone)]

    return csv_response(convert.METER_CSV_HEADER, paged_rows(first, next_page, to_rows), "meters.csv")


@router.get(
    "/meters/{muid}",
    summary="Get a meter",
    description="One meter with its channels, first and last reading and reading count.",
    response_model=MeterDetail,
    responses=problems(400, 404, 503, 504),
)
async def get_meter(gateway: GatewayDep, muid: MuidPath, tz: Tz = None) -> Response:
    zone = gateway.zone(tz)
    meter = await gateway.backends.call("query", "GetMeter", query_pb2.GetMeterRequest(muid=muid), "muid")
    return JSONResponse({**convert.meter_json(meter, zone), "time_zone": zone.key})


@router.get(
    "/meters/{muid}/readings",
    summary="Raw quarter-hour readings",
    description="The readings of one channel in `[start, end)`, one per quarter-hour (`ts` is the start of the "
    "period, `value` the energy in it), in pages of `limit` ordered by time. Follow `next_page_token` until it "
    "is null to get every reading exactly once. With `format=csv`: the whole range in one streamed body.",
    response_model=ReadingPage,
    responses={
        200: {
            "content": csv_content(
                "ts,value_kWh,quality\r\n"
                "2023-02-01T01:00:00+01:00,0.0195,measured\r\n"
                "2023-02-01T01:15:00+01:00,0.0184,measured\r\n"
            )
        },
        **problems(400, 404, 503, 504),
    },
)
async def list_readings(
    gateway: GatewayDep,
    muid: MuidPath,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    order: Order = "asc",
    limit: ReadingsLimit = None,
    page_token: PageToken = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    request = query_pb2.ListReadingsRequest(
        muid=muid,
        obis=obis or "",
        order=convert.ORDERS[order],
        page_size=CSV_PAGE_SIZE if format == "csv" else limit or 0,
        page_token="" if format == "csv" else page_token or "",
    )
    _set_times(request, start=parse_time(start, zone, "start"), end=parse_time(end, zone, "end"))
    first = await gateway.backends.call("query", "ListReadings", request, "muid")
    obis_code = first.readings[0].obis if first.readings else (obis or "")
    if format == "json":
        return JSONResponse(
            {
                "muid": muid,
                "obis": obis_code,
                "unit": first.unit,
                "time_zone": zone.key,
                "order": order,
                "readings": [convert.reading_json(r, zone) for r in first.readings],
                "next_page_token": first.next_page_token or None,
            }
        )

    async def next_page(token: str) -> Any:
        request.page_token = token
        return await gateway.backends.call("query", "ListReadings", request, "muid")

    def to_rows(page: Any) -> list[list[Any]]:
        readings = (convert.reading_json(reading, zone) for reading in page.readings)
        return [[item["ts"], item["value"], item["quality"]] for item in readings]

    header = ["ts", unit_column("value", first.unit), "quality"]
    return csv_response(header, paged_rows(first, next_page, to_rows), f"{muid}_{obis_code or 'readings'}_readings.csv")


@router.get(
    "/meters/{muid}/series",
    summary="Aggregated series in local time",
    description="The readings of one channel combined per `interval` in the time zone `tz`. Every bucket has "
    "`start` and `end` (local, with offset), `value`, `count` (readings found) and `expected` (quarter-hours "
    "the bucket spans: 92 or 100 on DST days), so gaps stay visible; empty buckets are present with `count` 0 "
    "and `value` null. Without `start`/`end` the series covers the meter's data in whole buckets.",
    response_model=Series,
    responses={
        200: {
            "content": csv_content(
                "start,end,value_kWh,count,expected\r\n"
                "2023-02-01T00:00:00+01:00,2023-02-02T00:00:00+01:00,1.8299,92,96\r\n"
                "2023-02-02T00:00:00+01:00,2023-02-03T00:00:00+01:00,4.0253,96,96\r\n"
            )
        },
        **problems(400, 404, 503, 504),
    },
)
async def get_series(
    gateway: GatewayDep,
    muid: MuidPath,
    obis: Obis = None,
    start: Start = None,
    end: End = None,
    interval: IntervalParam = "hour",
    agg: AggParam = "sum",
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    request = query_pb2.GetSeriesRequest(
        muid=muid,
        obis=obis or "",
        interval=convert.INTERVALS[interval],
        aggregation=convert.AGGREGATIONS[agg],
        time_zone=zone.key,
    )
    _set_times(request, start=parse_time(start, zone, "start"), end=parse_time(end, zone, "end"))
    series = await gateway.backends.call("query", "GetSeries", request, "muid")
    return series_response(series, zone, format, f"{muid}_{series.obis}_{interval}_{agg}.csv")


def series_response(series: Any, zone: Any, format: str, filename: str) -> Response:
    body = convert.series_json(series, zone)
    if format == "json":
        return JSONResponse(body)

    async def rows() -> AsyncIterator[list[list[Any]]]:
        yield [[b["start"], b["end"], b["value"], b["count"], b["expected"]] for b in body["buckets"]]

    header = ["start", "end", unit_column("value", series.unit), "count", "expected"]
    return csv_response(header, rows(), filename)


FleetObis = Annotated[
    str,
    Query(
        description="The OBIS code to total, hex (`0100011D00FF`) or notation (`1-0:1.29.0*255`).",
        examples=["0100011D00FF"],
    ),
]
FleetInterval = Annotated[
    Literal["hour", "day", "week", "month"],
    Query(
        description="Bucket length in local time of `tz`: `hour`, `day` (default), `week` or `month`.", examples=["day"]
    ),
]
FleetAgg = Annotated[
    Literal["sum", "mean", "count"],
    Query(
        description="`sum` (default; kWh of all meters per bucket), `mean` (kWh per quarter-hour reading) or `count`.",
        examples=["sum"],
    ),
]


@router.get(
    "/fleet/series",
    summary="One channel totalled over all meters",
    description="The sum over every meter of one OBIS channel per `interval` in local time, served from the "
    "hourly fleet rollup the ingest service keeps exact, so it costs the same for ten meters or ten thousand. "
    "Buckets carry `count` (readings of all meters) and `expected` (quarter-hours per meter). `start`/`end` "
    "must fall on whole hours; default: all hours with data.",
    response_model=Series,
    responses={
        200: {
            "content": csv_content(
                "start,end,value_kWh,count,expected\r\n2023-02-02T00:00:00+01:00,2023-02-03T00:00:00+01:00,5.8128,192,96\r\n"
            )
        },
        **problems(400, 503, 504),
    },
)
async def get_fleet_series(
    gateway: GatewayDep,
    obis: FleetObis,
    start: Start = None,
    end: End = None,
    interval: FleetInterval = "day",
    agg: FleetAgg = "sum",
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    request = query_pb2.GetFleetSeriesRequest(
        obis=obis, interval=convert.INTERVALS[interval], aggregation=convert.AGGREGATIONS[agg], time_zone=zone.key
    )
    _set_times(request, start=parse_time(start, zone, "start"), end=parse_time(end, zone, "end"))
    series = await gateway.backends.call("query", "GetFleetSeries", request, "obis")
    return series_response(series, zone, format, f"fleet_{series.obis}_{interval}_{agg}.csv")
