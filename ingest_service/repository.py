"""All SQL of the ingest service: runs, the idempotent batch upsert with revisions, rejections.

A batch is written in the caller's transaction: rows are COPYed into a temporary staging table, then
one statement upserts them with `ON CONFLICT .. DO UPDATE .. WHERE .. IS DISTINCT FROM`, keeps the
old value of every changed reading in reading_revisions, and advances the channel statistics.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def create_run(connection: Connection, kind: str, source: str, muids: Sequence[str]) -> int:
    return int(
        connection.execute(
            text(
                "INSERT INTO ingest_runs (kind, status, source, muids) "
                "VALUES (:kind, 'running', :source, :muids) RETURNING id"
            ),
            {"kind": kind, "source": source, "muids": list(muids)},
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


def finish_run(connection: Connection, run_id: int, status: str, error: str = "") -> None:
    connection.execute(
        text("UPDATE ingest_runs SET status = :status, error = :error, finished_at = now() WHERE id = :id"),
        {"status": status, "error": error, "id": run_id},
    )


def get_run(connection: Connection, run_id: int) -> RowMapping | None:
    return (
        connection.execute(text(f"SELECT {RUN_COLUMNS} FROM ingest_runs WHERE id = :id"), {"id": run_id})
        .mappings()
        .first()
    )


def list_runs(connection: Connection, before_id: int | None, limit: int) -> list[RowMapping]:
    return list(
        connection.execute(
            text(
                f"SELECT {RUN_COLUMNS} FROM ingest_runs WHERE (CAST(:before AS bigint) IS NULL OR id < :before) "
                "ORDER BY id DESC LIMIT :limit"
            ),
            {"before": before_id, "limit": limit},
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


def known_meters(connection: Connection, muids: Sequence[str]) -> set[str]:
    rows = connection.execute(
        text("SELECT muid::text FROM meters WHERE muid = ANY(CAST(:muids AS uuid[]))"), {"muids": list(muids)}
    )
    return {row[0] for row in rows}


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


def try_lock_meter(connection: Connection, muid: str) -> bool:
    """A transaction-scoped advisory lock per meter: two pulls of one meter never interleave."""
    return bool(
        connection.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('meterdata.pull:' || :muid))"), {"muid": muid}
        ).scalar()
    )


def lock_meter(connection: Connection, muid: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('meterdata.pull:' || :muid))"), {"muid": muid})


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    muid uuid NOT NULL, obis text NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality text NOT NULL, measurement text NOT NULL
) ON COMMIT DELETE ROWS
"""

_UPSERT = """
WITH staged AS (
    SELECT * FROM ingest_staging
), revisions AS (
    INSERT INTO reading_revisions (muid, obis, ts, old_value, new_value, old_quality, new_quality,
                                   old_ingest_run_id, ingest_run_id)
    SELECT r.muid, r.obis, r.ts, r.value, s.value, r.quality, s.quality, r.ingest_run_id, :run
    FROM staged s JOIN readings r USING (muid, obis, ts)
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


# Recompute the hours this batch touched from the readings themselves (a statement of its own, so it sees
# the upsert): exact by construction, and a re-ingest can never count a reading twice.
_ROLLUP = """
WITH touched AS (
    SELECT DISTINCT s.muid, s.obis, date_trunc('hour', s.ts, 'UTC') AS hour
    FROM ingest_staging s JOIN readings r USING (muid, obis, ts)
    WHERE r.ingest_run_id = :run
)
INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count)
SELECT t.muid, t.obis, t.hour, sum(r.value), min(r.value), max(r.value), count(*)
FROM touched t
JOIN readings r ON r.muid = t.muid AND r.obis = t.obis AND r.ts >= t.hour AND r.ts < t.hour + interval '1 hour'
GROUP BY t.muid, t.obis, t.hour
ORDER BY t.muid, t.obis, t.hour
ON CONFLICT (muid, obis, hour) DO UPDATE
    SET value_sum = EXCLUDED.value_sum, value_min = EXCLUDED.value_min,
        value_max = EXCLUDED.value_max, reading_count = EXCLUDED.reading_count
"""


def write_blocks(connection: Connection, run_id: int, blocks: Sequence[ColumnBlock]) -> Counts:
    """Upsert one batch (keys unique within it) via binary COPY; returns inserted/updated/unchanged."""
    total = sum(len(block) for block in blocks)
    if not total:
        return Counts()
    connection.execute(text(_STAGING))
    connection.execute(text("TRUNCATE ingest_staging"))
    cursor: Any = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(
            f"COPY ingest_staging ({pgcopy.COLUMNS}) FROM STDIN (FORMAT binary)",
            io.BytesIO(pgcopy.encode_blocks(blocks)),
        )
    finally:
        cursor.close()
    # Channels first, in a statement of their own, so that the upsert below sees them.
    connection.execute(
        text(
            "INSERT INTO meter_channels (muid, obis) SELECT DISTINCT muid, obis FROM ingest_staging ON CONFLICT DO NOTHING"
        )
    )
    row = connection.execute(text(_UPSERT), {"run": run_id}).one()
    inserted, updated = int(row.inserted), int(row.updated)
    if inserted or updated:
        connection.execute(text(_ROLLUP), {"run": run_id})
    return Counts(inserted=inserted, updated=updated, unchanged=total - inserted - updated)
