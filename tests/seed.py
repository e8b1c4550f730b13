"""Test data loaders that write straight to the database, independent of the ingest service.

Query and analytics tests use them so that they test reading, not writing; the ingest tests check
the ingest path itself. Values are computed by the callers from the raw JSON or a formula.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text

from ingest_service import pgcopy
from ingest_service.validation import ColumnBlock

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "ingest_service" / "snapshot"
SHARED_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "exnaton"
IMPORT_MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"
EXPORT_MUID = "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"
IMPORT_OBIS = "0100011D00FF"
EXPORT_OBIS = "0100021D00FF"


def published_records(muid: str) -> list[dict]:
    """The raw records of a published file (bundled snapshot, else the shared copy)."""
    import gzip

    bundled = PUBLISHED_DIR / f"{muid}.json.gz"
    if bundled.exists():
        return json.loads(gzip.decompress(bundled.read_bytes()))["data"]
    return json.loads((SHARED_DIR / f"{muid}.json").read_text())["data"]


def published_points(muid: str) -> tuple[str, list[tuple[datetime, float]]]:
    """(obis, [(ts, value)]) of a published meter, parsed here without project code."""
    records = published_records(muid)
    obis = next(k for k in records[0] if k not in {"measurement", "timestamp", "tags"})
    return obis, [(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")), float(r[obis])) for r in records]


def seed_readings(
    engine: Engine,
    muid: str,
    obis: str,
    points: Iterable[tuple[datetime, float]],
    tenant: str = "default",
) -> int:
    """Insert (or replace) a meter channel's readings and keep meter_channels consistent."""
    rows = [{"muid": muid, "obis": obis, "ts": ts, "value": value} for ts, value in points]
    with engine.begin() as connection:
        run_id = connection.execute(
            text("INSERT INTO ingest_runs (kind, status, source) VALUES ('stream', 'succeeded', 'seed') RETURNING id")
        ).scalar_one()
        connection.execute(
            text("INSERT INTO meters (muid, tenant) VALUES (:muid, :tenant) ON CONFLICT (muid) DO NOTHING"),
            {"muid": muid, "tenant": tenant},
        )
        connection.execute(
            text("INSERT INTO meter_channels (muid, obis) VALUES (:muid, :obis) ON CONFLICT DO NOTHING"),
            {"muid": muid, "obis": obis},
        )
        connection.execute(
            text("DELETE FROM readings WHERE muid = :muid AND obis = :obis"), {"muid": muid, "obis": obis}
        )
        if rows:
            block = ColumnBlock(
                muid, obis, "measured", "energy",
                np.array([int(r["ts"].timestamp()) for r in rows], dtype=np.int64),
                np.array([r["value"] for r in rows], dtype=np.float64),
            )  # fmt: skip
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.copy_expert(
                f"COPY readings ({pgcopy.COLUMNS_WITH_RUN}) FROM STDIN (FORMAT binary)",
                io.BytesIO(pgcopy.encode_blocks([block], run_id)),
            )
            cursor.close()
        connection.execute(
            text("DELETE FROM readings_hourly WHERE muid = :muid AND obis = :obis"), {"muid": muid, "obis": obis}
        )
        connection.execute(
            text(
                "INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count) "
                "SELECT muid, obis, date_trunc('hour', ts, 'UTC'), sum(value), min(value), max(value), count(*) "
                "FROM readings WHERE muid = :muid AND obis = :obis GROUP BY 1, 2, 3"
            ),
            {"muid": muid, "obis": obis},
        )
        connection.execute(text("DELETE FROM fleet_hourly"))
        connection.execute(
            text(
                "INSERT INTO fleet_hourly (tenant, obis, hour, value_sum, reading_count) "
                "SELECT m.tenant, r.obis, date_trunc('hour', r.ts, 'UTC'), sum(r.value), count(*) "
                "FROM readings r JOIN meters m USING (muid) GROUP BY 1, 2, 3"
            )
        )
        connection.execute(
            text(
                "UPDATE meter_channels c SET first_ts = s.first_ts, last_ts = s.last_ts, reading_count = s.n "
                "FROM (SELECT min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n FROM readings "
                "      WHERE muid = :muid AND obis = :obis) s "
                "WHERE c.muid = :muid AND c.obis = :obis"
            ),
            {"muid": muid, "obis": obis},
        )
    return len(rows)


def seed_published(engine: Engine) -> None:
    """Both published meters, straight from the raw JSON."""
    for muid in (IMPORT_MUID, EXPORT_MUID):
        obis, points = published_points(muid)
        seed_readings(engine, muid, obis, points)
