"""AnalyticsService through real gRPC: query + analytics services as child processes on a real
PostgreSQL seeded with the published data. Expected values come from pandas on the raw JSON."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from statsmodels.tsa.stattools import acf, pacf

from meterdata.grpc_client import field_violations, sync_channel
from meterdata.runner import Topology
from meterdata.timeconv import to_timestamp
from meterdata.v1 import analytics_pb2 as pb
from meterdata.v1 import analytics_pb2_grpc, common_pb2
from tests.seed import EXPORT_MUID, EXPORT_OBIS, IMPORT_MUID, IMPORT_OBIS, published_points, seed_published

TZ = "Europe/Zurich"
DEADLINE = 30


def raw(muid: str) -> pd.Series:
    """The published values from the raw JSON, on a UTC index, parsed here with pandas only."""
    _, points = published_points(muid)
    series = pd.Series([v for _, v in points], index=pd.DatetimeIndex([t for t, _ in points])).sort_index()
    return series.tz_convert("UTC")


@pytest.fixture(scope="module")
def topology(engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:  # type: ignore[no-untyped-def]
    seed_published(engine)
    services = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("analytics-logs"))
    services.start(["query", "analytics"])
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="module")
def stub(topology: Topology) -> Iterator[analytics_pb2_grpc.AnalyticsServiceStub]:
    with sync_channel(topology.address("analytics"), tenant="default") as channel:
        yield analytics_pb2_grpc.AnalyticsServiceStub(channel)


def channel(muid: str, obis: str = "", start: str | None = None, end: str | None = None) -> common_pb2.ChannelRange:
    message = common_pb2.ChannelRange(muid=muid, obis=obis)
    if start:
        message.start.CopyFrom(to_timestamp(pd.Timestamp(start).to_pydatetime()))
    if end:
        message.end.CopyFrom(to_timestamp(pd.Timestamp(end).to_pydatetime()))
    return message


def rpc_error(call, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=DEADLINE)
    return error.value


# --- profiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("muid", [IMPORT_MUID, EXPORT_MUID])
def test_profiles_equal_pandas_in_local_time(stub, muid: str) -> None:  # type: ignore[no-untyped-def]
    local = raw(muid).tz_convert(TZ)
    keys = {
        pb.PROFILE_KIND_HOUR_OF_DAY: local.index.hour,
        pb.PROFILE_KIND_DAY_OF_WEEK: local.index.day_of_week + 1,
        pb.PROFILE_KIND_DAY: local.index.strftime("%Y-%m-%d"),
        pb.PROFILE_KIND_WEEK: [f"{y}-W{w:02d}" for y, w, _ in local.index.isocalendar().itertuples(index=False)],
        pb.PROFILE_KIND_MONTH: local.index.strftime("%Y-%m"),
        pb.PROFILE_KIND_HOUR_BY_WEEKDAY: [
            f"{d + 1}-{h:02d}" for d, h in zip(local.index.day_of_week, local.index.hour, strict=True)
        ],
    }
    for kind, key in keys.items():
        answer = stub.GetProfile(pb.GetProfileRequest(channel=channel(muid), kind=kind, time_zone=TZ), timeout=DEADLINE)
        grouped = local.groupby(np.asarray(key))
        expected = grouped.agg(["count", "sum", "mean", "median", "min", "max"])
        expected["p25"] = grouped.quantile(0.25)
        expected["p90"] = grouped.quantile(0.90)
        assert answer.unit == "kWh" and answer.time_zone == TZ
        assert len(answer.groups) == len(expected), pb.ProfileKind.Name(kind)
        by_key = {g.key: g for g in answer.groups}
        for key_value, row in expected.iterrows():
            group = by_key[str(key_value) if kind != pb.PROFILE_KIND_HOUR_OF_DAY else f"{key_value:02d}"]
            assert group.count == row["count"]
            for name in ("sum", "mean", "median", "min", "max", "p25", "p90"):
                assert getattr(group, name) == pytest.approx(row[name], abs=1e-12), (key_value, name)
    # The local month of February starts at 01:00 on Feb 1 and the last UTC hour is March 1 local.
    months = stub.GetProfile(pb.GetProfileRequest(channel=channel(muid), kind=pb.PROFILE_KIND_MONTH), timeout=DEADLINE)
    assert [(g.key, g.count) for g in months.groups] == [("2023-02", 2684), ("2023-03", 4)]


# --- describe ------------------------------------------------------------------------------------


def test_describe_equals_pandas(stub) -> None:  # type: ignore[no-untyped-def]
    for muid, obis, total, zeros in (
        (IMPORT_MUID, IMPORT_OBIS, 97.6082, 0),
        (EXPORT_MUID, EXPORT_OBIS, 36.19725, 1680),
    ):
        series = raw(muid)
        answer = stub.Describe(pb.DescribeRequest(channel=channel(muid), time_zone=TZ, top_n=3), timeout=DEADLINE)
        assert (answer.obis, answer.count, answer.readings, answer.expected) == (obis, 2688, 2688, 2688)
        assert answer.total == pytest.approx(total, abs=1e-9) == pytest.approx(series.sum())
        assert answer.zero_share == pytest.approx(zeros / 2688)
        assert answer.mean == pytest.approx(series.mean())
        assert answer.std == pytest.approx(series.std())
        assert answer.max == series.max()
        assert pd.Timestamp(answer.max_at.ToDatetime(), tz="UTC") == series.idxmax()
        assert answer.quantiles["p95"] == pytest.approx(series.quantile(0.95))
        assert answer.baseline == pytest.approx(series.quantile(0.05))
        assert [p.value for p in answer.peak_intervals] == series.sort_values(ascending=False).head(3).tolist()
        daily = series.tz_convert(TZ).groupby(series.tz_convert(TZ).index.date).sum().sort_values(ascending=False)
        assert [p.value for p in answer.peak_days] == pytest.approx(daily.head(3).tolist())
    # The import maximum is the documented one: 0.9612 kWh at 2023-02-20T15:00Z.
    answer = stub.Describe(pb.DescribeRequest(channel=channel(IMPORT_MUID)), timeout=DEADLINE)
    assert (answer.max, answer.max_at.ToJsonString()) == (0.9612, "2023-02-20T15:00:00Z")


def test_describe_daily_values_and_a_range(stub) -> None:  # type: ignore[no-untyped-def]
    series = raw(EXPORT_MUID)
    request = pb.DescribeRequest(
        channel=channel(EXPORT_MUID, start="2023-02-06T00:00:00+01:00", end="2023-02-13T00:00:00+01:00"),
        time_zone=TZ,
        interval=common_pb2.INTERVAL_DAY,
    )
    answer = stub.Describe(request, timeout=DEADLINE)
    week = series["2023-02-05T23:00Z":"2023-02-12T22:45Z"]
    daily = week.tz_convert(TZ).groupby(week.tz_convert(TZ).index.date).sum()
    assert (answer.count, answer.readings, answer.expected) == (7, 672, 672)
    assert answer.total == pytest.approx(week.sum())
    assert answer.max == pytest.approx(daily.max())
    assert answer.mean == pytest.approx(daily.mean())


# --- balance -------------------------------------------------------------------------------------


def test_balance_equals_pandas(stub) -> None:  # type: ignore[no-untyped-def]
    imported, exported = raw(IMPORT_MUID), raw(EXPORT_MUID)
    request = pb.GetBalanceRequest(
        import_channel=channel(IMPORT_MUID), export_channel=channel(EXPORT_MUID), time_zone=TZ
    )
    answer = stub.GetBalance(request, timeout=DEADLINE)
    assert answer.imported_total == pytest.approx(97.6082)
    assert answer.exported_total == pytest.approx(36.19725)
    assert answer.net_import_total == pytest.approx(97.6082 - 36.19725)
    assert answer.export_interval_share == pytest.approx(1008 / 2688)
    assert answer.simultaneous_interval_share == pytest.approx(((imported > 0) & (exported > 0)).mean())
    assert answer.net_export_interval_share == pytest.approx((exported > imported).mean())
    net = (imported - exported).tz_convert(TZ)
    daily = net.groupby(net.index.date).sum()
    assert answer.interval == common_pb2.INTERVAL_DAY
    assert [b.net_import for b in answer.buckets] == pytest.approx(daily.tolist())
    assert [b.count for b in answer.buckets] == net.groupby(net.index.date).size().tolist()
    assert answer.buckets[0].start.ToJsonString() == "2023-01-31T23:00:00Z"
    assert any("self-consumption" in text for text in answer.findings)
    png = stub.RenderBalancePlot(request, timeout=DEADLINE).png
    assert Image.open(io.BytesIO(png)).size == (1000, 500)


# --- autocorrelation -----------------------------------------------------------------------------


def test_autocorrelation_equals_statsmodels(stub) -> None:  # type: ignore[no-untyped-def]
    for muid in (IMPORT_MUID, EXPORT_MUID):
        values = raw(muid).to_numpy()
        request = pb.GetAutocorrelationRequest(channel=channel(muid), nlags=192, ljung_box_lags=[96])
        answer = stub.GetAutocorrelation(request, timeout=DEADLINE)
        assert (answer.observations, answer.filled, answer.seasonal_period) == (2688, 0, 96)
        np.testing.assert_allclose([v.acf for v in answer.lags], acf(values, nlags=192, fft=True)[1:], atol=1e-12)
        np.testing.assert_allclose([v.pacf for v in answer.lags], pacf(values, nlags=192, method="ywm")[1:], atol=1e-10)
        assert answer.confidence_band == pytest.approx(1.959964 / np.sqrt(2688), rel=1e-6)
        assert [row.lag for row in answer.ljung_box] == [96]
        assert 1 in answer.significant_lags
    export = stub.GetAutocorrelation(
        pb.GetAutocorrelationRequest(channel=channel(EXPORT_MUID), interval=common_pb2.INTERVAL_HOUR), timeout=DEADLINE
    )
    assert export.observations == 672
    assert 24 in export.significant_lags
    assert export.strongest_lag == 24
    assert export.seasonal_strength > export.seasonal_strength_noise


# --- explain -------------------------------------------------------------------------------------


def test_explain_published_meters(stub) -> None:  # type: ignore[no-untyped-def]
    consumption = stub.ExplainMeter(pb.ExplainMeterRequest(channel=channel(IMPORT_MUID)), timeout=DEADLINE)
    assert consumption.classification == pb.CLASSIFICATION_CONSUMPTION
    assert consumption.direction == consumption.obis_direction == consumption.shape_direction
    assert consumption.direction == common_pb2.DIRECTION_IMPORT
    evidence = {e.name: e for e in consumption.evidence}
    assert evidence["spike_count"].value > 0
    assert evidence["spike_max_kw"].value == pytest.approx(0.9612 * 4)
    assert evidence["base_load_w"].value == pytest.approx(raw(IMPORT_MUID).quantile(0.05) * 4000)
    assert evidence["night_zero_share"].value == 0 and evidence["night_zero_share"].met
    assert "spike" in consumption.headline

    pv = stub.ExplainMeter(pb.ExplainMeterRequest(channel=channel(EXPORT_MUID), time_zone=TZ), timeout=DEADLINE)
    assert pv.classification == pb.CLASSIFICATION_PHOTOVOLTAIC_EXPORT
    assert pv.direction == pv.obis_direction == pv.shape_direction == common_pb2.DIRECTION_EXPORT
    assert pv.obis_notation == "1-0:2.29.0*255"
    evidence = {e.name: e for e in pv.evidence}
    assert evidence["night_energy_share"].value < 0.02 and evidence["night_energy_share"].met
    assert evidence["sun_elevation_correlation"].met
    assert evidence["peak_power_kw"].value == pytest.approx(0.17325 * 4)
    assert pv.site.startswith("Zurich")
    assert all(any(ch.isdigit() for ch in text) for text in pv.findings)


# --- plots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in pb.PlotKind.values() if k != pb.PLOT_KIND_UNSPECIFIED])
def test_plots_are_pngs(stub, kind: int) -> None:  # type: ignore[no-untyped-def]
    request = pb.RenderPlotRequest(channel=channel(EXPORT_MUID), kind=kind, width_px=800, height_px=400)
    answer = stub.RenderPlot(request, timeout=DEADLINE)
    assert answer.content_type == "image/png"
    assert answer.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 10_000 < len(answer.png) < 2_000_000
    assert Image.open(io.BytesIO(answer.png)).size == (800, 400)


# --- errors --------------------------------------------------------------------------------------


def test_invalid_arguments_name_the_field(stub) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (stub.Describe, pb.DescribeRequest(channel=channel("not-a-uuid")), "channel.muid"),
        (stub.Describe, pb.DescribeRequest(channel=channel(IMPORT_MUID), time_zone="Mars/Base"), "time_zone"),
        (stub.Describe, pb.DescribeRequest(channel=channel(IMPORT_MUID), top_n=1000), "top_n"),
        (
            stub.Describe,
            pb.DescribeRequest(channel=channel(IMPORT_MUID, start="2023-02-10T00:00Z", end="2023-02-01T00:00Z")),
            "channel.end",
        ),
        (stub.GetProfile, pb.GetProfileRequest(channel=channel(IMPORT_MUID)), "kind"),
        (
            stub.GetAutocorrelation,
            pb.GetAutocorrelationRequest(channel=channel(IMPORT_MUID), interval=common_pb2.INTERVAL_DAY),
            "interval",
        ),
        (
            stub.RenderPlot,
            pb.RenderPlotRequest(channel=channel(IMPORT_MUID), kind=pb.PLOT_KIND_ACF, width_px=10),
            "width_px",
        ),
        (
            stub.GetBalance,
            pb.GetBalanceRequest(import_channel=channel(EXPORT_MUID), export_channel=channel(IMPORT_MUID)),
            "import_channel.obis",
        ),
    ]
    for call, request, field in cases:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert field_violations(error)[0][0] == field
        assert error.details().startswith(f"{field}:")


def test_not_found_and_failed_precondition(stub) -> None:  # type: ignore[no-untyped-def]
    error = rpc_error(stub.Describe, pb.DescribeRequest(channel=channel("00000000-0000-0000-0000-000000000000")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(stub.Describe, pb.DescribeRequest(channel=channel(IMPORT_MUID, obis=EXPORT_OBIS)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    one_day = channel(IMPORT_MUID, start="2023-02-10T00:00Z", end="2023-02-11T00:00Z")
    error = rpc_error(stub.GetAutocorrelation, pb.GetAutocorrelationRequest(channel=one_day))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "need at least 386 observations" in error.details() and "has 96" in error.details()
    empty = channel(IMPORT_MUID, start="2024-01-01T00:00Z", end="2024-01-02T00:00Z")
    error = rpc_error(stub.Describe, pb.DescribeRequest(channel=empty))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_report_builds(topology: Topology, tmp_path: Path) -> None:
    from analytics_service.report import build_report
    from meterdata.settings import Settings

    settings = Settings(database_url="postgresql://unused@localhost/x")
    path = build_report(
        settings, tmp_path, query_address=topology.address("query"), analytics_address=topology.address("analytics")
    )
    text = path.read_text()
    assert "1-0:2.29.0*255" in text and "36.19725" in text and "1680" in text
    assert "photovoltaic" in text.lower()
    for png in sorted(tmp_path.glob("*.png")):
        assert png.read_bytes().startswith(b"\x89PNG")
    assert len(list(tmp_path.glob("*.png"))) >= 10
