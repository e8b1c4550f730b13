"""All SQL of the ingest service: runs, the idempotent batch upsert with revisions, rejections.

A batch is written in the caller's transaction: rows are COPYed into a temporary staging table, then
one statement upserts them with `ON CONFLICT .. DO UPDATE .. WHERE .. IS DISTINCT FROM`, keeps the
old value of every changed reading in reading_revisions, and advances the channel statistics.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg2.errors
from sqlalchemy import text
from sqlalchemy.engine import Connection, RowMapping

from ingest_service import pgcopy
from ingest_service.validation import ColumnBlock, Rejection


@dataclass
class Counts:
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for name in ("received", "inserted", "updated", "unchanged", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


RUN_COLUMNS = (
    "id, kind, status, source, muids, started_at, finished_at, received, inserted, updated, unchanged, rejected, error"
)


def create_run(connection: Connection, kind: str, source: str, muids: Sequence[str], tenant: str = "default") -> int:
    return int(
        connection.execute(
            text(
                "INSERT INTO ingest_runs (kind, status, source, muids, tenant) "
                "VALUES (:kind, 'running', :source, :muids, :tenant) RETURNING id"
            ),
            {"kind": kind, "source": source, "muids": list(muids), "tenant": tenant},
        ).scalar_one()
    )


def add_to_run(connection: Connection, run_id: int, counts: Counts, source: str | None = None) -> None:
    connection.execute(
        text(
            "UPDATE ingest_runs SET received = received + :received, inserted = inserted + :inserted, "
            "updated = updated + :updated, unchanged = unchanged + :unchanged, rejected = rejected + :rejected, "
            "source = COALESCE(:source, source) WHERE id = :id"
        ),
        {**counts.__dict__, "id": run_id, "source": source},
    )


def finish_run(connection: Connection, run_id: int, status: str, error: str = "", note: str = "") -> None:
    """End a run; `note` (e.g. that it waited for another pull) is appended to its source line, the
    schema having no column for remarks on a run that did not fail."""
    connection.execute(
        text(
            "UPDATE ingest_runs SET status = :status, error = :error, finished_at = now(), "
            "source = CASE WHEN :note = '' THEN source ELSE source || ' (' || :note || ')' END WHERE id = :id"
        ),
        {"status": status, "error": error, "id": run_id, "note": note},
    )


def get_run(connection: Connection, run_id: int, tenant: str | None = None) -> RowMapping | None:
    """The run; with `tenant`, only a run of that tenant (another tenant's run is not found)."""
    return (
        connection.execute(
            text(
                f"SELECT {RUN_COLUMNS} FROM ingest_runs "
                "WHERE id = :id AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)"
            ),
            {"id": run_id, "tenant": tenant},
        )
        .mappings()
        .first()
    )


def list_runs(connection: Connection, before_id: int | None, limit: int, tenant: str) -> list[RowMapping]:
    """The tenant's runs, newest first."""
    return list(
        connection.execute(
            text(
                f"SELECT {RUN_COLUMNS} FROM ingest_runs "
                "WHERE tenant = :tenant AND (CAST(:before AS bigint) IS NULL OR id < :before) "
                "ORDER BY id DESC LIMIT :limit"
            ),
            {"before": before_id, "limit": limit, "tenant": tenant},
        ).mappings()
    )


def list_rejections(connection: Connection, run_id: int, after_id: int | None, limit: int) -> list[RowMapping]:
    return list(
        connection.execute(
            text(
                "SELECT id, ingest_run_id, position, raw, field, reason FROM rejected_readings "
                "WHERE ingest_run_id = :run AND (CAST(:after AS bigint) IS NULL OR id > :after) "
                "ORDER BY id LIMIT :limit"
            ),
            {"run": run_id, "after": after_id, "limit": limit},
        ).mappings()
    )


def store_rejections(connection: Connection, run_id: int, rejections: Sequence[Rejection]) -> None:
    if not rejections:
        return
    connection.execute(
        text(
            "INSERT INTO rejected_readings (ingest_run_id, position, muid, raw, field, reason) "
            "VALUES (:run, :position, :muid, :raw, :field, :reason)"
        ),
        [
            {"run": run_id, "position": r.position, "muid": r.muid, "raw": r.raw, "field": r.field, "reason": r.reason}
            for r in rejections
        ],
    )


def known_meters(connection: Connection, muids: Sequence[str], tenant: str = "default") -> set[str]:
    """The meters among `muids` that exist and belong to `tenant`."""
    rows = connection.execute(
        text("SELECT muid::text FROM meters WHERE muid = ANY(CAST(:muids AS uuid[])) AND tenant = :tenant"),
        {"muids": list(muids), "tenant": tenant},
    )
    return {row[0] for row in rows}


def meter_tenants(connection: Connection, muids: Sequence[str]) -> dict[str, str]:
    """muid -> tenant of the meters among `muids` that exist."""
    rows = connection.execute(
        text("SELECT muid::text, tenant FROM meters WHERE muid = ANY(CAST(:muids AS uuid[]))"), {"muids": list(muids)}
    )
    return {row[0]: row[1] for row in rows}


def register_meters(connection: Connection, muids: Sequence[str], tenant: str = "default") -> None:
    connection.execute(
        text(
            "INSERT INTO meters (muid, tenant) SELECT m, :tenant FROM unnest(CAST(:muids AS uuid[])) AS m "
            "ON CONFLICT DO NOTHING"
        ),
        {"muids": list(muids), "tenant": tenant},
    )


def watermark(connection: Connection, muid: str) -> datetime | None:
    """The newest reading stored for a meter: an incremental pull continues after it."""
    return connection.execute(
        text("SELECT max(last_ts) FROM meter_channels WHERE muid = :muid"), {"muid": muid}
    ).scalar()


# Session-level advisory locks (they outlive transactions and end with the session, so a process
# that dies releases them): one kind for "this run is alive", one for "this meter is being pulled".
RUN_LOCK_CLASS = 0x6D64  # "md": the first key of pg_advisory_lock(int, int)
PULL_LOCK_CLASS = 0x6D65
_RUN_KEY = "CAST(:run % 2147483647 AS integer)"
_METER_KEY = "hashtext(CAST(:muid AS text))"


def lock_run(connection: Connection, run_id: int) -> None:
    """Held by the run's owner for the run's life: a run whose lock is free has lost its process."""
    connection.execute(text(f"SELECT pg_advisory_lock({RUN_LOCK_CLASS}, {_RUN_KEY})"), {"run": run_id})


def running_run_ids(connection: Connection) -> list[int]:
    return [int(row[0]) for row in connection.execute(text("SELECT id FROM ingest_runs WHERE status = 'running'"))]


def fail_if_orphaned(connection: Connection, run_id: int, error: str) -> bool:
    """Mark a `running` run failed when no session holds its lock (its process died); True if it was."""
    if not connection.execute(
        text(f"SELECT pg_try_advisory_lock({RUN_LOCK_CLASS}, {_RUN_KEY})"), {"run": run_id}
    ).scalar():
        return False
    try:
        changed = connection.execute(
            text(
                "UPDATE ingest_runs SET status = 'failed', error = :error, finished_at = now() "
                "WHERE id = :id AND status = 'running'"
            ),
            {"id": run_id, "error": error},
        ).rowcount
    finally:
        connection.execute(text(f"SELECT pg_advisory_unlock({RUN_LOCK_CLASS}, {_RUN_KEY})"), {"run": run_id})
    return bool(changed)


def release_locks(connection: Connection) -> None:
    """Before a run's session goes back to the pool: it must not carry a lock to its next user."""
    connection.execute(text("SELECT pg_advisory_unlock_all()"))


def try_lock_meter(connection: Connection, muid: str) -> bool:
    """The per-meter pull lock, without waiting: two pulls of one meter never interleave."""
    return bool(
        connection.execute(
            text(f"SELECT pg_try_advisory_lock({PULL_LOCK_CLASS}, {_METER_KEY})"), {"muid": muid}
        ).scalar()
    )


def lock_meter(connection: Connection, muid: str, wait_seconds: float) -> None:
    """Wait for the per-meter pull lock at most `wait_seconds` (LockNotAvailable after that)."""
    connection.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{int(wait_seconds * 1000)}ms"})
    connection.execute(text(f"SELECT pg_advisory_lock({PULL_LOCK_CLASS}, {_METER_KEY})"), {"muid": muid})


def unlock_meter(connection: Connection, muid: str) -> None:
    connection.execute(text(f"SELECT pg_advisory_unlock({PULL_LOCK_CLASS}, {_METER_KEY})"), {"muid": muid})


def runs_pulling(connection: Connection, muid: str, other_than: int) -> list[int]:
    """Other runs still marked running that pull this meter: who a waiting pull waits for."""
    return [
        int(row[0])
        for row in connection.execute(
            text(
                "SELECT id FROM ingest_runs WHERE status = 'running' AND kind = 'pull' AND id <> :me "
                "AND :muid = ANY(muids) ORDER BY id"
            ),
            {"muid": muid, "me": other_than},
        )
    ]


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    muid uuid NOT NULL, obis text NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality text NOT NULL, measurement text NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_touched (
    muid uuid NOT NULL, obis text NOT NULL, hour timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

_UPSERT = """
WITH staged AS (
    SELECT * FROM ingest_staging
), revisions AS (
    INSERT INTO reading_revisions (muid, obis, ts, old_value, new_value, old_quality, new_quality,
                                   old_ingest_run_id, ingest_run_id)
    SELECT r.muid, r.obis, r.ts, r.value, s.value, r.quality, s.quality, r.ingest_run_id, :run
    FROM staged s
    -- one primary-key probe per staged row (OFFSET 0 keeps the planner from hashing the whole table)
    CROSS JOIN LATERAL (
        SELECT * FROM readings r WHERE r.muid = s.muid AND r.obis = s.obis AND r.ts = s.ts OFFSET 0
    ) r
    WHERE (r.value, r.quality, r.measurement) IS DISTINCT FROM (s.value, s.quality, s.measurement)
    RETURNING muid, obis, ts, old_value, new_value
), upserted AS (
    INSERT INTO readings (muid, obis, ts, value, quality, measurement, ingest_run_id)
    SELECT muid, obis, ts, value, quality, measurement, :run FROM staged
    ON CONFLICT (muid, obis, ts) DO UPDATE
        SET value = EXCLUDED.value, quality = EXCLUDED.quality, measurement = EXCLUDED.measurement,
            ingest_run_id = EXCLUDED.ingest_run_id
        WHERE (readings.value, readings.quality, readings.measurement)
              IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.quality, EXCLUDED.measurement)
    RETURNING muid, obis, ts, value, (xmax = 0) AS inserted
), fleet AS (
    -- Fleet totals per tenant and hour move by deltas (new readings, revised values); ordered so that
    -- concurrent batches lock the rows in the same order and cannot deadlock.
    INSERT INTO fleet_hourly AS f (tenant, obis, hour, value_sum, reading_count)
    SELECT m.tenant, d.obis, d.hour, sum(d.delta), sum(d.added)
    FROM (
        SELECT muid, obis, date_trunc('hour', ts, 'UTC') AS hour, value AS delta, 1 AS added
        FROM upserted WHERE inserted
        UNION ALL
        SELECT muid, obis, date_trunc('hour', ts, 'UTC'), new_value - old_value, 0 FROM revisions
    ) d JOIN meters m ON m.muid = d.muid
    GROUP BY m.tenant, d.obis, d.hour
    ORDER BY m.tenant, d.obis, d.hour
    ON CONFLICT (tenant, obis, hour) DO UPDATE
        SET value_sum = f.value_sum + EXCLUDED.value_sum, reading_count = f.reading_count + EXCLUDED.reading_count
), touched AS (
    INSERT INTO ingest_touched (muid, obis, hour)
    SELECT DISTINCT muid, obis, date_trunc('hour', ts, 'UTC') FROM upserted
), channel_stats AS (
    UPDATE meter_channels c
    SET reading_count = c.reading_count + a.inserted,
        first_ts = LEAST(c.first_ts, a.first_ts),
        last_ts = GREATEST(c.last_ts, a.last_ts)
    FROM (SELECT muid, obis, count(*) FILTER (WHERE inserted) AS inserted,
                 min(ts) FILTER (WHERE inserted) AS first_ts, max(ts) FILTER (WHERE inserted) AS last_ts
          FROM upserted GROUP BY muid, obis) a
    WHERE c.muid = a.muid AND c.obis = a.obis
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated FROM upserted
"""


# Recompute the hours this batch changed (noted by the upsert in ingest_touched) from the readings
# themselves, in a statement of its own so it sees the upsert: exact by construction, and a
# re-ingest can never count a reading twice.
_ROLLUP = """
INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count)
SELECT t.muid, t.obis, t.hour, sum(r.value), min(r.value), max(r.value), count(*)
FROM ingest_touched t
-- one primary-key range scan per hour, whatever statistics the planner has (OFFSET 0: not flattened)
CROSS JOIN LATERAL (
    SELECT value FROM readings r
    WHERE r.muid = t.muid AND r.obis = t.obis AND r.ts >= t.hour AND r.ts < t.hour + interval '1 hour' OFFSET 0
) r
GROUP BY t.muid, t.obis, t.hour
ORDER BY t.muid, t.obis, t.hour
ON CONFLICT (muid, obis, hour) DO UPDATE
    SET value_sum = EXCLUDED.value_sum, value_min = EXCLUDED.value_min,
        value_max = EXCLUDED.value_max, reading_count = EXCLUDED.reading_count
"""


def _copy(connection: Connection, statement: str, payload: bytes) -> None:
    cursor: Any = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(statement, io.BytesIO(payload))
    finally:
        cursor.close()


def _ensure_channels(connection: Connection, blocks: Sequence[ColumnBlock]) -> None:
    keys = sorted({(b.muid, b.obis) for b in blocks})
    connection.execute(
        text(
            "INSERT INTO meter_channels (muid, obis) "
            "SELECT * FROM unnest(CAST(:muids AS uuid[]), CAST(:obis AS text[])) ON CONFLICT DO NOTHING"
        ),
        {"muids": [k[0] for k in keys], "obis": [k[1] for k in keys]},
    )


def write_blocks(connection: Connection, run_id: int, blocks: Sequence[ColumnBlock]) -> Counts:
    """Store one batch (keys unique within it); returns inserted/updated/unchanged.

    Fast path: new readings are COPYed straight into `readings` and the rollups grow by the batch's
    own aggregates. When any key already exists the COPY fails on the primary key; its savepoint is
    rolled back and the batch takes the general path: staging table, upsert with revisions, rollups
    recomputed for the hours that changed.
    """
    total = sum(len(block) for block in blocks)
    if not total:
        return Counts()
    _ensure_channels(connection, blocks)
    connection.execute(text("SAVEPOINT append_only"))
    try:
        _copy(
            connection,
            f"COPY readings ({pgcopy.COLUMNS_WITH_RUN}) FROM STDIN (FORMAT binary)",
            pgcopy.encode_blocks(blocks, run_id),
        )
    except psycopg2.errors.UniqueViolation:
        connection.execute(text("ROLLBACK TO SAVEPOINT append_only"))
    else:
        connection.execute(text("RELEASE SAVEPOINT append_only"))
        _add_to_rollups(connection, blocks)
        return Counts(inserted=total)
    return _upsert_blocks(connection, run_id, blocks, total)


def _upsert_blocks(connection: Connection, run_id: int, blocks: Sequence[ColumnBlock], total: int) -> Counts:
    connection.execute(text(_STAGING))
    connection.execute(text("TRUNCATE ingest_staging, ingest_touched"))
    _copy(
        connection, f"COPY ingest_staging ({pgcopy.COLUMNS}) FROM STDIN (FORMAT binary)", pgcopy.encode_blocks(blocks)
    )
    # Statistics of this batch, so the planner looks its keys up by index instead of hashing the table.
    connection.execute(text("ANALYZE ingest_staging"))
    row = connection.execute(text(_UPSERT), {"run": run_id}).one()
    inserted, updated = int(row.inserted), int(row.updated)
    if inserted or updated:
        connection.execute(text(_ROLLUP))
    return Counts(inserted=inserted, updated=updated, unchanged=total - inserted - updated)


@dataclass
class _HourGroups:
    hours: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray


def _by_hour(ts: np.ndarray, values: np.ndarray) -> _HourGroups:
    hours, index = np.unique(ts - ts % 3600, return_inverse=True)
    mins = np.full(len(hours), np.inf)
    maxs = np.full(len(hours), -np.inf)
    np.minimum.at(mins, index, values)
    np.maximum.at(maxs, index, values)
    return _HourGroups(hours, np.bincount(index, values, len(hours)), np.bincount(index, None, len(hours)), mins, maxs)


def _add_to_rollups(connection: Connection, blocks: Sequence[ColumnBlock]) -> None:
    """Only new readings were written: every rollup grows by this batch's own aggregates."""
    tenants = dict(
        connection.execute(
            text("SELECT muid::text, tenant FROM meters WHERE muid = ANY(CAST(:m AS uuid[]))"),
            {"m": sorted({b.muid for b in blocks})},
        ).all()
    )
    channels: dict[tuple[str, str], list[ColumnBlock]] = {}
    for block in blocks:
        channels.setdefault((block.muid, block.obis), []).append(block)
    hourly: list[bytes] = []
    stats: dict[str, list[Any]] = {k: [] for k in ("muid", "obis", "count", "first", "last")}
    fleet_parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for (muid, obis), parts in sorted(channels.items()):
        ts = np.concatenate([b.ts for b in parts])
        values = np.concatenate([b.values for b in parts])
        g = _by_hour(ts, values)
        hourly.append(pgcopy.encode_rows(len(g.hours), [
            ("bytes", uuid.UUID(muid).bytes), ("bytes", obis.encode()), (">i8", pgcopy.pg_timestamps(g.hours)),
            (">f8", g.sums), (">f8", g.mins), (">f8", g.maxs), (">i4", g.counts),
        ]))  # fmt: skip
        for key, value in (("muid", muid), ("obis", obis), ("count", len(ts)), ("first", int(ts.min())), ("last", int(ts.max()))):  # fmt: skip
            stats[key].append(value)
        fleet_parts.setdefault((tenants[muid], obis), []).append((ts, values))
    fleet: list[bytes] = []
    for (tenant, obis), parts in sorted(fleet_parts.items()):
        g = _by_hour(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        fleet.append(pgcopy.encode_rows(len(g.hours), [
            ("bytes", tenant.encode()), ("bytes", obis.encode()), (">i8", pgcopy.pg_timestamps(g.hours)),
            (">f8", g.sums), (">i8", g.counts),
        ]))  # fmt: skip
    _add_rows(connection, "readings_hourly", _HOURLY_COLUMNS, pgcopy.copy_body(hourly), _ADD_HOURLY)
    _add_rows(connection, "fleet_hourly", _FLEET_COLUMNS, pgcopy.copy_body(fleet), _ADD_FLEET)
    connection.execute(text(_ADD_CHANNEL_STATS), {k: pg_array(v) for k, v in stats.items()})


def _add_rows(connection: Connection, table: str, columns: str, payload: bytes, merge: str) -> None:
    """Rows for new hours (the usual case for a meter's new readings) are COPYed into the rollup; when one
    of them is there already (a batch continuing an hour, or another meter's readings of the same hour in
    the fleet) the COPY fails at that row, and the rows are merged from a staging table instead."""
    connection.execute(text("SAVEPOINT new_hours"))
    try:
        _copy(connection, f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)", payload)
    except psycopg2.errors.UniqueViolation:
        connection.execute(text("ROLLBACK TO SAVEPOINT new_hours"))
    else:
        connection.execute(text("RELEASE SAVEPOINT new_hours"))
        return
    connection.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS staged_{table} (LIKE {table}) ON COMMIT DELETE ROWS"))
    connection.execute(text(f"TRUNCATE staged_{table}"))
    _copy(connection, f"COPY staged_{table} ({columns}) FROM STDIN (FORMAT binary)", payload)
    connection.execute(text(merge))


def pg_array(values: list[Any]) -> str:
    """A PostgreSQL array literal, for a `CAST(:p AS type[])` parameter: one short string to send and
    parse instead of a bound ARRAY[...] of thousands of quoted elements. The values are numbers, UUIDs,
    OBIS codes and tenant names that this module produced; quotes and backslashes are escaped anyway."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


_HOURLY_COLUMNS = "muid, obis, hour, value_sum, value_min, value_max, reading_count"
_FLEET_COLUMNS = "tenant, obis, hour, value_sum, reading_count"

_ADD_HOURLY = f"""
INSERT INTO readings_hourly AS h ({_HOURLY_COLUMNS})
SELECT {_HOURLY_COLUMNS} FROM staged_readings_hourly
ORDER BY 1, 2, 3
ON CONFLICT (muid, obis, hour) DO UPDATE
    SET value_sum = h.value_sum + EXCLUDED.value_sum, value_min = LEAST(h.value_min, EXCLUDED.value_min),
        value_max = GREATEST(h.value_max, EXCLUDED.value_max), reading_count = h.reading_count + EXCLUDED.reading_count
"""

_ADD_FLEET = f"""
INSERT INTO fleet_hourly AS f ({_FLEET_COLUMNS})
SELECT {_FLEET_COLUMNS} FROM staged_fleet_hourly
ORDER BY 1, 2, 3
ON CONFLICT (tenant, obis, hour) DO UPDATE
    SET value_sum = f.value_sum + EXCLUDED.value_sum, reading_count = f.reading_count + EXCLUDED.reading_count
"""

_ADD_CHANNEL_STATS = """
UPDATE meter_channels c
SET reading_count = c.reading_count + b.n,
    first_ts = LEAST(c.first_ts, to_timestamp(b.first)), last_ts = GREATEST(c.last_ts, to_timestamp(b.last))
FROM unnest(CAST(:muid AS uuid[]), CAST(:obis AS text[]), CAST(:count AS bigint[]), CAST(:first AS bigint[]),
            CAST(:last AS bigint[])) AS b(muid, obis, n, first, last)
WHERE c.muid = b.muid AND c.obis = b.obis
"""
