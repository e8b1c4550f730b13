"""Protobuf messages -> JSON-ready dicts and CSV rows, with every time rendered in the request's zone."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from gateway.params import render
from meterdata.timeconv import from_timestamp
from meterdata.v1 import common_pb2, ingest_pb2

DIRECTIONS = {common_pb2.DIRECTION_IMPORT: "import", common_pb2.DIRECTION_EXPORT: "export"}
INTERVALS = {
    "15min": common_pb2.INTERVAL_QUARTER_HOUR,
    "hour": common_pb2.INTERVAL_HOUR,
    "day": common_pb2.INTERVAL_DAY,
    "week": common_pb2.INTERVAL_WEEK,
    "month": common_pb2.INTERVAL_MONTH,
}
INTERVAL_NAMES = {value: key for key, value in INTERVALS.items()}
AGGREGATIONS = {
    "sum": common_pb2.AGGREGATION_SUM,
    "mean": common_pb2.AGGREGATION_MEAN,
    "min": common_pb2.AGGREGATION_MIN,
    "max": common_pb2.AGGREGATION_MAX,
    "count": common_pb2.AGGREGATION_COUNT,
}
AGGREGATION_NAMES = {value: key for key, value in AGGREGATIONS.items()}
ORDERS = {"asc": common_pb2.SORT_ORDER_ASCENDING, "desc": common_pb2.SORT_ORDER_DESCENDING}
RUN_KINDS = {ingest_pb2.INGEST_RUN_KIND_PULL: "pull", ingest_pb2.INGEST_RUN_KIND_STREAM: "stream"}
RUN_STATUSES = {
    ingest_pb2.INGEST_RUN_STATUS_RUNNING: "running",
    ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED: "succeeded",
    ingest_pb2.INGEST_RUN_STATUS_FAILED: "failed",
}


def time_field(message: Any, field: str, zone: ZoneInfo) -> str | None:
    return render(from_timestamp(getattr(message, field)), zone) if message.HasField(field) else None


def channel_json(channel: common_pb2.Channel, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "obis": channel.obis,
        "obis_notation": channel.obis_notation,
        "name": channel.name,
        "direction": DIRECTIONS.get(channel.direction),
        "unit": channel.unit,
        "first_reading": time_field(channel, "first_reading", zone),
        "last_reading": time_field(channel, "last_reading", zone),
        "reading_count": channel.reading_count,
    }


def meter_json(meter: common_pb2.Meter, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "muid": meter.muid,
        "tenant": meter.tenant,
        "first_reading": time_field(meter, "first_reading", zone),
        "last_reading": time_field(meter, "last_reading", zone),
        "reading_count": meter.reading_count,
        "channels": [channel_json(c, zone) for c in meter.channels],
    }


METER_CSV_HEADER = [
    "muid",
    "tenant",
    "obis",
    "obis_notation",
    "name",
    "direction",
    "unit",
    "first_reading",
    "last_reading",
    "reading_count",
]


def meter_csv_rows(meter: common_pb2.Meter, zone: ZoneInfo) -> list[list[Any]]:
    """One row per channel: a meter without channels is one row with empty channel columns."""
    channels = [channel_json(c, zone) for c in meter.channels] or [dict.fromkeys(METER_CSV_HEADER[2:], "")]
    return [[meter.muid, meter.tenant, *(c[key] for key in METER_CSV_HEADER[2:])] for c in channels]


def reading_json(reading: common_pb2.Reading, zone: ZoneInfo) -> dict[str, Any]:
    return {"ts": render(from_timestamp(reading.ts), zone), "value": reading.value, "quality": reading.quality}


def bucket_json(bucket: common_pb2.Bucket, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "start": render(from_timestamp(bucket.start), zone),
        "end": render(from_timestamp(bucket.end), zone),
        "value": bucket.value if bucket.HasField("value") else None,
        "count": bucket.count,
        "expected": bucket.expected,
    }


def series_json(series: Any, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "muid": series.muid,
        "obis": series.obis,
        "unit": series.unit,
        "interval": INTERVAL_NAMES.get(series.interval),
        "aggregation": AGGREGATION_NAMES.get(series.aggregation),
        "time_zone": series.time_zone,
        "start": time_field(series, "start", zone),
        "end": time_field(series, "end", zone),
        "buckets": [bucket_json(b, zone) for b in series.buckets],
    }


RUN_FIELDS = ["id", "kind", "status", "source", "muids", "started_at", "finished_at"]
RUN_COUNTS = ["received", "inserted", "updated", "unchanged", "rejected"]
RUN_CSV_HEADER = [*RUN_FIELDS, *RUN_COUNTS, "error"]


def run_json(run: ingest_pb2.IngestRun, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": RUN_KINDS.get(run.kind),
        "status": RUN_STATUSES.get(run.status),
        "source": run.source,
        "muids": list(run.muids),
        "started_at": time_field(run, "started_at", zone),
        "finished_at": time_field(run, "finished_at", zone),
        **{name: getattr(run, name) for name in RUN_COUNTS},
        "error": run.error,
    }


def run_csv_row(run: ingest_pb2.IngestRun, zone: ZoneInfo) -> list[Any]:
    values = run_json(run, zone)
    values["muids"] = " ".join(values["muids"])
    return [values[name] for name in RUN_CSV_HEADER]
