"""Alembic environment: migrations run online against the URL the caller configured."""

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
connectable = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
