"""The QueryService over gRPC directly, as internal clients (analytics, grpcurl) see it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meterdata.grpc_client import field_violations, sync_channel
from meterdata.timeconv import from_timestamp, to_timestamp
from meterdata.v1 import common_pb2, query_pb2, query_pb2_grpc
from tests.query_api.helpers import (
    DST_MUID,
    EXPORT_MUID,
    GAP_MUID,
    IMPORT_MUID,
    Stack,
    close,
    published_frame,
)

TIMEOUT = 10


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with sync_channel(stack.topology.address("query"), tenant="default") as channel:
        yield channel


@pytest.fixture(scope="module")
def query(channel: grpc.Channel) -> query_pb2_grpc.QueryServiceStub:
    return query_pb2_grpc.QueryServiceStub(channel)


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="meterdata.v1.QueryService"), timeout=TIMEOUT
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert "meterdata.v1.QueryService" in {s.name for s in answer.list_services_response.service}


def test_list_meters_pages_through_every_meter_once(query: query_pb2_grpc.QueryServiceStub) -> None:
    muids: list[str] = []
    token = ""
    while True:
        page = query.ListMeters(query_pb2.ListMetersRequest(page_size=1, page_token=token), timeout=TIMEOUT)
        assert len(page.meters) <= 1
        muids += [m.muid for m in page.meters]
        token = page.next_page_token
        if not token:
            break
    assert muids == sorted(muids) and len(set(muids)) == len(muids)
    assert {IMPORT_MUID, EXPORT_MUID, DST_MUID, GAP_MUID} <= set(muids)


def test_get_meter_describes_its_channel(query: query_pb2_grpc.QueryServiceStub) -> None:
    meter = query.GetMeter(query_pb2.GetMeterRequest(muid=EXPORT_MUID.upper()), timeout=TIMEOUT)
    (channel,) = meter.channels
    raw = published_frame(EXPORT_MUID)
    assert (meter.muid, meter.reading_count, channel.reading_count) == (EXPORT_MUID, 2688, 2688)
    assert (channel.obis, channel.obis_notation, channel.unit) == ("0100021D00FF", "1-0:2.29.0*255", "kWh")
    assert channel.direction == common_pb2.DIRECTION_EXPORT
    assert from_timestamp(meter.first_reading) == raw.index[0] and from_timestamp(meter.last_reading) == raw.index[-1]


def test_series_defaults_hour_and_sum_with_the_configured_zone(query: query_pb2_grpc.QueryServiceStub) -> None:
    series = query.GetSeries(query_pb2.GetSeriesRequest(muid=IMPORT_MUID), timeout=TIMEOUT)
    assert (series.interval, series.aggregation, series.time_zone) == (
        common_pb2.INTERVAL_HOUR,
        common_pb2.AGGREGATION_SUM,
        "Europe/Zurich",
    )
    assert len(series.buckets) == 28 * 24
    assert close(sum(b.value for b in series.buckets), 97.6082)
    assert all(b.HasField("value") for b in series.buckets)


def test_empty_bucket_has_no_value(query: query_pb2_grpc.QueryServiceStub) -> None:
    request = query_pb2.GetSeriesRequest(
        muid=GAP_MUID,
        interval=common_pb2.INTERVAL_HOUR,
        start=to_timestamp(datetime(2023, 2, 10, 10, tzinfo=UTC)),
        end=to_timestamp(datetime(2023, 2, 10, 11, tzinfo=UTC)),
    )
    (bucket,) = query.GetSeries(request, timeout=TIMEOUT).buckets
    assert not bucket.HasField("value") and (bucket.count, bucket.expected) == (0, 4)


def _error(call, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


STAMP = to_timestamp(datetime(2023, 2, 10, tzinfo=UTC))
EARLIER = to_timestamp(datetime(2023, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (query_pb2.GetSeriesRequest(muid=IMPORT_MUID, interval=99), "interval"),
        (query_pb2.GetSeriesRequest(muid=IMPORT_MUID, aggregation=42), "aggregation"),
        (query_pb2.GetSeriesRequest(muid=IMPORT_MUID, time_zone="Europe/Atlantis"), "time_zone"),
        (query_pb2.GetSeriesRequest(muid=IMPORT_MUID, start=STAMP, end=EARLIER), "end"),
        (
            query_pb2.GetSeriesRequest(
                muid=IMPORT_MUID,
                interval=common_pb2.INTERVAL_QUARTER_HOUR,
                start=EARLIER,
                end=to_timestamp(datetime(2030, 1, 1, tzinfo=UTC)),
            ),
            "end",
        ),
        (query_pb2.GetSeriesRequest(muid="x"), "muid"),
        (query_pb2.ListReadingsRequest(muid=IMPORT_MUID, page_size=10_001), "page_size"),
        (query_pb2.ListReadingsRequest(muid=IMPORT_MUID, order=7), "order"),
        (query_pb2.ListReadingsRequest(muid=IMPORT_MUID, page_token="bm9wZQ"), "page_token"),
        (query_pb2.ListMetersRequest(page_size=1001), "page_size"),
    ],
)
def test_invalid_argument_names_the_field(query: query_pb2_grpc.QueryServiceStub, request_: object, field: str) -> None:
    call = {
        query_pb2.GetSeriesRequest: query.GetSeries,
        query_pb2.ListReadingsRequest: query.ListReadings,
        query_pb2.ListMetersRequest: query.ListMeters,
    }[type(request_)]
    error = _error(call, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == [field]
    assert error.details().startswith(f"{field}: ")


def test_not_found_for_unknown_meter_and_channel(query: query_pb2_grpc.QueryServiceStub) -> None:
    error = _error(query.GetMeter, query_pb2.GetMeterRequest(muid="00000000-0000-4000-8000-000000000000"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and field_violations(error)[0][0] == "muid"
    error = _error(query.ListReadings, query_pb2.ListReadingsRequest(muid=IMPORT_MUID, obis="0100031D00FF"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and field_violations(error)[0][0] == "obis"
