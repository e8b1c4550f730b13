"""The one database engine factory, the transaction scope, the embedded server and the schema gate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection

from meterdata.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutdated(RuntimeError):
    """The database schema is older than this code needs; run the migrations first."""


def sqlalchemy_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and pin the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme of {url.split(':', 1)[0]!r}")


@lru_cache(maxsize=8)
def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """One pooled engine per URL and process; pre-ping so a restarted PostgreSQL is survived."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Sessions in UTC: instants are zone-free inside the services; local buckets name their zone explicitly.
        connect_args={"application_name": "meterdata", "options": "-c timezone=UTC", "connect_timeout": 5},
    )


def engine_from_settings(settings: Settings) -> Engine:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set; the runner starts an embedded PostgreSQL and sets it")
    return make_engine(settings.database_url, settings.db_pool_size, settings.db_max_overflow)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    with engine.begin() as connection:
        yield connection


def start_embedded_postgres(data_dir: Path, cleanup_mode: str | None = "stop") -> str:
    """Start (or attach to) the embedded PostgreSQL from the `pgserver` wheel and return its URL."""
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")  # pgserver asks for XDG_RUNTIME_DIR; /tmp is fine
    import pgserver  # imported here: only the runner and the tests need it

    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
    _embedded_servers.append(server)  # keep the handle alive for the life of the process
    return server.get_uri()


_embedded_servers: list[object] = []


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def require_current_schema(engine: Engine) -> None:
    """Refuse to serve on a schema older than this code: a clear message beats a failing query later."""
    needed = head_revision()
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar() if exists else None
    if current != needed:
        raise SchemaOutdated(
            f"database schema is at revision {current or 'none'}, this code needs {needed}: "
            "run `python -m meterdata migrate` (make run does it for you)"
        )


def database_reachable(engine: Engine) -> bool:
    """Whether a trivial query answers now: the readiness of the services that need the database."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return True
