"""Shared pieces of the ingest tests: raw-JSON facts computed without project code, and clients."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import Engine, text

from tests.seed import EXPORT_MUID, IMPORT_MUID, published_records


def raw_facts(muid: str) -> dict[str, object]:
    """count, exact decimal sum and max of a published file, read from its JSON text."""
    records = published_records(muid)
    obis = next(k for k in records[0] if k not in {"measurement", "timestamp", "tags"})
    # parse_float=Decimal keeps each literal exact, so the sum is the true decimal sum
    import gzip

    from tests.seed import PUBLISHED_DIR

    exact = json.loads(gzip.decompress((PUBLISHED_DIR / f"{muid}.json.gz").read_bytes()), parse_float=Decimal)["data"]
    values = [Decimal(r[obis]) for r in exact]
    return {"obis": obis, "count": len(records), "sum": sum(values), "max": max(values)}


def stored_facts(engine: Engine, muid: str) -> dict[str, object]:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT count(*) AS n, sum(value) AS total, max(value) AS peak FROM readings WHERE muid = :m"),
            {"m": muid},
        ).one()
    return {"count": row.n, "sum": row.total, "max": row.peak}


PUBLISHED = (IMPORT_MUID, EXPORT_MUID)


def assert_rollup_exact(engine: Engine) -> int:
    """The hourly rollup equals the aggregate of the raw readings, hour by hour; returns the hours."""
    with engine.connect() as connection:
        expected = connection.execute(
            text(
                "SELECT muid, obis, date_trunc('hour', ts, 'UTC') AS hour, sum(value), min(value), max(value), count(*) "
                "FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
        ).all()
        stored = connection.execute(
            text(
                "SELECT muid, obis, hour, value_sum, value_min, value_max, reading_count "
                "FROM readings_hourly ORDER BY 1, 2, 3"
            )
        ).all()
        fleet_expected = connection.execute(
            text(
                "SELECT m.tenant, r.obis, date_trunc('hour', r.ts, 'UTC'), sum(r.value), count(*) "
                "FROM readings r JOIN meters m USING (muid) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
        ).all()
        fleet_stored = connection.execute(
            text("SELECT tenant, obis, hour, value_sum, reading_count FROM fleet_hourly ORDER BY 1, 2, 3")
        ).all()
    assert len(stored) == len(expected)
    for got, want in zip(stored, expected, strict=True):
        assert tuple(got[:3]) == tuple(want[:3])
        assert abs(got[3] - want[3]) < 1e-9 and tuple(got[4:]) == tuple(want[4:])
    assert len(fleet_stored) == len(fleet_expected)
    for got, want in zip(fleet_stored, fleet_expected, strict=True):
        assert (tuple(got[:3]), got[4]) == (tuple(want[:3]), want[4])
        assert abs(got[3] - want[3]) < 1e-9  # deltas add in another order than a fresh sum: rounding only
    return len(stored)
