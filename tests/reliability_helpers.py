"""Shared pieces of the fault, durability and load tests: a PostgreSQL server a test may stop and crash,
a synthetic reading stream with its own totals, and waiting for a condition with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from meterdata import PROJECT_ROOT
from meterdata.db import sqlalchemy_url
from meterdata.v1 import ingest_pb2

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """The first truthy value of `check()`, polled until `timeout` seconds (then AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last value {value!r})")
        time.sleep(interval)


# -- the gateway's API keys ---------------------------------------------------------------------------
# Limits a test of the gateway's behaviour under load or hostile input must not trip over (the rate
# limit has tests of its own). Settings ignore variables they do not know, so these are safe either way.
UNLIMITED_ENV = {"RATE_LIMIT_PER_SECOND": "0", "AUTH_FAILURES_PER_MINUTE": "0"}


# Every gRPC call names the tenant it acts for (the published meters are the default tenant's).
TENANT = (("x-meterdata-tenant", "default"),)


def api_headers(database_url: str, scope: str = "admin", tenant: str = "default") -> dict[str, str]:
    """Headers with a fresh API key, made the way an operator makes one: `python -m gateway keys create`."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "--tenant", tenant, "--scope", scope, "--note", "tests"],
        cwd=PROJECT_ROOT, env={**os.environ, "DATABASE_URL": database_url}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.split()[-1]}"}


# -- a stream of readings whose truth the test knows without the project's code ----------------------
STREAM_START = 1_672_531_200  # 2023-01-01T00:00Z
STREAM_OBIS = "0100011D00FF"


@dataclass(frozen=True)
class SyntheticStream:
    """`meters` x `per_meter` quarter-hours, one ReadingColumns block per message.

    Values are multiples of 1/1024 kWh: exact in binary floating point, so every partial sum is exact
    and the database's sum must equal the generator's sum to the last bit, in any order.
    """

    meters: int
    per_meter: int
    seed: int = 0xFEED

    def muid(self, index: int) -> str:
        return str(uuid.UUID(int=(self.seed << 64) | index, version=4))

    def values(self, index: int) -> np.ndarray:
        return ((np.arange(self.per_meter) * 7 + index * 13) % 1024) / 1024

    @property
    def count(self) -> int:
        return self.meters * self.per_meter

    @property
    def total(self) -> float:
        return float(sum(self.values(i).sum() for i in range(self.meters)))

    def requests(self) -> Iterator[ingest_pb2.WriteReadingsRequest]:
        ts = (STREAM_START + np.arange(self.per_meter, dtype=np.int64) * 900).tolist()
        for index in range(self.meters):
            columns = ingest_pb2.ReadingColumns(
                muid=self.muid(index), obis=STREAM_OBIS, ts_seconds=ts, values=self.values(index).tolist(),
                quality="measured", measurement="energy",
            )  # fmt: skip
            yield ingest_pb2.WriteReadingsRequest(columns=[columns], register_unknown_meters=index == 0)


# -- a PostgreSQL server of the test's own ------------------------------------------------------------
class OwnPostgres:
    """An embedded PostgreSQL (pgserver's binaries) that a test may stop, crash and start again.

    Never the server of DATABASE_URL: a CI server shared with other tests must not be stopped. The
    socket directory and port stay the same across restarts, so the URL the services hold stays valid.
    """

    def __init__(self, directory: Path) -> None:
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver

        self.pgdata = directory / "pgdata"
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.port = info.port
        self.user = self._server.system_user  # root runs PostgreSQL as a user of its own
        from pgserver._commands import POSTGRES_BIN_PATH

        self.pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        self.url = self._server.get_uri()

    def database_url(self, name: str) -> str:
        """A database of this server (created when missing)."""
        admin = create_engine(sqlalchemy_url(self.url), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(sqlalchemy_url(self.url)).set(database=name).render_as_string(hide_password=False)

    def _ctl(self, *args: str) -> None:
        subprocess.run([self.pg_ctl, "-D", str(self.pgdata), *args], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clean shutdown, sessions ended; `immediate`: a crash (no checkpoint, WAL replay at start)."""
        self._ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir} -p {self.port}'
        self._ctl("-w", "-o", options, "-l", str(self.pgdata / "log"), "start")

    def is_running(self) -> bool:
        return subprocess.run([self.pg_ctl, "-D", str(self.pgdata), "status"], user=self.user,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0  # fmt: skip

    def close(self) -> None:
        if not self.is_running():
            self.start()  # pgserver's own cleanup stops and deletes a running server
        self._server.cleanup()
