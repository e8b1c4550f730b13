"""Property tests (Hypothesis) of the ingest path: for any input, nothing is lost without a reason.

- The upstream payload parser and the record validation: any bytes are a list of records or an
  UpstreamError; any list of records splits into valid readings and rejections, one per refused record,
  each with its field and reason, and every valid reading obeys the rules.
- The streaming RPC against the real ingest service and PostgreSQL: for any stream, the run's
  received = inserted + updated + unchanged + rejected, and every rejected record is stored in
  rejected_readings with its reason.

Examples are bounded so the file runs in seconds; under CI (CI=true) the examples are derandomized, so a
CI run is repeatable, while a developer's run explores new ones.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from ingest_service.upstream import UpstreamError, parse_payload
from ingest_service.validation import validate_records
from meterdata.grpc_client import sync_channel
from meterdata.obis import OBIS_CATALOGUE
from meterdata.runner import Topology
from meterdata.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc
from tests.reliability_helpers import TENANT

CEILING = 1000.0
MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"
GRID_START = int(datetime(2023, 2, 1, tzinfo=UTC).timestamp())
IN_CI = bool(os.environ.get("CI"))
PARSER_EXAMPLES = 300
STREAM_EXAMPLES = 60

parser_settings = settings(max_examples=PARSER_EXAMPLES, deadline=None, database=None, derandomize=IN_CI)
stream_settings = settings(
    max_examples=STREAM_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------------
json_scalars = (
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
grid_stamps = st.integers(0, 300).map(lambda k: GRID_START + 900 * k)
stamps = grid_stamps | st.integers(GRID_START - 10**6, GRID_START + 10**6)  # mostly on the grid, some not
obis_keys = st.sampled_from([*OBIS_CATALOGUE, "0100011d00ff", "0100991D00FF", "01000B1D00FF"])
values = (
    st.floats(0, CEILING)
    | st.integers(0, 5)
    | st.sampled_from([-0.5, CEILING * 2, math.inf, -math.inf, math.nan, "0.5", None, True])
)


def iso(seconds: int, style: int) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return [
        moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        moment.isoformat(),
        moment.astimezone().isoformat(),  # the test's own zone (America/New_York): same instant
        moment.strftime("%Y-%m-%dT%H:%M:%S"),  # no zone: refused
        moment.strftime("%d/%m/%Y %H:%M"),  # not ISO: refused
    ][style]


@st.composite
def records(draw: st.DrawFn) -> Any:
    """Upstream records: mostly of the published shape with a field broken now and then, some anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    record: dict[str, Any] = {
        "measurement": draw(st.sampled_from(["energy", "energy", "power"]) | json_scalars),
        "timestamp": iso(draw(stamps), draw(st.integers(0, 4))),
        "tags": {
            "muid": draw(st.sampled_from([MUID, MUID.upper(), str(uuid.UUID(int=5)), "nope"])),
            "quality": "measured",
        },
    }
    for key in draw(st.lists(obis_keys, min_size=0, max_size=2, unique=True)):
        record[key] = draw(values)
    for name in draw(st.lists(st.sampled_from(["measurement", "timestamp", "tags", "extra"]), max_size=1)):
        if name == "extra":
            record["comment"] = "x"
        else:
            del record[name]
    return record


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(records(), max_size=20).map(lambda rs: json.dumps({"data": rs}).encode()),
)


# -- the payload parser and the record validation ------------------------------------------------------
@parser_settings
@given(payloads)
def test_any_body_is_records_or_a_clear_upstream_error(body: bytes) -> None:
    try:
        data = parse_payload("http://upstream/x", body)
    except UpstreamError as error:
        assert str(error).startswith("http://upstream/x: ") and error.body == body
        assert "JSON" in str(error)
        return
    assert isinstance(data, list) and json.loads(body)["data"] == data


def reference_accepts(record: Any) -> bool:
    """The rules, restated independently: would this record be stored?"""
    if not isinstance(record, dict) or not {"measurement", "timestamp", "tags"} <= record.keys():
        return False
    tags, keys = record["tags"], [k for k in record if k not in ("measurement", "timestamp", "tags")]
    if (
        not isinstance(tags, dict)
        or not isinstance(tags.get("muid"), str)
        or not isinstance(record["measurement"], str)
    ):
        return False
    try:
        if str(uuid.UUID(tags["muid"])) != MUID:
            return False
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return False
    if stamp.tzinfo is None or stamp.timestamp() % 900 or not keys or len({k.upper() for k in keys}) < len(keys):
        return False
    for key in keys:
        value = record[key]
        if key.upper() not in OBIS_CATALOGUE or isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not (math.isfinite(value) and 0 <= value <= CEILING):
            return False
    return True


@parser_settings
@given(st.lists(records(), max_size=30), st.integers(0, 10_000))
def test_every_record_is_a_valid_reading_or_a_rejection_with_its_reason(batch: list[Any], offset: int) -> None:
    result = validate_records(batch, CEILING, MUID, offset=offset)
    rejected = {r.position: r for r in result.rejections}
    assert len(rejected) == len(result.rejections)  # at most one rejection per record
    expected_readings = 0
    for index, record in enumerate(batch):
        position, stored = offset + index, reference_accepts(record)
        if not stored:
            assert position in rejected, record
        if position in rejected:
            refusal = rejected[position]
            assert refusal.field and refusal.reason  # named, and kept as received
            assert refusal.raw == json.dumps(record, separators=(",", ":"), allow_nan=True)
            if stored:  # refused although valid: only as a repeat of an earlier record's key
                assert "duplicate" in refusal.reason, refusal
        else:
            expected_readings += len([k for k in record if k not in ("measurement", "timestamp", "tags")])
    assert len(result.readings) == expected_readings
    for reading in result.readings:  # what is stored obeys the rules
        assert reading.muid == MUID and reading.obis in OBIS_CATALOGUE and reading.ts.tzinfo == UTC
        assert reading.ts.timestamp() % 900 == 0 and 0 <= reading.value <= CEILING and math.isfinite(reading.value)
    assert len({r.key for r in result.readings}) == len(result.readings)  # no key twice


