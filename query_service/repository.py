"""All SQL of the query service: read-only, SQLAlchemy Core `text()` with bound parameters only.

The series query lets PostgreSQL do the aggregation: `width_bucket` puts each reading into the bucket
whose boundaries the caller computed (see `buckets.py`), and one GROUP BY yields count, sum, mean,
min and max per bucket. Sums are exact: each reading enters as `numeric` at the 15 significant digits
a double holds (the upstream's `0.035500000000000004` is `0.0355`), so a day's total is `4.0253`, not
`4.025299999999998`. The mean divides that same sum (PostgreSQL computes identical aggregates once)
and min/max are picked in float and rounded once, which keeps the query at about twice the cost of
pure float arithmetic instead of five times. Reading pages use keyset pagination on the primary key (muid, obis, ts),
never OFFSET, so every page costs one index range scan however deep the client has paged.

Every statement is scoped by the caller's tenant (`:tenant`): meters are filtered by it, and the
readings and series statements repeat the check (`_OWNED`, a one-time probe of the meter's primary
key), so a meter of another tenant yields nothing even if a caller skipped the meter lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class ChannelRow:
    obis: str
    first_ts: datetime | None
    last_ts: datetime | None
    reading_count: int


@dataclass(frozen=True)
class MeterRow:
    muid: str
    tenant: str
    channels: tuple[ChannelRow, ...]


@dataclass(frozen=True)
class ReadingRow:
    ts: datetime
    value: float
    quality: str
    measurement: str


@dataclass(frozen=True)
class AggregateRow:
    index: int  # 1-based bucket number
    count: int
    sum: float
    mean: float
    min: float | None  # None from the fleet rollup, which keeps no extremes
    max: float | None


# The meter belongs to the caller's tenant: PostgreSQL evaluates it once per statement (an InitPlan).
_OWNED = "EXISTS (SELECT 1 FROM meters o WHERE o.muid = CAST(:muid AS uuid) AND o.tenant = :tenant)"

_METERS = text(
    """
    SELECT m.muid::text AS muid, m.tenant, c.obis, c.first_ts, c.last_ts, c.reading_count
    FROM (
        SELECT muid, tenant FROM meters
        WHERE tenant = :tenant AND (CAST(:after AS uuid) IS NULL OR muid > CAST(:after AS uuid))
        ORDER BY muid
        LIMIT :limit
    ) m
    LEFT JOIN meter_channels c ON c.muid = m.muid
    ORDER BY m.muid, c.obis
    """
)

_METER = text(
    """
    SELECT m.muid::text AS muid, m.tenant, c.obis, c.first_ts, c.last_ts, c.reading_count
    FROM meters m LEFT JOIN meter_channels c ON c.muid = m.muid
    WHERE m.muid = CAST(:muid AS uuid) AND m.tenant = :tenant
    ORDER BY c.obis
    """
)

_READINGS_SELECT = (
    """
    SELECT ts, value, quality, measurement FROM readings
    WHERE muid = CAST(:muid AS uuid) AND obis = :obis AND ts >= :start AND ts < :end AND """
    + _OWNED
    + """
