"""The query service's domain: validate a request, run it against the repository, shape the answer.

Blocking (sync SQLAlchemy); the gRPC servicer calls it through `asyncio.to_thread`. Validation that
needs no database comes first, so a malformed request is refused with INVALID_ARGUMENT before a
NOT_FOUND could hide the mistake.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from meterdata.db import session_scope
from meterdata.errors import InvalidArgument, NotFound
from meterdata.obis import hex_to_notation, lookup
from meterdata.settings import Settings
from query_service import paging, repository
from query_service.buckets import Bucket, Interval, bucket_around, parse_zone, plan_buckets
from query_service.paging import decode_token, encode_token, fingerprint

Aggregation = Literal["sum", "mean", "min", "max", "count"]
Direction = Literal["import", "export"]

METERS_PAGE_DEFAULT, METERS_PAGE_MAX = 100, 1000
READINGS_PAGE_DEFAULT = 1000
COUNT_UNIT = "readings"  # the unit of a series aggregated with `count`

# The widest instants PostgreSQL and Python share: an unset start/end of a reading page.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_OBIS_NOTATION = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\*(\d{1,3}))?")


@dataclass(frozen=True)
class ChannelInfo:
    obis: str
    notation: str
    name: str
    direction: Direction | None
    unit: str
    first_ts: datetime | None
    last_ts: datetime | None
    reading_count: int


@dataclass(frozen=True)
class MeterInfo:
    muid: str
    tenant: str
    channels: tuple[ChannelInfo, ...]

    @property
    def first_ts(self) -> datetime | None:
        return min((c.first_ts for c in self.channels if c.first_ts), default=None)

    @property
    def last_ts(self) -> datetime | None:
        return max((c.last_ts for c in self.channels if c.last_ts), default=None)

    @property
    def reading_count(self) -> int:
        return sum(c.reading_count for c in self.channels)


@dataclass(frozen=True)
class ReadingsPage:
    muid: str
    channel: ChannelInfo
    readings: list[repository.ReadingRow]
    next_page_token: str


@dataclass(frozen=True)
class SeriesBucket:
    start: datetime
    end: datetime
    value: float | None  # None when the bucket holds no reading
    count: int
    expected: int


@dataclass(frozen=True)
class SeriesResult:
    muid: str
    channel: ChannelInfo
    unit: str
    interval: Interval
    aggregation: Aggregation
    time_zone: str
    start: datetime | None
    end: datetime | None
    buckets: list[SeriesBucket]


def normalize_muid(muid: str) -> str:
    try:
        return str(uuid.UUID(muid.strip()))
    except (ValueError, AttributeError) as exc:
        raise InvalidArgument("muid", f"not a meter UUID: {muid!r}") from exc


def normalize_obis(obis: str) -> str:
    """Hex form of an OBIS code given as hex ('0100011D00FF') or notation ('1-0:1.29.0*255')."""
    obis = obis.strip()
    if match := _OBIS_NOTATION.fullmatch(obis):
        parts = [int(p) if p is not None else 255 for p in match.groups()]
        if all(p <= 255 for p in parts):
            return "".join(f"{p:02X}" for p in parts)
    if len(obis) == 12 and all(ch in "0123456789abcdefABCDEF" for ch in obis):
        return obis.upper()
    raise InvalidArgument("obis", f"not an OBIS code: {obis!r} (hex like 0100011D00FF or notation like 1-0:1.29.0*255)")


def channel_info(row: repository.ChannelRow) -> ChannelInfo:
    known = lookup(row.obis)
    try:
        notation = hex_to_notation(row.obis)
    except ValueError:
        notation = row.obis
    return ChannelInfo(
        obis=row.obis,
        notation=notation,
        name=known.name if known else f"OBIS {notation}",
        direction=known.direction if known else None,
        unit=known.unit if known else "",
        first_ts=row.first_ts,
        last_ts=row.last_ts,
        reading_count=row.reading_count,
    )


def meter_info(row: repository.MeterRow) -> MeterInfo:
    return MeterInfo(row.muid, row.tenant, tuple(channel_info(c) for c in row.channels))


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise InvalidArgument(
            "end", f"must be after start (start {start.isoformat()} is inclusive, end {end.isoformat()} exclusive)"
        )


class Queries:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def list_meters(self, tenant: str, page_size: int, page_token: str) -> tuple[list[MeterInfo], str]:
        limit = paging.page_size(page_size, METERS_PAGE_DEFAULT, METERS_PAGE_MAX)
        query = fingerprint("meters", tenant)
        after = decode_token(page_token, query)
        with session_scope(self.engine) as connection:
            rows = repository.list_meters(connection, tenant, after, limit + 1)
        meters = [meter_info(r) for r in rows[:limit]]
        next_token = encode_token(query, meters[-1].muid) if len(rows) > limit else ""
        return meters, next_token

    def get_meter(self, tenant: str, muid: str) -> MeterInfo:
        muid = normalize_muid(muid)
        with session_scope(self.engine) as connection:
            return self._meter(connection, tenant, muid)

    def _meter(self, connection: Connection, tenant: str, muid: str) -> MeterInfo:
        """The tenant's meter; another tenant's meter is NOT_FOUND with the same words as a missing one."""
        row = repository.get_meter(connection, tenant, muid)
        if row is None:
            raise NotFound(f"no meter {muid}", "muid")
        return meter_info(row)

    def _channel(self, meter: MeterInfo, obis: str) -> ChannelInfo:
        """The channel named by `obis`, or the meter's only channel when `obis` is empty."""
        codes = ", ".join(c.obis for c in meter.channels) or "none"
        if not obis:
            if len(meter.channels) == 1:
                return meter.channels[0]
            if not meter.channels:
                raise NotFound(f"meter {meter.muid} has no channels yet", "muid")
            raise InvalidArgument("obis", f"meter {meter.muid} has {len(meter.channels)} channels, name one: {codes}")
        for channel in meter.channels:
            if channel.obis == obis:
                return channel
        raise NotFound(f"meter {meter.muid} has no channel {obis} (its channels: {codes})", "obis")

    def list_readings(
        self,
        *,
        tenant: str,
        muid: str,
        obis: str,
        start: datetime | None,
        end: datetime | None,
        descending: bool,
        page_size: int,
        page_token: str,
    ) -> ReadingsPage:
        muid = normalize_muid(muid)
        obis = normalize_obis(obis) if obis.strip() else ""
        check_range(start, end)
        limit = paging.page_size(page_size, READINGS_PAGE_DEFAULT, self.settings.max_page_size)
        query = fingerprint("readings", tenant, muid, obis, start, end, descending)
        cursor = decode_token(page_token, query)
        try:
            after = datetime.fromisoformat(cursor) if cursor is not None else None
        except ValueError as exc:
            raise InvalidArgument("page_token", "not a page token issued by this service") from exc
        with session_scope(self.engine) as connection:
            channel = self._channel(self._meter(connection, tenant, muid), obis)
            rows = repository.list_readings(
                connection,
                tenant=tenant,
                muid=muid,
                obis=channel.obis,
                start=start or _EARLIEST,
                end=end or _LATEST,
                after=after,
                descending=descending,
                limit=limit + 1,
            )
        page = rows[:limit]
        next_token = encode_token(query, page[-1].ts.astimezone(UTC).isoformat()) if len(rows) > limit else ""
        return ReadingsPage(muid, channel, page, next_token)

    def series(
        self,
        *,
        tenant: str,
        muid: str,
        obis: str,
        start: datetime | None,
        end: datetime | None,
        interval: Interval,
        aggregation: Aggregation,
        time_zone: str,
    ) -> SeriesResult:
        """Buckets of `[start, end)` in local time; an unset bound is widened to whole buckets around the data."""
        muid = normalize_muid(muid)
        obis = normalize_obis(obis) if obis.strip() else ""
        zone_name = time_zone or self.settings.default_time_zone
        zone = parse_zone(zone_name)
        check_range(start, end)
        with session_scope(self.engine) as connection:
            channel = self._channel(self._meter(connection, tenant, muid), obis)
            if start is None and channel.first_ts is not None:
                start = bucket_around(channel.first_ts, interval, zone).start
            if end is None and channel.last_ts is not None:
                end = bucket_around(channel.last_ts, interval, zone).end
                if start is not None and end < start:  # a given start after the data: an empty range there
                    end = start
            plan: list[Bucket] = []
            rows: list[repository.AggregateRow] = []
            if start is not None and end is not None and start < end:
                plan = plan_buckets(start, end, interval, zone, self.settings.max_series_buckets)
                bounds = [b.start for b in plan] + [end]
                # An hour or longer cut at whole UTC hours is served from the hourly rollup: its cost
                # follows the hours asked for, not the readings stored.
                hourly = interval != Interval.QUARTER_HOUR and all(whole_hour(b) for b in bounds)
                rows = repository.series_aggregates(
                    connection, tenant=tenant, muid=muid, obis=channel.obis, bounds=bounds, hourly=hourly
                )
        unit = COUNT_UNIT if aggregation == "count" else channel.unit
        return SeriesResult(
            muid, channel, unit, interval, aggregation, zone_name, start, end, _fill(plan, rows, aggregation)
        )

    def fleet_series(
        self,
        *,
        tenant: str,
        obis: str,
        start: datetime | None,
        end: datetime | None,
        interval: Interval,
        aggregation: Aggregation,
        time_zone: str,
    ) -> SeriesResult:
        """One channel summed over all meters of `tenant`, from the fleet rollup."""
        if not obis.strip():
            raise InvalidArgument("obis", "is required for a fleet series")
        obis = normalize_obis(obis)
        code = lookup(obis)
        if code is None:
            raise InvalidArgument("obis", f"unknown OBIS code {obis!r}")
        if interval == Interval.QUARTER_HOUR:
            raise InvalidArgument("interval", "a fleet series is kept per hour: use hour, day, week or month")
        if aggregation in ("min", "max"):
            raise InvalidArgument("aggregation", "a fleet series offers sum, mean and count (extremes are not kept)")
        zone_name = time_zone or self.settings.default_time_zone
        zone = parse_zone(zone_name)
        check_range(start, end)
        for name, bound in (("start", start), ("end", end)):
            if bound is not None and not whole_hour(bound):
                raise InvalidArgument(name, "a fleet series starts and ends on whole hours")
        with session_scope(self.engine) as connection:
            first, last = repository.fleet_range(connection, tenant=tenant, obis=code.code)
            if start is None and first is not None:
                start = bucket_around(first, interval, zone).start
            if end is None and last is not None:
                end = max(bucket_around(last, interval, zone).end, start or last)
            plan: list[Bucket] = []
            rows: list[repository.AggregateRow] = []
            if start is not None and end is not None and start < end:
                plan = plan_buckets(start, end, interval, zone, self.settings.max_series_buckets)
                bounds = [b.start for b in plan] + [end]
                if not all(whole_hour(b) for b in bounds):
                    raise InvalidArgument(
                        "time_zone",
                        f"{zone_name} cuts buckets inside UTC hours; a fleet series needs whole-hour offsets",
                    )
                rows = repository.fleet_aggregates(connection, tenant=tenant, obis=code.code, bounds=bounds)
        channel = ChannelInfo(
            code.code, code.notation, code.name, code.direction, code.unit, first, last, sum(r.count for r in rows)
        )
        unit = COUNT_UNIT if aggregation == "count" else code.unit
        return SeriesResult(
            "", channel, unit, interval, aggregation, zone_name, start, end, _fill(plan, rows, aggregation)
        )


def whole_hour(instant: datetime) -> bool:
    utc = instant.astimezone(UTC)
    return utc.minute == 0 and utc.second == 0 and utc.microsecond == 0


def _fill(plan: list[Bucket], rows: list[repository.AggregateRow], aggregation: Aggregation) -> list[SeriesBucket]:
    """Every planned bucket, empty ones included (count 0, value None)."""
    found = {row.index: row for row in rows}
    buckets = []
    for number, bucket in enumerate(plan, start=1):
        row = found.get(number)
        value = None if row is None else float(row.count) if aggregation == "count" else getattr(row, aggregation)
        buckets.append(SeriesBucket(bucket.start, bucket.end, value, row.count if row else 0, bucket.expected))
    return buckets
