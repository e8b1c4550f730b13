"""The one settings object of every meterdata process, read from environment variables (and `.env`).

Every field maps to an upper-case environment variable of the same name (``DATABASE_URL``,
``QUERY_PORT``, ...). `deploy/env/*.env` and `.env.example` document each of them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterdata import PROJECT_ROOT
from meterdata.tenancy import is_tenant

PUBLIC_BUCKET_URL = "https://exnaton-public-s3-bucket20230329123331528000000001.s3.eu-central-1.amazonaws.com"
PUBLISHED_MUIDS = ("95ce3367-cbce-4a4d-bbe3-da082831d7bd", "1db7649e-9342-4e04-97c7-f0ebb88ed1f8")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    environment: Literal["development", "test", "production"] = "development"

    # Database: a PostgreSQL URL, or empty for the embedded server under data_dir.
    database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)

    # gRPC services: where they listen, and where clients find them.
    grpc_listen_host: str = "127.0.0.1"
    ingest_port: int = Field(50051, ge=0, le=65535)
    query_port: int = Field(50052, ge=0, le=65535)
    analytics_port: int = Field(50053, ge=0, le=65535)
    ingest_address: str = "127.0.0.1:50051"
    query_address: str = "127.0.0.1:50052"
    analytics_address: str = "127.0.0.1:50053"
    grpc_deadline_seconds: float = Field(10.0, gt=0)
    grpc_shutdown_grace_seconds: float = Field(5.0, ge=0)

    # REST gateway.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8000, ge=0, le=65535)
    # Longer than any proxy's idle timeout in front (60 s on most): a connection the proxy reuses must not
    # be closed by the gateway at the same moment a request arrives on it (a reset, or a 502 at the proxy).
    gateway_keep_alive_seconds: int = Field(75, ge=1)
    cors_origins: list[str] = ["http://localhost:5173", "http://127.0.0.1:5173"]

    # Upstream meter API.
    upstream_base_url: str = PUBLIC_BUCKET_URL
    upstream_kind: Literal["static", "api"] = "static"
    upstream_muids: list[str] = list(PUBLISHED_MUIDS)
    upstream_history_start: str = Field("2023-02-01T00:00:00+00:00", description="first instant an API pull asks for")
    upstream_page_limit: int = Field(5000, ge=1, le=100_000)
    upstream_timeout_seconds: float = Field(10.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(3.0, gt=0)
    upstream_retries: int = Field(4, ge=0)
    upstream_backoff_seconds: float = Field(0.5, ge=0)
    # The offline fallback: the bundled snapshot served by the local mirror when the upstream is unreachable.
    upstream_fallback_to_mirror: bool = True

    # Validation.
    value_ceiling_kwh: float = Field(1000.0, gt=0, description="largest plausible kWh in one quarter-hour")
    ingest_batch_size: int = Field(10_000, ge=1)
    pull_lock_wait_seconds: float = Field(
        600.0, ge=0, description="how long a pull waits for another pull of the same meter before skipping it"
    )

    # Query limits.
    default_time_zone: str = "Europe/Zurich"
    max_page_size: int = Field(10_000, ge=1)
    max_series_buckets: int = Field(20_000, ge=1)

    # Analytics.
    site_latitude: float = Field(47.3769, ge=-90, le=90)
    site_longitude: float = Field(8.5417, ge=-180, le=180)
    site_name: str = "Zurich"

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"

    # Security: tenants, API keys, limits, TLS (docs/DEPLOY.md, "Security").
    grpc_default_tenant: str = Field(
        "", description="tenant assumed for a gRPC call without x-meterdata-tenant; empty: such calls are refused"
    )
    api_key_cache_seconds: float = Field(30.0, ge=0, description="how long the gateway trusts a verified key")
    metrics_require_key: bool = False
    rate_limit_per_second: float = Field(50.0, ge=0, description="requests per second per API key; 0 turns it off")
    rate_limit_burst: int = Field(100, ge=1)
    auth_failures_per_minute: int = Field(
        60, ge=0, description="refused API key lookups per client address and minute before 429; 0 turns it off"
    )
    max_request_body_bytes: int = Field(65_536, ge=1)
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    grpc_tls_ca_file: str = ""
    gateway_tls_cert_file: str = ""
    gateway_tls_key_file: str = ""

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        """In production a wildcard CORS origin is a mistake, not a default (the embedded database is
        refused where a database is opened: processes that need none need no DATABASE_URL)."""
        if self.environment == "production" and "*" in self.cors_origins:
            raise ValueError("CORS_ORIGINS must not contain '*' when ENVIRONMENT=production")
        for prefix in ("grpc_tls", "gateway_tls"):
            if bool(getattr(self, f"{prefix}_cert_file")) != bool(getattr(self, f"{prefix}_key_file")):
                raise ValueError(
                    f"{prefix.upper()}_CERT_FILE and {prefix.upper()}_KEY_FILE are set together or not at all"
                )
        if self.grpc_default_tenant and not is_tenant(self.grpc_default_tenant):
            raise ValueError("GRPC_DEFAULT_TENANT is not a tenant name (lower-case letters, digits, '_' and '-')")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
