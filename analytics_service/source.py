"""Where the analytics get their data: the query service over gRPC (the analytics service holds no SQL).

A channel is resolved with GetMeter (which OBIS code, which unit), then its raw quarter-hours are read
with ListReadings, keyset page by keyset page. Every call carries a deadline; errors of the query
service come back as the same domain errors, with field names prefixed by the request field
(`channel.muid`, `import_channel.start`, ...). Every call forwards the tenant of the analytics call
(`metadata`), so the query service scopes the data exactly as it would for the original caller.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import grpc
import numpy as np
import pandas as pd

from analytics_service.timeseries import expected_quarter_hours
from meterdata.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from meterdata.grpc_client import field_violations
from meterdata.obis import is_obis_key
from meterdata.timeconv import optional_from_timestamp
from meterdata.v1 import common_pb2, query_pb2, query_pb2_grpc

PAGE_SIZE = 10_000
Metadata = tuple[tuple[str, str], ...]
OBIS_NOTATION = re.compile(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}(\*\d{1,3})?")


@dataclass(frozen=True)
class ChannelData:
    muid: str
    obis: str
    unit: str
    series: pd.Series  # kWh per quarter-hour on a UTC index of period starts
    start: pd.Timestamp  # the range analysed: the request's bounds, else the data's
    end: pd.Timestamp
    expected: int  # quarter-hours in [start, end)


def _translate(error: grpc.aio.AioRpcError, field: str) -> DomainError:
    """The query service's status as a domain error of this service, fields prefixed by ours."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = field_violations(error)
        name, description = violations[0] if violations else ("", details)
        return InvalidArgument(f"{field}.{name}" if name else field, description)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("the query service did not answer in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"the query service is unavailable: {details}")
    return DomainError(f"the query service failed with {code.name}")


def _timestamps_ns(readings: list[common_pb2.Reading]) -> np.ndarray:
    return np.fromiter(
        (r.ts.seconds * 1_000_000_000 + r.ts.nanos for r in readings), dtype="int64", count=len(readings)
    )


def validate_range(channel: common_pb2.ChannelRange, field: str) -> tuple[datetime | None, datetime | None]:
    """Check what can be checked without the data: a UUID and start before end."""
    if not channel.muid:
        raise InvalidArgument(f"{field}.muid", "required")
    try:
        uuid.UUID(channel.muid)
    except ValueError as exc:
        raise InvalidArgument(f"{field}.muid", f"not a UUID: {channel.muid!r}") from exc
    start = optional_from_timestamp(channel, "start")
    end = optional_from_timestamp(channel, "end")
    if start is not None and end is not None and start >= end:
        raise InvalidArgument(f"{field}.end", f"must be after start ({start.isoformat()}), got {end.isoformat()}")
    return start, end


def resolve_channel(meter: common_pb2.Meter, obis: str, field: str) -> common_pb2.Channel:
    """The channel named by its hex code or its notation, or the meter's only channel when none is named."""
    codes = ", ".join(c.obis for c in meter.channels) or "none"
    wanted = obis.strip()
    if not wanted:
        if len(meter.channels) != 1:
            raise InvalidArgument(
                f"{field}.obis", f"meter {meter.muid} has {len(meter.channels)} channels ({codes}); name one"
            )
        return meter.channels[0]
    if not (is_obis_key(wanted) or OBIS_NOTATION.fullmatch(wanted)):
        raise InvalidArgument(
            f"{field}.obis", f"not an OBIS code: {wanted!r} (hex like 0100011D00FF or notation like 1-0:1.29.0*255)"
        )
    for candidate in meter.channels:
        if wanted.upper() == candidate.obis or wanted == candidate.obis_notation:
            return candidate
    raise NotFound(f"meter {meter.muid} has no channel {wanted}; its channels: {codes}")


class SeriesSource:
    """Reads channels from the query service through one long-lived channel."""

    def __init__(self, stub: query_pb2_grpc.QueryServiceStub, deadline_seconds: float) -> None:
        self.stub = stub
        self.deadline_seconds = deadline_seconds

    async def meter(self, muid: str, field: str, timeout: float, metadata: Metadata) -> common_pb2.Meter:
        try:
            return await self.stub.GetMeter(query_pb2.GetMeterRequest(muid=muid), timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise _translate(error, field) from error

    async def channel_data(
        self,
        channel: common_pb2.ChannelRange,
        field: str = "channel",
        timeout: float | None = None,
        *,
        metadata: Metadata,
    ) -> ChannelData:
        """The channel's quarter-hours in its range; FAILED_PRECONDITION when there are none.

        `metadata` names the tenant (`meterdata.tenancy.tenant_metadata`); it is required, so that no
        caller can forget it."""
        timeout = min(self.deadline_seconds, timeout) if timeout else self.deadline_seconds
        start, end = validate_range(channel, field)
        meter = await self.meter(channel.muid, field, timeout, metadata)
        found = resolve_channel(meter, channel.obis, field)
        obis, unit = found.obis, found.unit or "kWh"

        request = query_pb2.ListReadingsRequest(
            muid=channel.muid, obis=obis, order=common_pb2.SORT_ORDER_ASCENDING, page_size=PAGE_SIZE
        )
        if start is not None:
            request.start.CopyFrom(channel.start)
        if end is not None:
            request.end.CopyFrom(channel.end)
        stamps: list[np.ndarray] = []
        values: list[np.ndarray] = []
        while True:
            try:
                page = await self.stub.ListReadings(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                raise _translate(error, field) from error
            stamps.append(_timestamps_ns(page.readings))
            values.append(np.fromiter((r.value for r in page.readings), dtype=float, count=len(page.readings)))
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        index = pd.DatetimeIndex(pd.to_datetime(np.concatenate(stamps), unit="ns", utc=True), name="ts")
        series = pd.Series(np.concatenate(values), index=index, name="kwh").sort_index()
        if series.empty:
            bounds = f"from {start.isoformat() if start else 'the first reading'} to {end.isoformat() if end else 'the last'}"
            raise FailedPrecondition(f"meter {channel.muid} channel {obis} has no readings {bounds}; need at least 1")
        first = pd.Timestamp(start) if start else series.index[0]
        last = pd.Timestamp(end) if end else series.index[-1] + pd.Timedelta(minutes=15)
        return ChannelData(channel.muid, obis, unit, series, first, last, expected_quarter_hours(first, last))
