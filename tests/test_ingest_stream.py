"""The client-streaming WriteReadings RPC, health and reflection, on a real ingest server."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.timeconv import to_timestamp
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc
from meterdata.v1.common_pb2 import Reading
from tests.ingest_helpers import assert_rollup_exact

START = datetime(2024, 1, 1, tzinfo=UTC)
STREAM_METERS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]


@pytest.fixture(scope="module")
def address(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("stream-logs"))
    topology.start(["ingest"])
    yield topology.address("ingest")
    topology.stop()


@pytest.fixture
def stub(address: str) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    with sync_channel(address, tenant="default") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


def synthetic_value(meter: int, step: int) -> float:
    """A deterministic, exactly representable value (multiples of 1/1024 kWh)."""
    return ((meter * 7919 + step * 104729) % 1024) / 1024


def synthetic_batches(total: int, batch_size: int, register: bool = True) -> Iterator[ingest_pb2.WriteReadingsRequest]:
    per_meter = total // len(STREAM_METERS)
    readings = (
        Reading(
            muid=muid,
            obis="0100011D00FF",
            ts=to_timestamp(START + timedelta(minutes=15 * step)),
            value=synthetic_value(m, step),
            quality="measured",
            measurement="energy",
        )
        for m, muid in enumerate(STREAM_METERS)
        for step in range(per_meter)
    )
    batch: list[Reading] = []
    first = True
    for reading in readings:
        batch.append(reading)
        if len(batch) == batch_size:
            yield ingest_pb2.WriteReadingsRequest(readings=batch, register_unknown_meters=register and first)
            first, batch = False, []
    if batch:
        yield ingest_pb2.WriteReadingsRequest(readings=batch, register_unknown_meters=register and first)


@pytest.mark.heavy
def test_100k_streamed_readings_land_exactly_once(stub, clean_db) -> None:  # type: ignore[no-untyped-def]
    total = 100_000
    started = time.perf_counter()
    run = stub.WriteReadings(synthetic_batches(total, 5_000), timeout=300)
    seconds = time.perf_counter() - started
    print(f"\nstreamed {total:,} readings in {seconds:.2f} s: {total / seconds:,.0f} rows/s")
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED
    assert (run.received, run.inserted, run.updated, run.unchanged, run.rejected) == (total, total, 0, 0, 0)
    per_meter = total // len(STREAM_METERS)
    expected_sum = math.fsum(synthetic_value(m, s) for m in range(len(STREAM_METERS)) for s in range(per_meter))
    with clean_db.connect() as connection:
        count, distinct, total_value = connection.execute(
            text("SELECT count(*), count(DISTINCT (muid, ts)), sum(value) FROM readings")
        ).one()
        counts = connection.execute(text("SELECT sum(reading_count) FROM meter_channels")).scalar()
    assert (count, distinct, counts) == (total, total, total)
    assert total_value == pytest.approx(expected_sum, abs=1e-6)

    again = stub.WriteReadings(synthetic_batches(total, 5_000), timeout=300)
    assert (again.inserted, again.unchanged) == (0, total)
    assert assert_rollup_exact(clean_db) == total // 4


def test_stream_rejects_bad_readings_and_unknown_meters_keeping_them(stub, clean_db) -> None:  # type: ignore[no-untyped-def]
    ts = to_timestamp(START)
    unknown = "00000000-0000-4000-8000-0000000000ff"
    good = Reading(
        muid=STREAM_METERS[0], obis="0100011D00FF", ts=ts, value=1.0, quality="measured", measurement="energy"
    )
    cases = [
        (Reading(muid="x", obis="0100011D00FF", ts=ts, value=1.0), "muid", "not a UUID"),
        (Reading(muid=STREAM_METERS[0], obis="0100011D00FF", value=1.0), "ts", "missing"),
        (
            Reading(
                muid=STREAM_METERS[0], obis="0100011D00FF", ts=to_timestamp(START + timedelta(minutes=1)), value=1.0
            ),
            "ts",
            "grid",
        ),
        (Reading(muid=STREAM_METERS[0], obis="FFFFFFFFFFFF", ts=ts, value=1.0), "obis", "unknown OBIS"),
        (
            Reading(
                muid=STREAM_METERS[0],
                obis="0100011D00FF",
                ts=to_timestamp(START + timedelta(minutes=15)),
                value=math.nan,
            ),
            "value",
            "finite",
        ),
        (
            Reading(
                muid=STREAM_METERS[0], obis="0100011D00FF", ts=to_timestamp(START + timedelta(minutes=30)), value=-1
            ),
            "value",
            ">= 0",
        ),
        (Reading(muid=STREAM_METERS[0], obis="0100011D00FF", ts=ts, value=2.0), "ts", "duplicate"),
        (Reading(muid=unknown, obis="0100011D00FF", ts=ts, value=1.0), "muid", "unknown meter"),
    ]
    with clean_db.begin() as connection:
        connection.execute(text("INSERT INTO meters (muid) VALUES (:m)"), {"m": STREAM_METERS[0]})
    request = ingest_pb2.WriteReadingsRequest(readings=[good] + [c for c, _, _ in cases])
    run = stub.WriteReadings(iter([request]), timeout=30)
    assert (run.received, run.inserted, run.rejected) == (9, 1, 8)
    with clean_db.connect() as connection:
        rows = connection.execute(text("SELECT field, reason, raw FROM rejected_readings ORDER BY id")).all()
    by_reason = sorted((field, reason) for field, reason, _ in rows)
    for _, want_field, want_reason in cases:
        assert any(field == want_field and want_reason in reason for field, reason in by_reason), (
            want_field,
            want_reason,
        )
    assert all(raw.startswith("{") for _, _, raw in rows)
    with clean_db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM meters WHERE muid = :m"), {"m": unknown}).scalar() == 0


def test_health_and_reflection_answer(address: str) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "meterdata.v1.IngestService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"meterdata.v1.IngestService", "grpc.health.v1.Health"} <= services


def test_sigterm_drains_and_exits_cleanly(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topology = Topology.on_free_ports(database_url, tmp_path)
    topology.start(["ingest"])
    assert topology.processes["ingest"].stop(timeout=15) == 0
    assert "stopped" in (tmp_path / "ingest.log").read_text()


def column_batches(total: int, block: int) -> Iterator[ingest_pb2.WriteReadingsRequest]:
    per_meter = total // len(STREAM_METERS)
    first = True
    for m, muid in enumerate(STREAM_METERS):
        for begin in range(0, per_meter, block):
            steps = range(begin, min(begin + block, per_meter))
            columns = ingest_pb2.ReadingColumns(
                muid=muid, obis="0100021D00FF", quality="measured", measurement="energy",
                ts_seconds=[int(START.timestamp()) + 900 * s for s in steps], values=[synthetic_value(m, s) for s in steps],
            )  # fmt: skip
            yield ingest_pb2.WriteReadingsRequest(columns=[columns], register_unknown_meters=first)
            first = False


@pytest.mark.heavy
def test_100k_readings_as_columns_land_exactly_once(stub, clean_db) -> None:  # type: ignore[no-untyped-def]
    total = 100_000
    started = time.perf_counter()
    run = stub.WriteReadings(column_batches(total, 5_000), timeout=300)
    seconds = time.perf_counter() - started
    print(f"\nstreamed {total:,} readings as columns in {seconds:.2f} s: {total / seconds:,.0f} rows/s")
    assert (run.received, run.inserted, run.rejected) == (total, total, 0)
    per_meter = total // len(STREAM_METERS)
    expected = {
        muid: math.fsum(synthetic_value(m, s) for s in range(per_meter)) for m, muid in enumerate(STREAM_METERS)
    }
    with clean_db.connect() as connection:
        stored = dict(connection.execute(text("SELECT muid::text, sum(value) FROM readings GROUP BY muid")).all())
        first_last = connection.execute(text("SELECT min(ts), max(ts), count(DISTINCT ts) FROM readings")).one()
    assert stored.keys() == expected.keys()
    assert all(stored[m] == pytest.approx(expected[m], abs=1e-9) for m in expected)
    assert first_last == (START, START + timedelta(minutes=15 * (per_meter - 1)), per_meter)
    assert assert_rollup_exact(clean_db) == total // 4


def test_column_rows_are_checked_like_readings(stub, clean_db) -> None:  # type: ignore[no-untyped-def]
    base = int(START.timestamp())
    columns = [
        ingest_pb2.ReadingColumns(
            muid=STREAM_METERS[1], obis="0100011D00FF", quality="measured", measurement="energy",
            ts_seconds=[base, base + 900, base + 60, base + 1800, base + 2700, base + 900, base + 3600],
            values=[0.1, 0.2, 0.3, math.nan, -1.0, 0.4, 1e9],
        ),
        ingest_pb2.ReadingColumns(muid=STREAM_METERS[1], obis="0100011D00FF", ts_seconds=[base, base + 4500], values=[0.9, 0.5]),
        ingest_pb2.ReadingColumns(muid=STREAM_METERS[1], obis="0100011D00FF", ts_seconds=[base], values=[0.1, 0.2]),
        ingest_pb2.ReadingColumns(muid="nope", obis="0100011D00FF", ts_seconds=[base], values=[0.1]),
        ingest_pb2.ReadingColumns(muid=STREAM_METERS[1], obis="BAD", ts_seconds=[base], values=[0.1]),
    ]  # fmt: skip
    run = stub.WriteReadings(
        iter([ingest_pb2.WriteReadingsRequest(columns=columns, register_unknown_meters=True)]), timeout=30
    )
    # kept: base (0.1), base+900 (0.2), base+4500 (0.5); rejected: 5 in block 0, 1 cross-block duplicate, 1 + 1 + 1
    assert (run.received, run.inserted, run.rejected) == (7 + 2 + 1 + 1 + 1, 3, 9)
    with clean_db.connect() as connection:
        rows = connection.execute(
            text("SELECT position, field, reason FROM rejected_readings ORDER BY position, id")
        ).all()
        values = connection.execute(text("SELECT value FROM readings ORDER BY ts")).scalars().all()
    assert values == [0.1, 0.2, 0.5]
    found = {(position, field) for position, field, _ in rows}
    assert {(2, "columns[0].ts_seconds"), (3, "columns[0].values"), (4, "columns[0].values"),
            (5, "columns[0].ts_seconds"), (6, "columns[0].values"), (9, "columns[2].values"),
            (10, "columns[3].muid"), (11, "columns[4].obis"), (-1, "ts")} == found  # fmt: skip


def test_a_batch_continuing_an_hour_merges_into_its_rollup(stub, clean_db) -> None:  # type: ignore[no-untyped-def]
    """The second message's first hour is already in the rollup (the first message began it): its COPY
    into the rollup fails on that hour, and the rows are merged instead of lost or doubled."""
    values = [0.25, 0.5, 0.125, 1.0, 2.0]  # exactly representable: sums compare exactly

    def message(steps: range, register: bool) -> ingest_pb2.WriteReadingsRequest:
        readings = [
            Reading(muid=STREAM_METERS[0], obis="0100011D00FF", ts=to_timestamp(START + timedelta(minutes=15 * s)),
                    value=values[s], quality="measured", measurement="energy")
            for s in steps
        ]  # fmt: skip
        return ingest_pb2.WriteReadingsRequest(readings=readings, register_unknown_meters=register)

    run = stub.WriteReadings(iter([message(range(0, 2), True), message(range(2, 5), False)]), timeout=30)
    assert (run.inserted, run.updated) == (5, 0)
    assert assert_rollup_exact(clean_db) == 2
    with clean_db.connect() as connection:
        hours = connection.execute(
            text("SELECT value_sum, value_min, value_max, reading_count FROM readings_hourly ORDER BY hour")
        ).all()
        fleet = connection.execute(text("SELECT value_sum, reading_count FROM fleet_hourly ORDER BY hour")).all()
    assert [tuple(h) for h in hours] == [(1.875, 0.125, 1.0, 4), (2.0, 2.0, 2.0, 1)]
    assert [tuple(f) for f in fleet] == [(1.875, 4), (2.0, 1)]
