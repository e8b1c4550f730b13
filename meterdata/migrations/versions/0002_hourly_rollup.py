"""Hourly rollups kept current by the ingest service in the readings' transaction.

readings_hourly (per meter channel) serves series of an hour or longer, so their cost follows the
hours asked for, not the readings stored; fleet_hourly (per tenant and OBIS code) serves totals over
all meters of a tenant without touching a row per meter.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE readings_hourly (
            muid           uuid NOT NULL,
            obis           text NOT NULL,
            hour           timestamptz NOT NULL,  -- start of the UTC hour
            value_sum      double precision NOT NULL,
            value_min      double precision NOT NULL,
            value_max      double precision NOT NULL,
            reading_count  integer NOT NULL,
            PRIMARY KEY (muid, obis, hour)  -- like readings: no per-row foreign-key triggers
        );
        INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count)
        SELECT muid, obis, date_trunc('hour', ts, 'UTC'), sum(value), min(value), max(value), count(*)
        FROM readings GROUP BY 1, 2, 3;

        CREATE TABLE fleet_hourly (
            tenant         text NOT NULL,
            obis           text NOT NULL,
            hour           timestamptz NOT NULL,
            value_sum      double precision NOT NULL,
            reading_count  bigint NOT NULL,
            PRIMARY KEY (tenant, obis, hour)
        );
        INSERT INTO fleet_hourly (tenant, obis, hour, value_sum, reading_count)
        SELECT m.tenant, r.obis, date_trunc('hour', r.ts, 'UTC'), sum(r.value), count(*)
        FROM readings r JOIN meters m USING (muid) GROUP BY 1, 2, 3;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE fleet_hourly, readings_hourly")
