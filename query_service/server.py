"""The QueryService gRPC servicer: parse the request, call `Queries`, build the response.

Every call acts for the tenant named in its metadata (`meterdata.tenancy`); `Queries` scopes its SQL by
it. The same process serves `ApiKeyService`, which verifies API keys for the gateway (see `keys.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import grpc

from meterdata.db import database_reachable, engine_from_settings, require_current_schema
from meterdata.errors import InvalidArgument
from meterdata.grpc_server import serve
from meterdata.settings import Settings
from meterdata.tenancy import caller_tenant
from meterdata.timeconv import optional_from_timestamp, to_timestamp
from meterdata.v1 import auth_pb2_grpc, common_pb2, query_pb2, query_pb2_grpc
from query_service.buckets import Interval
from query_service.keys import KEYS_SERVICE_NAME, ApiKeyServicer
from query_service.queries import Aggregation, ChannelInfo, MeterInfo, Queries, SeriesResult

SERVICE_NAME = "meterdata.v1.QueryService"

INTERVALS: dict[int, Interval] = {
    common_pb2.INTERVAL_UNSPECIFIED: Interval.HOUR,
    common_pb2.INTERVAL_QUARTER_HOUR: Interval.QUARTER_HOUR,
    common_pb2.INTERVAL_HOUR: Interval.HOUR,
    common_pb2.INTERVAL_DAY: Interval.DAY,
    common_pb2.INTERVAL_WEEK: Interval.WEEK,
    common_pb2.INTERVAL_MONTH: Interval.MONTH,
}
INTERVAL_ENUM = {value: key for key, value in INTERVALS.items() if key != common_pb2.INTERVAL_UNSPECIFIED}
AGGREGATIONS: dict[int, Aggregation] = {
    common_pb2.AGGREGATION_UNSPECIFIED: "sum",
    common_pb2.AGGREGATION_SUM: "sum",
    common_pb2.AGGREGATION_MEAN: "mean",
    common_pb2.AGGREGATION_MIN: "min",
    common_pb2.AGGREGATION_MAX: "max",
    common_pb2.AGGREGATION_COUNT: "count",
}
AGGREGATION_ENUM = {value: key for key, value in AGGREGATIONS.items() if key != common_pb2.AGGREGATION_UNSPECIFIED}
DIRECTIONS = {"import": common_pb2.DIRECTION_IMPORT, "export": common_pb2.DIRECTION_EXPORT}


def _enum(table: dict[int, object], value: int, field: str, enum_type: object) -> object:
    """Unset means the default; a number the proto does not define is the client's error."""
    if value not in table:
        names = ", ".join(n for n in enum_type.keys() if not n.endswith("UNSPECIFIED"))  # type: ignore[attr-defined]
        raise InvalidArgument(field, f"unknown value {value}; one of {names}")
    return table[value]


def _set_time(message: object, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).CopyFrom(to_timestamp(value))


def channel_message(channel: ChannelInfo) -> common_pb2.Channel:
    message = common_pb2.Channel(
        obis=channel.obis,
        obis_notation=channel.notation,
        name=channel.name,
        direction=DIRECTIONS.get(channel.direction or "", common_pb2.DIRECTION_UNSPECIFIED),
        unit=channel.unit,
        reading_count=channel.reading_count,
    )
    _set_time(message, "first_reading", channel.first_ts)
    _set_time(message, "last_reading", channel.last_ts)
    return message


