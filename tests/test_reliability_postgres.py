"""PostgreSQL going away under the services, on a server of the test's own (never DATABASE_URL's):

- stopped and started again under query load: the gateway answers every call in time and never 500,
  and the services recover without a restart (pool pre-ping; gRPC retries UNAVAILABLE only);
- crashed (immediate shutdown) right after the ingest service acknowledged a stream: every
  acknowledged reading is there after the restart (synchronous_commit stays on).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from meterdata import PROJECT_ROOT
from meterdata.db import migrate, sqlalchemy_url
from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc
from tests.reliability_helpers import (
    TENANT,
    UNLIMITED_ENV,
    OwnPostgres,
    SyntheticStream,
    api_headers,
    wait_until,
)
from tests.seed import EXPORT_MUID, IMPORT_MUID, seed_published

DEADLINE = 3.0  # GRPC_DEADLINE_SECONDS of the gateway and analytics in these tests
SUCCEEDED = ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path_factory.mktemp("own-pg"))
    try:
        yield server
    finally:
        server.close()


def fresh_database(server: OwnPostgres, name: str) -> tuple[str, Engine]:
    url = server.database_url(name)
    migrate(url)
    return url, create_engine(sqlalchemy_url(url), pool_pre_ping=True)


# -- PostgreSQL stopped and started under query load ---------------------------------------------------
@dataclass
class Call:
    phase: str
    path: str
    status: int | str
    seconds: float
    body: str
    content_type: str = ""


@dataclass
class Outage:
    """What the clients saw before, during and after the outage."""

    calls: list[Call] = field(default_factory=list)
    pids_before: dict[str, int] = field(default_factory=dict)
    pids_after: dict[str, int] = field(default_factory=dict)
    stream_during: str = ""  # how the stream running into the outage ended
    interrupted_run: tuple[str, int] | None = None  # (status, inserted) of that stream's run afterwards
    stored_of_interrupted: int = -1
    stream_after: ingest_pb2.IngestRun | None = None
    runs_still_running: int = -1

    def phase(self, name: str, path_prefix: str = "/api/") -> list[Call]:
        return [c for c in self.calls if c.phase == name and c.path.startswith(path_prefix)]

    def transitions(self) -> list[Call]:
        """Calls in flight while the database stopped or started."""
        return [c for c in self.calls if "->" in c.phase or c.phase in ("stopping", "restarting")]


QUERY_PATHS = (
    f"/api/v1/meters/{IMPORT_MUID}/series?interval=day&tz=Europe/Zurich",
    f"/api/v1/meters/{EXPORT_MUID}/readings?start=2023-02-10&end=2023-02-11&limit=96",
    f"/api/v1/meters/{IMPORT_MUID}/summary?start=2023-02-01&end=2023-02-08",
    "/api/v1/meters",
)


class Load:
    """Clients calling the gateway in a loop, each call recorded with the phase it started in."""

    def __init__(self, base_url: str, headers: dict[str, str], outage: Outage) -> None:
        self.phase = "before"
        self.outage = outage
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(base_url, headers, paths), daemon=True)
            for paths in (QUERY_PATHS[:2], QUERY_PATHS[2:], ("/readyz",))
        ]

    def _loop(self, base_url: str, headers: dict[str, str], paths: tuple[str, ...]) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                for path in paths:
                    phase, started = self.phase, time.monotonic()
                    try:
                        response = client.get(path)
                        status, body = response.status_code, response.text[:400]
                        kind = response.headers.get("content-type", "")
                    except httpx.HTTPError as error:
                        status, body, kind = type(error).__name__, str(error), ""
                    if self.phase != phase:  # in flight across a change: it belongs to neither phase
                        phase = f"{phase}->{self.phase}"
                    self.outage.calls.append(Call(phase, path, status, time.monotonic() - started, body, kind))
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def paced_stream(meters: int, per_message: int, every: float, seed: int) -> Iterator[ingest_pb2.WriteReadingsRequest]:
    """A slow producer: one message of `per_message` readings every `every` seconds, for `meters` meters."""
    stream = SyntheticStream(meters=meters, per_meter=per_message, seed=seed)
    for request in stream.requests():
        yield request
        time.sleep(every)


@pytest.fixture(scope="module")
def outage(own_postgres: OwnPostgres, tmp_path_factory: pytest.TempPathFactory) -> Outage:
    url, engine = fresh_database(own_postgres, "outage")
    seed_published(engine)
    env = {**UNLIMITED_ENV, "GRPC_DEADLINE_SECONDS": str(DEADLINE), "LOG_LEVEL": "WARNING"}
    topology = Topology.on_free_ports(url, tmp_path_factory.mktemp("outage-logs"), env)
    topology.start()
    seen = Outage()
    try:
        headers = api_headers(url)
        seen.pids_before = {name: p.process.pid for name, p in topology.processes.items()}
        with sync_channel(topology.address("ingest")) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)

            def stream_into_the_outage() -> None:
                try:
                    stub.WriteReadings(paced_stream(100, 500, 0.1, 0xA1), timeout=60, metadata=TENANT)
                    seen.stream_during = "succeeded"
                except grpc.RpcError as error:
                    seen.stream_during = error.code().name  # type: ignore[attr-defined]

            producer = threading.Thread(target=stream_into_the_outage, daemon=True)
            with Load(topology.gateway_url, headers, seen) as load:
                producer.start()
                time.sleep(1.5)
                load.phase = "stopping"  # calls started while pg_ctl stops may still be served
                own_postgres.stop("fast")
                load.phase = "detecting"  # the services poll the database's reachability every second
                time.sleep(1.5)
                load.phase = "outage"
                time.sleep(3.0)
                load.phase = "restarting"
                own_postgres.start()
                time.sleep(1.5)
                load.phase = "after"
                time.sleep(2.0)
            producer.join(30)
            # The services recovered by themselves: a new stream lands, and no run stays `running`.
            seen.stream_after = stub.WriteReadings(
                SyntheticStream(meters=2, per_meter=1000, seed=0xA2).requests(), timeout=60, metadata=TENANT
            )
        with engine.connect() as connection:
            first = connection.execute(
                text("SELECT min(id) FROM ingest_runs WHERE kind = 'stream' AND source <> 'seed'")
            )
            run_id = first.scalar()
            row = connection.execute(
                text("SELECT status, inserted FROM ingest_runs WHERE id = :i"), {"i": run_id}
            ).one()
            seen.interrupted_run = (row.status, row.inserted)
            seen.stored_of_interrupted = connection.execute(
                text("SELECT count(*) FROM readings WHERE ingest_run_id = :i"), {"i": run_id}
            ).scalar_one()
            seen.runs_still_running = connection.execute(
                text("SELECT count(*) FROM ingest_runs WHERE status = 'running'")
            ).scalar_one()
        seen.pids_after = {name: p.process.pid for name, p in topology.processes.items() if p.process.poll() is None}
    finally:
        topology.stop()
        engine.dispose()
    return seen


@pytest.mark.heavy
def test_postgres_outage_is_answered_in_time_never_500_and_the_services_recover_without_restart(outage: Outage) -> None:
    before, during, after = outage.phase("before"), outage.phase("outage"), outage.phase("after")
    for name in ("before", "outage", "transitions", "after"):
        calls = outage.transitions() if name == "transitions" else outage.phase(name, "/")
        statuses = sorted({str(c.status) for c in calls})
        print(f"{name}: {len(calls)} calls, statuses {statuses}, slowest {max(c.seconds for c in calls):.3f} s")
    print(f"stream into the outage: {outage.stream_during}, its run {outage.interrupted_run}")
    assert before and during and after
    assert {c.status for c in before} == {200}
    # While the database is away every call is answered, in time, as a backend failure naming the backend.
    for call in during:
        assert call.seconds < DEADLINE + 1, call
        assert call.status in (502, 503), call
        assert call.content_type == "application/problem+json" and '"backend":' in call.body, call
    for (
        call
    ) in outage.transitions():  # while it goes and comes back: in time (a 504 at the deadline at worst), never a 500
        assert call.seconds < DEADLINE + 1 and call.status in (200, 502, 503, 504), call
    # Back by itself: the same processes answer every call again.
    assert {c.status for c in after} == {200}, [c for c in after if c.status != 200][:3]
    assert outage.pids_after == outage.pids_before
    # The stream that ran into the outage failed and says so; what it had committed is intact.
    assert outage.stream_during not in ("", "succeeded")
    assert outage.interrupted_run is not None and outage.interrupted_run[0] == "failed"
    assert outage.stored_of_interrupted == outage.interrupted_run[1] > 0
    assert outage.stream_after is not None and outage.stream_after.status == SUCCEEDED
    assert outage.stream_after.inserted == 2000 and outage.runs_still_running == 0


@pytest.mark.heavy
def test_postgres_outage_is_503_and_readyz_reports_it_while_it_lasts(outage: Outage) -> None:
    during = outage.phase("outage") + outage.phase("detecting")
    assert {c.status for c in during} == {503}, {c.status for c in during}
    ready_during = [c for c in outage.phase("outage", "/readyz")]
    assert ready_during and all(c.status == 503 for c in ready_during)
    assert {c.status for c in outage.phase("after", "/readyz")} == {200}


# -- a crash right after the acknowledgement -----------------------------------------------------------
@pytest.mark.heavy
def test_acknowledged_readings_survive_a_postgres_crash(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    url, engine = fresh_database(own_postgres, "durability")
    # Commits wait for the WAL flush: on, from the defaults, and no code of ours turns it off.
    with engine.connect() as connection:
        settings = dict(
            connection.execute(
                text(
                    "SELECT name, setting || ' (' || source || ')' FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync')"
                )
            ).all()
        )
    assert settings == {"synchronous_commit": "on (default)", "fsync": "on (default)"}
    sources = [
        p for d in ("ingest_service", "meterdata", "query_service", "deploy") for p in (PROJECT_ROOT / d).rglob("*")
    ]
    assert not [p for p in sources if p.is_file() and p.suffix in {".py", ".sql", ".yaml", ".env", ".conf"}
                and "synchronous_commit" in p.read_text(errors="ignore")]  # fmt: skip

    stream = SyntheticStream(meters=4, per_meter=5000, seed=0xD1)
    topology = Topology.on_free_ports(url, tmp_path, {"LOG_LEVEL": "WARNING"})
    topology.start(["ingest"])
    try:
        with sync_channel(topology.address("ingest")) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            run = stub.WriteReadings(stream.requests(), timeout=60, metadata=TENANT)
            own_postgres.stop("immediate")  # the moment after the acknowledgement: a crash, no checkpoint
            assert (run.status, run.inserted) == (SUCCEEDED, stream.count)
            log_before = (own_postgres.pgdata / "log").read_text(errors="ignore")
            own_postgres.start()
            log = (own_postgres.pgdata / "log").read_text(errors="ignore")[len(log_before) :]
            assert "not properly shut down" in log and "automatic recovery in progress" in log  # WAL replayed

            with engine.connect() as connection:
                count, total = connection.execute(
                    text("SELECT count(*), sum(value) FROM readings WHERE ingest_run_id = :r"), {"r": run.id}
                ).one()
                status = connection.execute(
                    text("SELECT status FROM ingest_runs WHERE id = :r"), {"r": run.id}
                ).scalar()
                show = connection.execute(text("SHOW synchronous_commit")).scalar()
            assert (count, total, status, show) == (stream.count, stream.total, "succeeded", "on")

            # The same ingest process writes again once the server is back.
            later = SyntheticStream(meters=1, per_meter=96, seed=0xD2)
            again = wait_until(lambda: _try_write(stub, later), 20, "the ingest service writes after the crash")
            assert (again.status, again.inserted) == (SUCCEEDED, 96)
    finally:
        topology.stop()
        engine.dispose()


def _try_write(stub: ingest_pb2_grpc.IngestServiceStub, stream: SyntheticStream) -> ingest_pb2.IngestRun | None:
    try:
        return stub.WriteReadings(stream.requests(), timeout=10, metadata=TENANT)
    except grpc.RpcError:
        return None
