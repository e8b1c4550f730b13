"""Shared fixtures: a real PostgreSQL (the server in DATABASE_URL, or an embedded one) with a fresh
database per test session, migrated to the newest schema. Tests run under TZ=America/New_York
(`make test` sets it) so that a time-zone bug cannot hide behind a UTC machine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from meterdata.db import make_engine, migrate, sqlalchemy_url, start_embedded_postgres

SHARED_DATA = Path(__file__).resolve().parent.parent / "ingest_service" / "snapshot"

ALL_TABLES = (
    "fleet_hourly, readings_hourly, rejected_readings, reading_revisions, readings, meter_channels, ingest_runs, meters"
)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The PostgreSQL server under test: DATABASE_URL's, else an embedded one for this session."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return start_embedded_postgres(tmp_path_factory.mktemp("embedded-pg"), cleanup_mode="delete")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database of its own, dropped at the end of the session."""
    name = f"meterdata_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    make_engine.cache_clear()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    return make_engine(database_url)


@pytest.fixture
def clean_db(engine: Engine) -> Engine:
    """An empty database for tests that assert on absolute counts."""
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE"))
    return engine