"""
)
# (descending, has cursor) -> statement; the four shapes are constants, values are always bound.
_READINGS = {
    (False, False): text(_READINGS_SELECT + " ORDER BY ts ASC LIMIT :limit"),
    (False, True): text(_READINGS_SELECT + " AND ts > :after ORDER BY ts ASC LIMIT :limit"),
    (True, False): text(_READINGS_SELECT + " ORDER BY ts DESC LIMIT :limit"),
    (True, True): text(_READINGS_SELECT + " AND ts < :after ORDER BY ts DESC LIMIT :limit"),
}

_SERIES = text(
    """
    SELECT width_bucket(ts, CAST(:bounds AS timestamptz[])) AS i,
           count(*) AS n, sum(value::numeric) AS sum, sum(value::numeric) / count(*) AS mean,
           min(value)::numeric AS min, max(value)::numeric AS max
    FROM readings
    WHERE muid = CAST(:muid AS uuid) AND obis = :obis AND ts >= :start AND ts < :end AND """
    + _OWNED
    + """
    GROUP BY 1
    ORDER BY 1
    """
)


# The same aggregates from the hourly rollup the ingest service keeps exact: one row per hour instead
# of four readings, for buckets that are whole UTC hours (every zone with whole-hour offsets).
_SERIES_HOURLY = text(
    """
    SELECT width_bucket(hour, CAST(:bounds AS timestamptz[])) AS i,
           sum(reading_count) AS n, sum(value_sum::numeric) AS sum, sum(value_sum::numeric) / sum(reading_count) AS mean,
           min(value_min)::numeric AS min, max(value_max)::numeric AS max
    FROM readings_hourly
    WHERE muid = CAST(:muid AS uuid) AND obis = :obis AND hour >= :start AND hour < :end AND """
    + _OWNED
    + """
    GROUP BY 1
    ORDER BY 1
    """
)

# Fleet totals per tenant: min/max are not kept there (they are not additive), so they are NULL.
_FLEET_SERIES = text(
    """
    SELECT width_bucket(hour, CAST(:bounds AS timestamptz[])) AS i,
           sum(reading_count) AS n, sum(value_sum::numeric) AS sum, sum(value_sum::numeric) / sum(reading_count) AS mean,
           NULL::numeric AS min, NULL::numeric AS max
    FROM fleet_hourly
    WHERE tenant = :tenant AND obis = :obis AND hour >= :start AND hour < :end
    GROUP BY 1
    ORDER BY 1
    """
)

_FLEET_RANGE = text("SELECT min(hour), max(hour) FROM fleet_hourly WHERE tenant = :tenant AND obis = :obis")


def _meters_from_rows(rows: list) -> list[MeterRow]:  # type: ignore[type-arg]
    meters: dict[str, MeterRow] = {}
    for row in rows:
        meter = meters.setdefault(row.muid, MeterRow(row.muid, row.tenant, ()))
        if row.obis is not None:
            channel = ChannelRow(row.obis, row.first_ts, row.last_ts, int(row.reading_count))
            meters[row.muid] = MeterRow(meter.muid, meter.tenant, (*meter.channels, channel))
    return list(meters.values())


def list_meters(connection: Connection, tenant: str, after: str | None, limit: int) -> list[MeterRow]:
    """Up to `limit` meters of `tenant` with muid > `after`, ordered by muid, each with its channels."""
    return _meters_from_rows(connection.execute(_METERS, {"tenant": tenant, "after": after, "limit": limit}).all())


def get_meter(connection: Connection, tenant: str, muid: str) -> MeterRow | None:
    """The meter when it belongs to `tenant`, else None (another tenant's meter is not found either)."""
    meters = _meters_from_rows(connection.execute(_METER, {"tenant": tenant, "muid": muid}).all())
    return meters[0] if meters else None


def list_readings(
    connection: Connection,
    *,
    tenant: str,
    muid: str,
    obis: str,
    start: datetime,
    end: datetime,
    after: datetime | None,
    descending: bool,
    limit: int,
) -> list[ReadingRow]:
    """Readings in `[start, end)` after the cursor `after` (in the page order)."""
    statement = _READINGS[(descending, after is not None)]
    params = {"tenant": tenant, "muid": muid, "obis": obis, "start": start, "end": end, "after": after, "limit": limit}
    return [ReadingRow(r.ts, r.value, r.quality, r.measurement) for r in connection.execute(statement, params)]


def _aggregates(connection: Connection, statement: Any, params: dict[str, Any]) -> list[AggregateRow]:
    return [
        AggregateRow(int(r.i), int(r.n), float(r.sum), float(r.mean), _float(r.min), _float(r.max))
        for r in connection.execute(statement, params)
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def series_aggregates(
    connection: Connection, *, tenant: str, muid: str, obis: str, bounds: list[datetime], hourly: bool = False
) -> list[AggregateRow]:
    """Aggregates of the non-empty buckets `[bounds[i-1], bounds[i])`, by 1-based bucket number;
    `hourly` reads the rollup (every bound must then be a whole UTC hour)."""
    params = {"tenant": tenant, "muid": muid, "obis": obis, "bounds": bounds, "start": bounds[0], "end": bounds[-1]}
    return _aggregates(connection, _SERIES_HOURLY if hourly else _SERIES, params)


def fleet_aggregates(connection: Connection, *, tenant: str, obis: str, bounds: list[datetime]) -> list[AggregateRow]:
    params = {"tenant": tenant, "obis": obis, "bounds": bounds, "start": bounds[0], "end": bounds[-1]}
    return _aggregates(connection, _FLEET_SERIES, params)


def fleet_range(connection: Connection, *, tenant: str, obis: str) -> tuple[datetime | None, datetime | None]:
    first, last = connection.execute(_FLEET_RANGE, {"tenant": tenant, "obis": obis}).one()
    return first, last
