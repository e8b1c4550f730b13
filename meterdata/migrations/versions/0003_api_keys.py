"""API keys (stored as hashes) and the tenant of each ingest run.

A key is shown once, as `mdk_<id>_<secret>`; the table keeps its id, tenant, scope and the SHA-256 of
the secret, never the secret. ingest_runs gains the tenant that started the run, so that one tenant
never lists another's runs (existing runs belong to the default tenant, like the published meters).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            id             text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
            tenant         text NOT NULL CHECK (tenant ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            scope          text NOT NULL CHECK (scope IN ('read', 'ingest', 'admin')),
            secret_sha256  bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
            note           text NOT NULL DEFAULT '',
            created_at     timestamptz NOT NULL DEFAULT now(),
            revoked_at     timestamptz
        );
        CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at);

        ALTER TABLE ingest_runs ADD COLUMN tenant text NOT NULL DEFAULT 'default';
        CREATE INDEX ingest_runs_tenant_idx ON ingest_runs (tenant, id);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX ingest_runs_tenant_idx; ALTER TABLE ingest_runs DROP COLUMN tenant; DROP TABLE api_keys")
