"""Local-time bucket boundaries for series: pure functions, no database.

PostgreSQL does the aggregation (see `repository.series_aggregates`); this module only decides where
buckets begin and end. The boundaries are computed with `zoneinfo` so that the rules are explicit
and testable, and so that one tz database (Python's `tzdata`) decides, not the server's:

- day, week (Monday) and month buckets run from local midnight to local midnight, so a day is 23 or
  25 hours long on DST days (92 or 100 quarter-hours);
- hour and quarter-hour buckets follow the local wall clock: on the autumn switch the repeated hour
  is two buckets (02:00+02:00 and 02:00+01:00), in zones with half-hour offsets an hour starts at :30 UTC;
- buckets partition the requested range `[start, end)`: a range that starts or ends inside a bucket
  clips it, and the clipped bucket's `expected` says how many quarter-hours it really spans.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterdata.errors import InvalidArgument

QUARTER_HOUR = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Interval(enum.Enum):
    QUARTER_HOUR = "15min"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


_SUB_DAY_STEP = {Interval.QUARTER_HOUR: QUARTER_HOUR, Interval.HOUR: timedelta(hours=1)}


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive

    @property
    def expected(self) -> int:
        """Quarter-hour periods (UTC :00/:15/:30/:45 starts) that fall inside the bucket."""
        return quarter_index_ceil(self.end) - quarter_index_ceil(self.start)


def quarter_index_ceil(instant: datetime) -> int:
    """Index of the first quarter-hour grid point at or after `instant`."""
    return math.ceil((instant - _EPOCH) / QUARTER_HOUR)


def quarter_floor(instant: datetime) -> datetime:
    return _EPOCH + QUARTER_HOUR * math.floor((instant - _EPOCH) / QUARTER_HOUR)


def parse_zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone called `name`; an unknown name is the client's error, naming the field."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidArgument(
            field, f"unknown time zone {name!r}: use an IANA name such as 'Europe/Zurich' or 'UTC'"
        ) from exc


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local calendar day.

    `fold=0` gives the earlier reading of an ambiguous wall time and, for a midnight that a DST
    jump skips, the offset from before the jump, which lands on the first instant that exists.
    """
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _calendar_floor(instant: datetime, interval: Interval, zone: ZoneInfo) -> date:
    local = instant.astimezone(zone).date()
    if interval is Interval.WEEK:
        return local - timedelta(days=local.weekday())
    if interval is Interval.MONTH:
        return local.replace(day=1)
    return local


def _calendar_next(day: date, interval: Interval) -> date:
    if interval is Interval.DAY:
        return day + timedelta(days=1)
    if interval is Interval.WEEK:
        return day + timedelta(days=7)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _wall_key(instant: datetime, step: timedelta, zone: ZoneInfo) -> datetime:
    """The local wall-clock bucket of a grid instant, as the UTC instant it starts at its own offset."""
    offset = _offset(instant, zone)
    wall = instant + offset
    floored = _EPOCH + step * math.floor((wall - _EPOCH) / step)
    return floored - offset


def _next_wall_boundary(current: datetime, step: timedelta, zone: ZoneInfo) -> datetime:
    """The first instant after `current` that starts another wall-clock bucket.

    Fast path: with the same UTC offset at both ends of the bucket, it simply ends one step after it
    started. Around an offset change, walk the quarter-hour grid until the wall-clock bucket changes.
    """
    key = _wall_key(current, step, zone)
    following = key + step
    if following > current and _offset(following - QUARTER_HOUR, zone) == _offset(current, zone):
        return following
    boundary = quarter_floor(current) + QUARTER_HOUR
    while _wall_key(boundary, step, zone) == key:
        boundary += QUARTER_HOUR
    return boundary


def _boundaries_inside(start: datetime, end: datetime, interval: Interval, zone: ZoneInfo) -> Iterator[datetime]:
    """Natural bucket boundaries b with start < b < end, ascending."""
    if interval in _SUB_DAY_STEP:
        step = _SUB_DAY_STEP[interval]
        boundary = _next_wall_boundary(quarter_floor(start), step, zone)
        while boundary < end:
            if boundary > start:
                yield boundary
            boundary = _next_wall_boundary(boundary, step, zone)
        return
    day = _calendar_next(_calendar_floor(start, interval, zone), interval)
    while (boundary := local_midnight(day, zone)) < end:
        if boundary > start:
            yield boundary
        day = _calendar_next(day, interval)


def bucket_around(instant: datetime, interval: Interval, zone: ZoneInfo) -> Bucket:
    """The whole natural bucket that contains `instant`."""
    if interval in _SUB_DAY_STEP:
        step = _SUB_DAY_STEP[interval]
        key = _wall_key(quarter_floor(instant), step, zone)
        start = quarter_floor(instant)
        while _wall_key(start - QUARTER_HOUR, step, zone) == key:
            start -= QUARTER_HOUR
        return Bucket(start, _next_wall_boundary(start, step, zone))
    day = _calendar_floor(instant, interval, zone)
    return Bucket(local_midnight(day, zone), local_midnight(_calendar_next(day, interval), zone))


def plan_buckets(start: datetime, end: datetime, interval: Interval, zone: ZoneInfo, limit: int) -> list[Bucket]:
    """The buckets that partition `[start, end)`; more than `limit` is the client's error (field `end`)."""
    bounds = [start]
    for boundary in _boundaries_inside(start, end, interval, zone):
        bounds.append(boundary)
        if len(bounds) > limit:
            raise InvalidArgument(
                "end",
                f"the range {start.isoformat()} .. {end.isoformat()} holds more than {limit} {interval.value} "
                "buckets: narrow start/end or choose a coarser interval",
            )
    bounds.append(end)
    return [Bucket(lo, hi) for lo, hi in pairwise(bounds)]