def meter_message(meter: MeterInfo) -> common_pb2.Meter:
    message = common_pb2.Meter(
        muid=meter.muid,
        tenant=meter.tenant,
        channels=[channel_message(c) for c in meter.channels],
        reading_count=meter.reading_count,
    )
    _set_time(message, "first_reading", meter.first_ts)
    _set_time(message, "last_reading", meter.last_ts)
    return message


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        self.default_tenant = queries.settings.grpc_default_tenant

    def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        return caller_tenant(context, self.default_tenant)

    async def ListMeters(
        self, request: query_pb2.ListMetersRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListMetersResponse:
        tenant = self._tenant(context)
        meters, token = await asyncio.to_thread(self.queries.list_meters, tenant, request.page_size, request.page_token)
        return query_pb2.ListMetersResponse(meters=[meter_message(m) for m in meters], next_page_token=token)

    async def GetMeter(self, request: query_pb2.GetMeterRequest, context: grpc.aio.ServicerContext) -> common_pb2.Meter:
        tenant = self._tenant(context)
        return meter_message(await asyncio.to_thread(self.queries.get_meter, tenant, request.muid))

    async def ListReadings(
        self, request: query_pb2.ListReadingsRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListReadingsResponse:
        tenant = self._tenant(context)
        descending = _enum(
            {
                common_pb2.SORT_ORDER_UNSPECIFIED: False,
                common_pb2.SORT_ORDER_ASCENDING: False,
                common_pb2.SORT_ORDER_DESCENDING: True,
            },
            request.order,
            "order",
            common_pb2.SortOrder,
        )
        page = await asyncio.to_thread(
            lambda: self.queries.list_readings(
                tenant=tenant,
                muid=request.muid,
                obis=request.obis,
                start=optional_from_timestamp(request, "start"),
                end=optional_from_timestamp(request, "end"),
                descending=bool(descending),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        )
        readings = [
            common_pb2.Reading(
                muid=page.muid,
                obis=page.channel.obis,
                ts=to_timestamp(r.ts),
                value=r.value,
                quality=r.quality,
                measurement=r.measurement,
            )
            for r in page.readings
        ]
        return query_pb2.ListReadingsResponse(
            readings=readings, next_page_token=page.next_page_token, unit=page.channel.unit
        )

    def _series_arguments(
        self, request: query_pb2.GetSeriesRequest | query_pb2.GetFleetSeriesRequest, context: grpc.aio.ServicerContext
    ) -> dict[str, Any]:
        """What a meter's series and the fleet's have in common: tenant, channel, range, buckets."""
        return {
            "tenant": self._tenant(context),
            "obis": request.obis,
            "start": optional_from_timestamp(request, "start"),
            "end": optional_from_timestamp(request, "end"),
            "interval": _enum(INTERVALS, request.interval, "interval", common_pb2.Interval),  # type: ignore[arg-type]
            "aggregation": _enum(AGGREGATIONS, request.aggregation, "aggregation", common_pb2.Aggregation),  # type: ignore[arg-type]
            "time_zone": request.time_zone,
        }

    async def GetSeries(
        self, request: query_pb2.GetSeriesRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.Series:
        arguments = self._series_arguments(request, context)
        return series_message(await asyncio.to_thread(lambda: self.queries.series(muid=request.muid, **arguments)))

    async def GetFleetSeries(
        self, request: query_pb2.GetFleetSeriesRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.Series:
        arguments = self._series_arguments(request, context)
        return series_message(await asyncio.to_thread(lambda: self.queries.fleet_series(**arguments)))


def series_message(result: SeriesResult) -> query_pb2.Series:
    series = query_pb2.Series(
        muid=result.muid,
        obis=result.channel.obis,
        unit=result.unit,
        interval=INTERVAL_ENUM[result.interval],
        aggregation=AGGREGATION_ENUM[result.aggregation],
        time_zone=result.time_zone,
    )
    _set_time(series, "start", result.start)
    _set_time(series, "end", result.end)
    series.buckets.extend(
        common_pb2.Bucket(
            start=to_timestamp(b.start), end=to_timestamp(b.end), value=b.value, count=b.count, expected=b.expected
        )
        for b in result.buckets
    )
    return series


async def main(settings: Settings) -> None:
    engine = engine_from_settings(settings)
    require_current_schema(engine)
    servicer = QueryServicer(Queries(engine, settings))
    keys = ApiKeyServicer(engine)

    def register(server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server)
        auth_pb2_grpc.add_ApiKeyServiceServicer_to_server(keys, server)

    await serve(
        service_name=SERVICE_NAME,
        register=register,
        host=settings.grpc_listen_host,
        port=settings.query_port,
        grace_seconds=settings.grpc_shutdown_grace_seconds,
        on_shutdown=lambda: asyncio.to_thread(engine.dispose),
        settings=settings,
        readiness=lambda: database_reachable(engine),
        also_serves=(KEYS_SERVICE_NAME,),
    )
