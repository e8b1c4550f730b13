"""Per-record validation: every record becomes a valid reading or a rejection that says why.

JSON records from the upstream and protobuf readings from producers go through the same
`check_reading`, so the rules are one: muid a UUID, timestamp with a zone on the 15-minute grid,
a known OBIS code, a finite value >= 0 and below the ceiling, measurement and quality strings.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from meterdata.obis import is_obis_key, lookup

GRID_SECONDS = 15 * 60
RECORD_KEYS = {"measurement", "timestamp", "tags"}


@dataclass(frozen=True)
class ValidReading:
    muid: str
    obis: str
    ts: datetime
    value: float
    quality: str
    measurement: str

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.muid, self.obis, self.ts)


@dataclass(frozen=True)
class Rejection:
    position: int
    raw: str
    field: str
    reason: str
    muid: str | None = None


class RecordError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def raw_text(record: Any) -> str:
    """The record as received, for rejected_readings (NaN and Infinity kept as the JSON extensions)."""
    if isinstance(record, Message):
        return json_format.MessageToJson(record, indent=None, preserving_proto_field_name=True)
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=True, default=str)
    except (TypeError, ValueError):
        return repr(record)


@dataclass(frozen=True)
class FieldNames:
    """How the fields are called in the input, so a rejection names the field the sender wrote."""

    muid: str
    timestamp: str
    quality: str
    measurement: str
    obis: str | None  # None: the OBIS code is itself the key of the value
    value: str | None


JSON_FIELDS = FieldNames("tags.muid", "timestamp", "tags.quality", "measurement", None, None)
PROTO_FIELDS = FieldNames("muid", "ts", "quality", "measurement", "obis", "value")


def parse_muid(value: Any, field: str = "tags.muid") -> str:
    if not isinstance(value, str):
        raise RecordError(field, f"must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise RecordError(field, f"{value!r} is not a UUID") from None


def parse_timestamp(value: Any, field: str = "timestamp") -> datetime:
    if not isinstance(value, str):
        raise RecordError(field, f"must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise RecordError(field, f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise RecordError(field, f"{value!r} has no time zone (expected e.g. 'Z' or '+01:00')")
    return parsed.astimezone(UTC)


def check_reading(
    muid: Any,
    obis: str,
    ts: Any,
    value: Any,
    quality: Any,
    measurement: Any,
    ceiling: float,
    names: FieldNames = JSON_FIELDS,
) -> ValidReading:
    """Validate one reading's fields; raises RecordError naming the first offending field."""
    muid = parse_muid(muid, names.muid)
    if not isinstance(ts, datetime):
        ts = parse_timestamp(ts, names.timestamp)
    elif ts.tzinfo is None:
        raise RecordError(names.timestamp, "has no time zone")
    if ts.timestamp() % GRID_SECONDS != 0:
        raise RecordError(names.timestamp, f"{ts.isoformat()} is not on the 15-minute grid")
    code = lookup(obis)
    if code is None:
        raise RecordError(names.obis or obis or "obis", f"unknown OBIS code {obis!r}")
    value_field = names.value or obis
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(value_field, f"value must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise RecordError(value_field, f"value must be finite, got {value}")
    if value < 0:
        raise RecordError(value_field, f"value must be >= 0 {code.unit}, got {value}")
    if value > ceiling:
        raise RecordError(
            value_field, f"value {value} exceeds the plausible maximum of {ceiling} {code.unit} per quarter-hour"
        )
    if not isinstance(quality, str):
        raise RecordError(names.quality, f"must be a string, got {type(quality).__name__}")
    if not isinstance(measurement, str):
        raise RecordError(names.measurement, f"must be a string, got {type(measurement).__name__}")
    return ValidReading(muid, code.code, ts.astimezone(UTC), value, quality, measurement)


def parse_record(record: Any, ceiling: float, expected_muid: str | None = None) -> list[ValidReading]:
    """The readings of one upstream JSON record (one per OBIS key it carries)."""
    if not isinstance(record, dict):
        raise RecordError("record", f"must be a JSON object, got {type(record).__name__}")
    for key in ("measurement", "timestamp", "tags"):
        if key not in record:
            raise RecordError(key, "is missing")
    tags = record["tags"]
    if not isinstance(tags, dict):
        raise RecordError("tags", f"must be an object, got {type(tags).__name__}")
    if "muid" not in tags:
        raise RecordError("tags.muid", "is missing")
    muid = parse_muid(tags["muid"])
    if expected_muid is not None and muid != expected_muid:
        raise RecordError("tags.muid", f"{muid} does not match the requested meter {expected_muid}")
    value_keys = [key for key in record if key not in RECORD_KEYS]
    if not value_keys:
        raise RecordError("value", "the record carries no OBIS value key")
    spelled: dict[str, str] = {}
    for key in value_keys:
        if not is_obis_key(key):
            raise RecordError(key, f"unexpected field {key!r} (neither a record field nor an OBIS code)")
        if key.upper() in spelled:  # one channel twice in one record: which value is meant?
            raise RecordError(key, f"the OBIS code {key.upper()} appears twice ({spelled[key.upper()]!r} and {key!r})")
        spelled[key.upper()] = key
    return [
        check_reading(
            muid, key, record["timestamp"], record[key], tags.get("quality", ""), record["measurement"], ceiling
        )
        for key in value_keys
    ]


@dataclass
class ColumnBlock:
    """One channel's valid readings with the same quality and measurement, as columns."""

    muid: str
    obis: str
    quality: str
    measurement: str
    ts: np.ndarray  # int64 Unix seconds of the period starts
    values: np.ndarray  # float64 kWh

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class BatchResult:
    readings: list[ValidReading]
    rejections: list[Rejection]
    blocks: list[ColumnBlock] = field(default_factory=list)

    def all_blocks(self) -> list[ColumnBlock]:
        """Everything valid in this batch as column blocks (row readings grouped, order kept)."""
        return blocks_from_readings(self.readings) + self.blocks

    @property
    def valid_count(self) -> int:
        return len(self.readings) + sum(len(block) for block in self.blocks)


def blocks_from_readings(readings: Sequence[ValidReading]) -> list[ColumnBlock]:
    return [
        ColumnBlock(
            muid,
            obis,
            quality,
            measurement,
            np.array([int(r.ts.timestamp()) for r in group], dtype=np.int64),
            np.array([r.value for r in group], dtype=np.float64),
        )
        for (muid, obis, quality, measurement), group in (
            (key, list(rows))
            for key, rows in itertools.groupby(readings, lambda r: (r.muid, r.obis, r.quality, r.measurement))
        )
    ]


def column_rows(timestamps: int, values: int) -> int:
    """The rows a column block counts for: one per timestamp; a block whose lengths differ is refused
    row by row, and counts at least one row even without timestamps, so it is never dropped unexplained."""
    return timestamps if timestamps == values else max(timestamps, 1)


def check_columns(
    muid: str, obis: str, ts: Sequence[int], values: Sequence[float], quality: str, measurement: str,
    ceiling: float, offset: int, prefix: str,
) -> tuple[ColumnBlock | None, list[Rejection]]:  # fmt: skip
    """Vectorised checks of a column block: the same rules as `check_reading`, row positions kept."""

    def raw(i: int) -> str:
        return raw_text({"muid": muid, "obis": obis, "ts_seconds": int(ts[i]), "value": float(values[i])})

    def reject_all(field_name: str, reason: str) -> tuple[None, list[Rejection]]:
        return None, [Rejection(offset + i, raw(i), field_name, reason, muid) for i in range(min(len(ts), len(values)))]

    if len(ts) != len(values):
        # Every row is refused (one per timestamp, at least one), so received = stored + rejected holds.
        reason = f"has {len(values)} values for {len(ts)} timestamps"
        return None, [Rejection(offset + i, raw_text({"muid": muid, "obis": obis, "ts_seconds": int(ts[i]) if i < len(ts) else None,
                                                      "value": float(values[i]) if i < len(values) else None}),
                                f"{prefix}.values", reason)
                      for i in range(column_rows(len(ts), len(values)))]  # fmt: skip
    try:
        muid = parse_muid(muid, f"{prefix}.muid")
    except RecordError as error:
        return reject_all(error.field, error.reason)
    code = lookup(obis)
    if code is None:
        return reject_all(f"{prefix}.obis", f"unknown OBIS code {obis!r}")
    stamps = np.asarray(ts, dtype=np.int64)
    amounts = np.asarray(values, dtype=np.float64)
    problems = [
        (stamps % GRID_SECONDS != 0, f"{prefix}.ts_seconds", "is not on the 15-minute grid"),
        (~np.isfinite(amounts), f"{prefix}.values", "value must be finite"),
        (amounts < 0, f"{prefix}.values", f"value must be >= 0 {code.unit}"),
        (
            amounts > ceiling,
            f"{prefix}.values",
            f"value exceeds the plausible maximum of {ceiling} {code.unit} per quarter-hour",
        ),
    ]
    bad = np.zeros(len(stamps), dtype=bool)
    rejections: list[Rejection] = []
    for mask, field_name, reason in problems:
        new = mask & ~bad
        rejections += [Rejection(offset + int(i), raw(int(i)), field_name, reason, muid) for i in np.flatnonzero(new)]
        bad |= new
    _, first = np.unique(stamps, return_index=True)
    duplicate = np.ones(len(stamps), dtype=bool)
    duplicate[first] = False
    new = duplicate & ~bad
    rejections += [Rejection(offset + int(i), raw(int(i)), f"{prefix}.ts_seconds", "duplicate timestamp in the block", muid)
                   for i in np.flatnonzero(new)]  # fmt: skip
    bad |= new
    keep = ~bad
    block = ColumnBlock(muid, code.code, quality, measurement, stamps[keep], amounts[keep]) if keep.any() else None
    return block, sorted(rejections, key=lambda r: r.position)


def drop_cross_block_duplicates(blocks: list[ColumnBlock]) -> tuple[list[ColumnBlock], list[Rejection]]:
    """A key may appear once per batch (the upsert needs it): later blocks lose what earlier ones hold."""
    seen: dict[tuple[str, str], np.ndarray] = {}
    kept: list[ColumnBlock] = []
    rejections: list[Rejection] = []
    for block in blocks:
        key = (block.muid, block.obis)
        if key in seen:
            repeated = np.isin(block.ts, seen[key])
            for i in np.flatnonzero(repeated):
                record = {
                    "muid": block.muid,
                    "obis": block.obis,
                    "ts_seconds": int(block.ts[i]),
                    "value": float(block.values[i]),
                }
                rejections.append(
                    Rejection(
                        -1, raw_text(record), "ts", "duplicate of a reading earlier in the same batch", block.muid
                    )
                )
            block = ColumnBlock(
                block.muid, block.obis, block.quality, block.measurement, block.ts[~repeated], block.values[~repeated]
            )
            seen[key] = np.concatenate([seen[key], block.ts])
        else:
            seen[key] = block.ts
        if len(block):
            kept.append(block)
    return kept, rejections


class BatchValidator:
    """Collects a batch's valid readings and rejections; a repeated key is rejected, the first kept."""

    def __init__(self, timestamp_field: str = "timestamp") -> None:
        self.result = BatchResult([], [])
        self._first_seen: dict[tuple[str, str, datetime], int] = {}
        self._timestamp_field = timestamp_field

    def reject(self, position: int, raw: Any, field: str, reason: str, muid: Any = None) -> None:
        text = raw if isinstance(raw, str) else raw_text(raw)
        self.result.rejections.append(Rejection(position, text, field, reason, muid if isinstance(muid, str) else None))

    def accept(self, position: int, raw: Any, readings: list[ValidReading]) -> None:
        duplicate = next((self._first_seen[r.key] for r in readings if r.key in self._first_seen), None)
        if duplicate is not None:
            reason = f"duplicate of the record at position {duplicate} (same meter, channel and time)"
            self.reject(position, raw, self._timestamp_field, reason, readings[0].muid)
            return
        for reading in readings:
            self._first_seen[reading.key] = position
        self.result.readings.extend(readings)


def validate_records(records: list[Any], ceiling: float, expected_muid: str | None, offset: int = 0) -> BatchResult:
    """Split an upstream payload into valid readings and explained rejections."""
    batch = BatchValidator()
    for index, record in enumerate(records):
        try:
            readings = parse_record(record, ceiling, expected_muid)
        except RecordError as error:
            muid = record.get("tags", {}).get("muid") if isinstance(record, dict) else None
            batch.reject(
                offset + index, raw_text(record), error.field, error.reason, muid
            )  # a string record stays JSON
            continue
        batch.accept(offset + index, record, readings)
    return batch.result
