"""Conversions between protobuf Timestamps and aware datetimes (always UTC inside the services)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(value: datetime) -> Timestamp:
    if value.tzinfo is None:
        raise ValueError("naive datetime: every instant inside meterdata carries a zone")
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def optional_from_timestamp(message: object, field: str) -> datetime | None:
    """The datetime of a Timestamp field, or None when the field is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return from_timestamp(getattr(message, field))
