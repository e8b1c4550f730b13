"""The foundation: codegen, settings, schema gate, and the shared gRPC bootstrap."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from meterdata.db import SchemaOutdated, head_revision, require_current_schema, sqlalchemy_url
from meterdata.settings import Settings


def test_generated_code_matches_protos() -> None:
    from meterdata.v1 import analytics_pb2, common_pb2, ingest_pb2, query_pb2

    assert ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["WriteReadings"].client_streaming
    assert set(query_pb2.DESCRIPTOR.services_by_name["QueryService"].methods_by_name) == {
        "ListMeters",
        "GetMeter",
        "ListReadings",
        "GetSeries",
        "GetFleetSeries",
    }
    from meterdata.v1 import auth_pb2

    assert "VerifyApiKey" in auth_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].methods_by_name
    assert "GetProfile" in analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].methods_by_name
    assert common_pb2.Interval.Name(0) == "INTERVAL_UNSPECIFIED"


def test_production_refuses_embedded_database_and_wildcard_cors() -> None:
    from meterdata.runner import resolve_database_url

    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        resolve_database_url(Settings(environment="production", database_url=None))
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        Settings(environment="production", database_url="postgresql://x@y/z", cors_origins=["*"])


def test_database_url_spellings() -> None:
    assert sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert sqlalchemy_url("postgresql://u@h/d") == "postgresql+psycopg2://u@h/d"
    with pytest.raises(ValueError, match="PostgreSQL"):
        sqlalchemy_url("sqlite:///x.db")


def test_schema_gate(engine) -> None:  # type: ignore[no-untyped-def]
    require_current_schema(engine)  # migrated by the fixture: passes
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        with pytest.raises(SchemaOutdated, match=f"needs {head_revision()}"):
            require_current_schema(engine)
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()})
