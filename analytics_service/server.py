"""AnalyticsService: thin gRPC servicer over the pandas/statsmodels modules.

Each method validates its request, reads the channel(s) from the query service, runs the computation
in a worker thread (pandas and matplotlib block) and builds the response. Errors are domain
exceptions; the shared bootstrap turns them into statuses naming the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import grpc

from analytics_service import plots
from analytics_service.autocorrelation import autocorrelation, steps
from analytics_service.balance import balance
from analytics_service.describe import Peak, describe
from analytics_service.explain import explain
from analytics_service.profiles import profile
from analytics_service.source import ChannelData, SeriesSource
from analytics_service.sun import Site
from analytics_service.timeseries import check_time_zone
from meterdata.errors import InvalidArgument
from meterdata.grpc_client import aio_channel
from meterdata.grpc_server import serve
from meterdata.obis import lookup
from meterdata.settings import Settings
from meterdata.tenancy import caller_tenant, tenant_metadata
from meterdata.timeconv import to_timestamp
from meterdata.v1 import analytics_pb2 as pb
from meterdata.v1 import analytics_pb2_grpc, common_pb2, query_pb2_grpc

SERVICE_NAME = "meterdata.v1.AnalyticsService"
T = TypeVar("T")

INTERVALS = {
    common_pb2.INTERVAL_QUARTER_HOUR: "quarter_hour",
    common_pb2.INTERVAL_HOUR: "hour",
    common_pb2.INTERVAL_DAY: "day",
    common_pb2.INTERVAL_WEEK: "week",
    common_pb2.INTERVAL_MONTH: "month",
}
INTERVAL_ENUMS = {name: value for value, name in INTERVALS.items()}
PROFILE_KINDS = {
    pb.PROFILE_KIND_HOUR_OF_DAY: "hour_of_day",
    pb.PROFILE_KIND_DAY_OF_WEEK: "day_of_week",
    pb.PROFILE_KIND_DAY: "day",
    pb.PROFILE_KIND_WEEK: "week",
    pb.PROFILE_KIND_MONTH: "month",
    pb.PROFILE_KIND_HOUR_BY_WEEKDAY: "hour_by_weekday",
    pb.PROFILE_KIND_QUARTER_HOUR_OF_DAY: "quarter_hour_of_day",
}
PLOT_KINDS = {
    pb.PLOT_KIND_TIMESERIES: "timeseries",
    pb.PLOT_KIND_HISTOGRAM: "histogram",
    pb.PLOT_KIND_HOUR_OF_DAY: "hour_of_day",
    pb.PLOT_KIND_WEEKDAY: "weekday",
    pb.PLOT_KIND_HEATMAP: "heatmap",
    pb.PLOT_KIND_ACF: "acf",
    pb.PLOT_KIND_DECOMPOSITION: "decomposition",
    pb.PLOT_KIND_DAILY: "daily",
}
CLASSIFICATIONS = {
    "consumption": pb.CLASSIFICATION_CONSUMPTION,
    "photovoltaic_export": pb.CLASSIFICATION_PHOTOVOLTAIC_EXPORT,
    "other_export": pb.CLASSIFICATION_OTHER_EXPORT,
    "other": pb.CLASSIFICATION_OTHER,
}
DIRECTIONS = {
    "import": common_pb2.DIRECTION_IMPORT,
    "export": common_pb2.DIRECTION_EXPORT,
    "unspecified": common_pb2.DIRECTION_UNSPECIFIED,
}
PLOT_WIDTH = (300, 4000, 1000)  # min, max, default pixels
PLOT_HEIGHT = (200, 3000, 500)
MAX_TOP_N = 100


def interval_name(value: int, field: str, default: str, allowed: tuple[str, ...] | None = None) -> str:
    if value == common_pb2.INTERVAL_UNSPECIFIED:
        return default
    name = INTERVALS.get(value)
    if name is None or (allowed is not None and name not in allowed):
        choices = ", ".join(common_pb2.Interval.Name(INTERVAL_ENUMS[n]) for n in allowed or INTERVALS.values())
        raise InvalidArgument(field, f"must be one of {choices}, got {value}")
    return name


def _enum_name(mapping: dict[int, str], value: int, field: str, enum_name: Callable[[int], str]) -> str:
    if value not in mapping:
        raise InvalidArgument(field, f"required: one of {', '.join(enum_name(v) for v in mapping)}, got {value}")
    return mapping[value]


def _bounded(value: int, field: str, low: int, high: int, default: int) -> int:
    if value == 0:
        return default
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value


def _peaks(peaks: list[Peak]) -> list[pb.Peak]:
    return [pb.Peak(start=to_timestamp(p.start), end=to_timestamp(p.end), value=p.value) for p in peaks]


def _title(data: ChannelData) -> str:
    entry = lookup(data.obis)
    what = f"{entry.notation} {entry.direction}" if entry else data.obis
    return f"{data.muid[:8]} {what}"


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, settings: Settings, source: SeriesSource) -> None:
        self.settings = settings
        self.source = source
        self.site = Site(settings.site_name, settings.site_latitude, settings.site_longitude)

    def _tz(self, name: str) -> str:
        return check_time_zone(name or self.settings.default_time_zone)

    async def _channel(
        self, channel: common_pb2.ChannelRange, context: grpc.aio.ServicerContext, field: str = "channel"
    ) -> ChannelData:
        """The channel's data as the caller's tenant sees it: the tenant metadata is forwarded."""
        tenant = caller_tenant(context, self.settings.grpc_default_tenant)
        return await self.source.channel_data(
            channel, field, context.time_remaining(), metadata=tenant_metadata(tenant)
        )

    @staticmethod
    async def _compute(function: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    async def GetProfile(self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext) -> pb.Profile:
        kind = _enum_name(PROFILE_KINDS, request.kind, "kind", pb.ProfileKind.Name)
        tz = self._tz(request.time_zone)
        data = await self._channel(request.channel, context)
        groups = await self._compute(profile, data.series, kind, tz)
        return pb.Profile(
            muid=data.muid,
            obis=data.obis,
            unit=data.unit,
            time_zone=tz,
            kind=request.kind,
            groups=[pb.ProfileGroup(**vars(g)) for g in groups],
        )

    async def GetAutocorrelation(
        self, request: pb.GetAutocorrelationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Autocorrelation:
        interval = interval_name(request.interval, "interval", "quarter_hour", ("quarter_hour", "hour"))
        if request.nlags < 0:
            raise InvalidArgument("nlags", f"must be positive, got {request.nlags}")
        if request.alpha and not 0 < request.alpha < 1:
            raise InvalidArgument("alpha", f"must be between 0 and 1 (exclusive), got {request.alpha}")
        data = await self._channel(request.channel, context)

        def compute() -> tuple[object, int]:
            values, steps_per_hour, filled = steps(data.series, interval, self.settings.default_time_zone)
            result = autocorrelation(
                values,
                steps_per_hour=steps_per_hour,
                nlags=request.nlags or None,
                ljung_box_lags=list(request.ljung_box_lags) or None,
                alpha=request.alpha or 0.05,
            )
            return result, filled

        result, filled = await self._compute(compute)
        return pb.Autocorrelation(
            muid=data.muid,
            obis=data.obis,
            interval=INTERVAL_ENUMS[interval],
            observations=result.observations,
            alpha=result.alpha,
            confidence_band=result.confidence_band,
            lags=[pb.LagValue(**vars(v)) for v in result.lags],
            ljung_box=[
                pb.LjungBoxResult(lag=v.lag, statistic=v.statistic, p_value=v.p_value) for v in result.ljung_box
            ],
            significant_lags=result.significant_lags,
            seasonal_period=result.seasonal_period,
            seasonal_strength=result.seasonal_strength,
            trend_strength=result.trend_strength,
            filled=filled,
            named_lags=result.named_lags,
            named_lag_band=result.named_lag_band,
            strongest_lag=result.strongest_lag,
            seasonal_strength_noise=result.seasonal_strength_noise,
        )

    async def Describe(self, request: pb.DescribeRequest, context: grpc.aio.ServicerContext) -> pb.Description:
        tz = self._tz(request.time_zone)
        top_n = _bounded(request.top_n, "top_n", 1, MAX_TOP_N, 5)
        interval = interval_name(request.interval, "interval", "quarter_hour")
        data = await self._channel(request.channel, context)
        result = await self._compute(describe, data.series, tz, interval=interval, top_n=top_n)
        return pb.Description(
            muid=data.muid,
            obis=data.obis,
            unit=data.unit,
            time_zone=tz,
            count=result.count,
            total=result.total,
            mean=result.mean,
            std=result.std,
            min=result.min,
            min_at=to_timestamp(result.min_at),
            max=result.max,
            max_at=to_timestamp(result.max_at),
            quantiles=result.quantiles,
            zero_share=result.zero_share,
            baseline=result.baseline,
            baseline_energy_share=result.baseline_energy_share,
            peak_intervals=_peaks(result.peak_intervals),
            peak_days=_peaks(result.peak_days),
            expected=data.expected,
            readings=result.readings,
            interval=INTERVAL_ENUMS[interval],
            start=to_timestamp(data.start),
            end=to_timestamp(data.end),
        )

    async def ExplainMeter(self, request: pb.ExplainMeterRequest, context: grpc.aio.ServicerContext) -> pb.Explanation:
        tz = self._tz(request.time_zone)
        data = await self._channel(request.channel, context)
        result = await self._compute(explain, data.series, data.obis, tz, self.site)
        return pb.Explanation(
            muid=data.muid,
            obis=data.obis,
            direction=DIRECTIONS[result.direction],
            classification=CLASSIFICATIONS[result.classification],
            headline=result.headline,
            findings=result.findings,
            evidence=[pb.Evidence(**vars(e)) for e in result.evidence],
            obis_notation=result.obis_notation,
            obis_name=result.obis_name,
            obis_direction=DIRECTIONS[result.obis_direction],
            shape_direction=DIRECTIONS[result.shape_direction],
            time_zone=tz,
            site=self.site.describe(),
        )

    async def _balance_inputs(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> tuple[str, str, ChannelData, ChannelData]:
        tz = self._tz(request.time_zone)
        interval = interval_name(request.interval, "interval", "day")
        imported, exported = await asyncio.gather(
            self._channel(request.import_channel, context, "import_channel"),
            self._channel(request.export_channel, context, "export_channel"),
        )
        for data, field, wanted in ((imported, "import_channel", "import"), (exported, "export_channel", "export")):
            entry = lookup(data.obis)
            if entry is not None and entry.direction != wanted:
                raise InvalidArgument(f"{field}.obis", f"{data.obis} ({entry.name}) is not an {wanted} channel")
        return tz, interval, imported, exported

    async def GetBalance(self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext) -> pb.Balance:
        tz, interval, imported, exported = await self._balance_inputs(request, context)
        result = await self._compute(balance, imported.series, exported.series, interval, tz)
        return pb.Balance(
            unit=imported.unit,
            time_zone=tz,
            imported_total=result.imported_total,
            exported_total=result.exported_total,
            net_import_total=result.net_import_total,
            export_interval_share=result.export_interval_share,
            simultaneous_interval_share=result.simultaneous_interval_share,
            buckets=[
                pb.BalanceBucket(
                    start=to_timestamp(row.start),
                    end=to_timestamp(row.end),
                    imported=row.imported,
                    exported=row.exported,
                    net_import=row.net_import,
                    count=row.count,
                )
                for row in result.buckets.itertuples(index=False)
            ],
            findings=result.findings,
            interval=INTERVAL_ENUMS[interval],
            import_muid=imported.muid,
            export_muid=exported.muid,
            quarter_hours=result.quarter_hours,
            unmatched=result.unmatched,
            export_to_import_ratio=result.export_to_import_ratio,
            net_export_interval_share=result.net_export_interval_share,
            mean_import_with_export=result.mean_import_with_export,
            mean_import_without_export=result.mean_import_without_export,
        )

    async def RenderPlot(self, request: pb.RenderPlotRequest, context: grpc.aio.ServicerContext) -> pb.Plot:
        kind = _enum_name(PLOT_KINDS, request.kind, "kind", pb.PlotKind.Name)
        tz = self._tz(request.time_zone)
        width = _bounded(request.width_px, "width_px", *PLOT_WIDTH)
        height = _bounded(request.height_px, "height_px", *PLOT_HEIGHT)
        interval = interval_name(request.interval, "interval", "quarter_hour", ("quarter_hour", "hour"))
        if request.nlags < 0:
            raise InvalidArgument("nlags", f"must be positive, got {request.nlags}")
        data = await self._channel(request.channel, context)
        png = await self._compute(
            plots.render,
            kind,
            data.series,
            tz=tz,
            title=_title(data),
            unit=data.unit,
            width_px=width,
            height_px=height,
            interval=interval,
            nlags=request.nlags or None,
        )
        return pb.Plot(png=png, content_type="image/png")

    async def RenderBalancePlot(self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext) -> pb.Plot:
        tz, interval, imported, exported = await self._balance_inputs(request, context)

        def draw() -> bytes:
            result = balance(imported.series, exported.series, interval, tz)
            title = f"balance: import {imported.muid[:8]} against export {exported.muid[:8]}"
            return plots.balance_chart(result, tz, title, imported.unit, PLOT_WIDTH[2], PLOT_HEIGHT[2])

        return pb.Plot(png=await self._compute(draw), content_type="image/png")


async def main(settings: Settings) -> None:
    channel = aio_channel(settings.query_address, settings)
    source = SeriesSource(query_pb2_grpc.QueryServiceStub(channel), settings.grpc_deadline_seconds)
    servicer = AnalyticsServicer(settings, source)

    async def close() -> None:
        await channel.close()

    await serve(
        service_name=SERVICE_NAME,
        register=lambda server: analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(servicer, server),
        host=settings.grpc_listen_host,
        port=settings.analytics_port,
        grace_seconds=settings.grpc_shutdown_grace_seconds,
        on_shutdown=close,
        settings=settings,
    )
