"""Hourly rollup per meter channel, kept current by the ingest service in the readings' transaction.

Series of an hour or longer are served from it, so their cost follows the number of hours asked
for, not the number of readings stored.

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
            PRIMARY KEY (muid, obis, hour),
            FOREIGN KEY (muid, obis) REFERENCES meter_channels (muid, obis)
        );
        INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count)
        SELECT muid, obis, date_trunc('hour', ts, 'UTC'), sum(value), min(value), max(value), count(*)
        FROM readings GROUP BY 1, 2, 3;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE readings_hourly")
