"""Initial schema: meters, ingest runs, readings, revisions, rejected readings.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE meters (
            muid        uuid PRIMARY KEY,
            tenant      text NOT NULL DEFAULT 'default',
            label       text,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX meters_tenant_idx ON meters (tenant, muid);

        CREATE TABLE ingest_runs (
            id           bigserial PRIMARY KEY,
            kind         text NOT NULL CHECK (kind IN ('pull', 'stream')),
            status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            source       text NOT NULL DEFAULT '',
            muids        text[] NOT NULL DEFAULT '{}',
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            received     bigint NOT NULL DEFAULT 0,
            inserted     bigint NOT NULL DEFAULT 0,
            updated      bigint NOT NULL DEFAULT 0,
            unchanged    bigint NOT NULL DEFAULT 0,
            rejected     bigint NOT NULL DEFAULT 0,
            error        text NOT NULL DEFAULT ''
        );

        -- One row per meter channel: the catalogue the query service lists, and the pull watermark.
        CREATE TABLE meter_channels (
            muid           uuid NOT NULL REFERENCES meters (muid),
            obis           text NOT NULL,
            first_ts       timestamptz,
            last_ts        timestamptz,
            reading_count  bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (muid, obis)
        );

        CREATE TABLE readings (
            muid           uuid NOT NULL,
            obis           text NOT NULL,
            ts             timestamptz NOT NULL,
            value          double precision NOT NULL CHECK (value >= 0 AND value <> 'NaN'::float8),
            quality        text NOT NULL DEFAULT '',
            measurement    text NOT NULL DEFAULT '',
            ingest_run_id  bigint NOT NULL,
            PRIMARY KEY (muid, obis, ts)
            -- No foreign keys on this, the largest and hottest table: their per-row triggers cost
            -- as much as the COPY itself. The ingest service, its only writer, creates the run and
            -- the channel (which references meters) in the same transaction before any reading.
        );

        -- A changed value is a revision: the old one is kept here, never overwritten silently.
        CREATE TABLE reading_revisions (
            id                 bigserial PRIMARY KEY,
            muid               uuid NOT NULL,
            obis               text NOT NULL,
            ts                 timestamptz NOT NULL,
            old_value          double precision NOT NULL,
            new_value          double precision NOT NULL,
            old_quality        text NOT NULL,
            new_quality        text NOT NULL,
            old_ingest_run_id  bigint NOT NULL REFERENCES ingest_runs (id),
            ingest_run_id      bigint NOT NULL REFERENCES ingest_runs (id),
            revised_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX reading_revisions_key_idx ON reading_revisions (muid, obis, ts);

        CREATE TABLE rejected_readings (
            id             bigserial PRIMARY KEY,
            ingest_run_id  bigint NOT NULL REFERENCES ingest_runs (id),
            position       bigint NOT NULL,
            muid           text,
            raw            text NOT NULL,
            field          text NOT NULL,
            reason         text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX rejected_readings_run_idx ON rejected_readings (ingest_run_id, position);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE rejected_readings, reading_revisions, readings, meter_channels, ingest_runs, meters")