# -- the streaming RPC against the real service --------------------------------------------------------
STREAM_MUIDS = [str(uuid.UUID(int=(0x5EED << 64) | i, version=4)) for i in range(3)]
muids = st.sampled_from([*STREAM_MUIDS, STREAM_MUIDS[0].upper(), "not-a-uuid", str(uuid.UUID(int=99, version=4))])
stream_obis = st.sampled_from(["0100011D00FF", "0100021D00FF", "0100011d00ff", "1-0:1.29.0*255", "BAD", ""])
stream_values = st.floats(0, 2.0) | st.sampled_from([0.0, -1.0, 2 * CEILING, math.nan, math.inf])
small_grid = st.integers(0, 40).map(lambda k: GRID_START + 900 * k)
stream_stamps = small_grid | st.integers(GRID_START, GRID_START + 40 * 900)


@st.composite
def readings(draw: st.DrawFn) -> common_pb2.Reading:
    reading = common_pb2.Reading(
        muid=draw(muids), obis=draw(stream_obis), value=draw(stream_values),
        quality=draw(st.sampled_from(["measured", "estimated", ""])), measurement="energy",
    )  # fmt: skip
    if draw(st.integers(0, 9)):
        reading.ts.CopyFrom(Timestamp(seconds=draw(stream_stamps)))
    return reading


@st.composite
def column_blocks(draw: st.DrawFn) -> ingest_pb2.ReadingColumns:
    ts = draw(st.lists(stream_stamps, max_size=12))
    size = len(ts) if draw(st.integers(0, 5)) else draw(st.integers(0, 14))  # now and then a length mismatch
    return ingest_pb2.ReadingColumns(
        muid=draw(muids), obis=draw(stream_obis), ts_seconds=ts, values=draw(st.lists(stream_values, min_size=size, max_size=size)),
        quality="measured", measurement="energy",
    )  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> list[ingest_pb2.WriteReadingsRequest]:
    messages = draw(
        st.lists(
            st.builds(
                lambda r, c: ingest_pb2.WriteReadingsRequest(readings=r, columns=c),
                st.lists(readings(), max_size=8),
                st.lists(column_blocks(), max_size=3),
            ),
            min_size=1,
            max_size=4,
        )
    )
    messages[0].register_unknown_meters = draw(st.booleans())
    return messages


@pytest.fixture(scope="module")
def stream_stub(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("properties"), {"LOG_LEVEL": "WARNING"})
    topology.start(["ingest"])
    try:
        with sync_channel(topology.address("ingest")) as channel:
            yield ingest_pb2_grpc.IngestServiceStub(channel)
    finally:
        topology.stop()


def sent_rows(messages: list[ingest_pb2.WriteReadingsRequest]) -> int:
    """Rows a stream carries: each reading, and each timestamp of a column block (a block with no
    timestamp but values is one refused row)."""
    rows = 0
    for message in messages:
        rows += len(message.readings)
        for columns in message.columns:
            mismatch = len(columns.ts_seconds) != len(columns.values)
            rows += max(len(columns.ts_seconds), 1) if mismatch else len(columns.ts_seconds)
    return rows


@stream_settings
@given(messages=streams())
def test_any_stream_counts_add_up_and_every_rejection_is_stored_with_its_reason(
    stream_stub: ingest_pb2_grpc.IngestServiceStub, engine: Engine, messages: list[ingest_pb2.WriteReadingsRequest]
) -> None:
    try:
        run = stream_stub.WriteReadings(iter(messages), timeout=30, metadata=TENANT)
    except grpc.RpcError as error:  # a refused stream must be a client error naming why, never INTERNAL
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), error  # type: ignore[attr-defined]
        return
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED, run.error
    assert run.received == run.inserted + run.updated + run.unchanged + run.rejected
    assert run.received == sent_rows(messages)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT received, inserted, updated, unchanged, rejected FROM ingest_runs WHERE id = :r"),
            {"r": run.id},
        ).one()
        rejections = connection.execute(
            text("SELECT field, reason, raw FROM rejected_readings WHERE ingest_run_id = :r"), {"r": run.id}
        ).all()
        carrying = connection.execute(
            text("SELECT count(*) FROM readings WHERE ingest_run_id = :r"), {"r": run.id}
        ).scalar_one()
        revisions = connection.execute(
            text("SELECT count(*) FROM reading_revisions WHERE ingest_run_id = :r"), {"r": run.id}
        ).scalar_one()
    assert tuple(stored) == (run.received, run.inserted, run.updated, run.unchanged, run.rejected)
    assert len(rejections) == run.rejected
    assert all(field and reason and raw for field, reason, raw in rejections)
    # New rows carry this run; an update keeps the old value as a revision (a key updated twice in the
    # same stream is one row with two revisions).
    assert run.inserted <= carrying <= run.inserted + run.updated
    assert revisions == run.updated
