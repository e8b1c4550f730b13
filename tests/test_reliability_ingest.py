"""Faults in the ingest path, each against the real processes: the ingest service killed with SIGKILL in
the middle of a 1,000,000-reading stream, an upstream that hangs or answers too slowly, and two pulls
of the same meter at once. Whatever happens, every reading ends up stored exactly once, and each run
says what happened to it.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import Engine, text

from ingest_service.mirror import Mirror
from ingest_service.server import MAX_PENDING_PULLS
from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc
from tests.ingest_helpers import assert_rollup_exact, raw_facts, stored_facts
from tests.reliability_helpers import TENANT, SyntheticStream, api_headers, wait_until
from tests.seed import IMPORT_MUID, published_records

UPSTREAM_TIMEOUT = 0.5
PAGE_LIMIT = 1000
LOCK_WAIT = 1.5
PULL_ENV = {
    "UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
    "UPSTREAM_CONNECT_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
    "UPSTREAM_RETRIES": "1",
    "UPSTREAM_BACKOFF_SECONDS": "0.05",
    "UPSTREAM_PAGE_LIMIT": str(PAGE_LIMIT),
    "PULL_LOCK_WAIT_SECONDS": str(LOCK_WAIT),
    "LOG_LEVEL": "WARNING",
}
API = ingest_pb2.SOURCE_KIND_API
STATIC = ingest_pb2.SOURCE_KIND_STATIC
SUCCEEDED, FAILED = ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED, ingest_pb2.INGEST_RUN_STATUS_FAILED


def ingest_service(
    database_url: str, log_dir: Path, env: dict[str, str]
) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    topology = Topology.on_free_ports(database_url, log_dir, env)
    topology.start(["ingest"])
    try:
        with sync_channel(topology.address("ingest")) as channel:
            yield ingest_pb2_grpc.IngestServiceStub(channel)
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def ingest(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    """Short upstream timeouts and one retry."""
    yield from ingest_service(database_url, tmp_path_factory.mktemp("reliability-ingest"), PULL_ENV)


@pytest.fixture(scope="module")
def ingest_patient(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    """A patient upstream client, so that a slow answer holds the meter instead of failing the pull."""
    env = {**PULL_ENV, "UPSTREAM_TIMEOUT_SECONDS": "30"}
    yield from ingest_service(database_url, tmp_path_factory.mktemp("reliability-locks"), env)


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with Mirror() as server:
        yield server


def pull(stub: ingest_pb2_grpc.IngestServiceStub, url: str, kind: int, wait: bool = True) -> ingest_pb2.IngestRun:
    request = ingest_pb2.PullMetersRequest(muids=[IMPORT_MUID], source_url=url, source_kind=kind, wait=wait)  # type: ignore[arg-type]
    return stub.PullMeters(request, timeout=60, metadata=TENANT)


def api_page_path(start: str, stop_prefix: str) -> str:
    """The path of an API page request (as the ingest client spells it) up to the `stop` prefix."""
    return (
        f"/meterdata/measurement?muid={IMPORT_MUID}&measurement=energy&limit={PAGE_LIMIT}"
        f"&start={start.replace(':', '%3A')}&stop={stop_prefix}"
    )


def assert_exactly_once(engine: Engine, muid: str) -> None:
    """Every published reading stored once: count, distinct keys, exact sum, and no revision."""
    facts, stored = raw_facts(muid), stored_facts(engine, muid)
    assert stored["count"] == facts["count"] == 2688
    assert abs(stored["sum"] - float(facts["sum"])) < 1e-9  # type: ignore[operator,arg-type]
    with engine.connect() as connection:
        distinct = connection.execute(
            text("SELECT count(DISTINCT (obis, ts)) FROM readings WHERE muid = :m"), {"m": muid}
        ).scalar()
        revisions = connection.execute(text("SELECT count(*) FROM reading_revisions")).scalar()
        channel_count = connection.execute(
            text("SELECT reading_count FROM meter_channels WHERE muid = :m"), {"m": muid}
        ).scalar()
    assert (distinct, revisions, channel_count) == (2688, 0, 2688)
    assert_rollup_exact(engine)


# -- the upstream hangs or answers too slowly ---------------------------------------------------------
def test_slow_upstream_fails_the_pull_clearly_and_the_next_pull_resumes_from_the_watermark(
    ingest, mirror: Mirror, clean_db: Engine
) -> None:  # type: ignore[no-untyped-def]
    published = mirror.files[IMPORT_MUID]
    first_half = [r for r in published_records(IMPORT_MUID) if r["timestamp"] < "2023-02-15"]
    mirror.set_file(IMPORT_MUID, json.dumps({"data": first_half}).encode())
    run = pull(ingest, mirror.url, API)
    assert (run.status, run.inserted) == (SUCCEEDED, 1344)
    mirror.set_file(IMPORT_MUID, published)

    # Second pull: starts after the watermark (2023-02-14T23:45Z); its newest page (1000 of the 1344
    # new readings) arrives, the next page hangs for longer than the timeout, on every attempt.
    resume = "2023-02-15T00:00:00Z"
    mirror.inject(api_page_path(resume, "2023-"), 200, b'{"data":[]}', "application/json", times=2, delay_seconds=3)
    started = time.monotonic()
    failed = pull(ingest, mirror.url, API)
    elapsed = time.monotonic() - started
    assert failed.status == FAILED
    assert f"meter {IMPORT_MUID}" in failed.error
    assert f"timed out: no answer within {UPSTREAM_TIMEOUT:g} s (ReadTimeout); gave up after 2 attempts" in failed.error
    assert elapsed < 2 * UPSTREAM_TIMEOUT + 2, elapsed  # two attempts and a short backoff, no hang
    # Nothing of the cut range was written: the watermark did not jump over the missing older page.
    assert (failed.received, failed.inserted) == (0, 0)
    assert stored_facts(clean_db, IMPORT_MUID)["count"] == 1344

    mirror.requests.clear()
    resumed = pull(ingest, mirror.url, API)
    assert resumed.status == SUCCEEDED, resumed.error
    assert (resumed.received, resumed.inserted, resumed.unchanged) == (1344, 1344, 0)
    assert f"start={resume.replace(':', '%3A')}" in mirror.requests[0]  # resumed at the watermark
    assert_exactly_once(clean_db, IMPORT_MUID)


@pytest.fixture
def hung_upstream() -> Iterator[str]:
    """An HTTP upstream that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_hung_upstream_fails_the_pull_at_the_timeout(ingest, hung_upstream: str, clean_db: Engine) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    run = pull(ingest, hung_upstream, STATIC)
    elapsed = time.monotonic() - started
    assert (
        run.status == FAILED and "timed out: no answer within" in run.error and "gave up after 2 attempts" in run.error
    )
    assert elapsed < 2 * UPSTREAM_TIMEOUT + 2, elapsed
    assert stored_facts(clean_db, IMPORT_MUID)["count"] == 0


# -- two pulls of the same meter at once ---------------------------------------------------------------
def slow_first_answer(mirror: Mirror, seconds: float) -> None:
    """The next static request for the meter is answered correctly, but only after `seconds`."""
    mirror.inject(
        f"/challenge/{IMPORT_MUID}", 200, mirror.files[IMPORT_MUID], "application/json", delay_seconds=seconds
    )


def test_second_pull_of_a_meter_waits_for_the_first_and_doubles_nothing(
    ingest, mirror: Mirror, clean_db: Engine
) -> None:  # type: ignore[no-untyped-def]
    slow_first_answer(mirror, LOCK_WAIT / 2)
    first = pull(ingest, mirror.url, STATIC, wait=False)
    wait_until(lambda: mirror.requests, 5, "the first pull asked the upstream")  # it holds the meter now
    second = pull(ingest, mirror.url, STATIC)
    first = ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=first.id), timeout=10, metadata=TENANT)
    assert (first.status, first.inserted, first.unchanged) == (SUCCEEDED, 2688, 0)
    assert (second.status, second.inserted, second.updated, second.unchanged) == (SUCCEEDED, 0, 0, 2688)
    assert second.finished_at.ToDatetime() >= first.finished_at.ToDatetime()  # it ran after the first
    assert f"meter {IMPORT_MUID}: waited" in second.source and f"for pull run {first.id} to finish it" in second.source
    assert "waited" not in first.source
    assert_exactly_once(clean_db, IMPORT_MUID)


def test_second_pull_skips_a_meter_held_longer_than_it_waits(ingest_patient, mirror: Mirror, clean_db: Engine) -> None:  # type: ignore[no-untyped-def]
    ingest = ingest_patient
    slow_first_answer(mirror, LOCK_WAIT + 1)
    first = pull(ingest, mirror.url, STATIC, wait=False)
    wait_until(lambda: mirror.requests, 5, "the first pull asked the upstream")
    started = time.monotonic()
    second = pull(ingest, mirror.url, STATIC)
    assert LOCK_WAIT * 0.9 < time.monotonic() - started < LOCK_WAIT + 1
    assert second.status == FAILED and second.received == 0
    assert (
        f"meter {IMPORT_MUID}: skipped: pull run {first.id} still held the meter after {LOCK_WAIT:g} s" == second.error
    )
    assert len(mirror.requests) == 1  # the skipping pull never asked the upstream
    first = wait_until(
        lambda: (
            (
                r := ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=first.id), timeout=10, metadata=TENANT)
            ).finished_at.seconds
            and r
        ),
        10,
        "the first pull finished",
    )
    assert (first.status, first.inserted) == (SUCCEEDED, 2688)
    assert_exactly_once(clean_db, IMPORT_MUID)


def test_a_burst_of_pulls_is_bounded_and_the_service_keeps_answering(
    ingest_patient, mirror: Mirror, clean_db: Engine
) -> None:  # type: ignore[no-untyped-def]
    ingest = ingest_patient
    mirror.inject(
        f"/challenge/{IMPORT_MUID}", 200, mirror.files[IMPORT_MUID], "application/json", times=20, delay_seconds=0.5
    )
    accepted, refused = [], []
    for _ in range(12):
        try:
            accepted.append(pull(ingest, mirror.url, STATIC, wait=False))
        except grpc.RpcError as error:
            refused.append(error)
    assert len(accepted) == MAX_PENDING_PULLS and len(refused) == 12 - MAX_PENDING_PULLS
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry later" in e.details() for e in refused)  # type: ignore[attr-defined]
    began = time.monotonic()  # the queued pulls take neither the threads nor the connections of the calls
    listed = ingest.ListIngestRuns(ingest_pb2.ListIngestRunsRequest(page_size=50), timeout=5, metadata=TENANT)
    assert (
        time.monotonic() - began < 1 and sum(r.status == ingest_pb2.INGEST_RUN_STATUS_RUNNING for r in listed.runs) >= 2
    )

    def finished() -> list[ingest_pb2.IngestRun] | None:
        runs = [
            ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=r.id), timeout=5, metadata=TENANT) for r in accepted
        ]
        return runs if all(r.finished_at.seconds for r in runs) else None

    runs = wait_until(finished, 30, "every accepted pull ended")
    assert sum(r.inserted for r in runs) == 2688 and all(r.status == SUCCEEDED or "skipped" in r.error for r in runs)
    assert_exactly_once(clean_db, IMPORT_MUID)


# -- the ingest service killed in the middle of a stream -----------------------------------------------
STREAM = SyntheticStream(meters=100, per_meter=10_000)  # 1,000,000 readings in 100 messages


@pytest.mark.heavy
def test_sigkill_mid_stream_then_the_client_resends_everything_lands_exactly_once(
    database_url: str, clean_db: Engine, tmp_path: Path
) -> None:
    topology = Topology.on_free_ports(database_url, tmp_path, {"LOG_LEVEL": "WARNING", "GRPC_DEADLINE_SECONDS": "2"})
    topology.start(["query", "ingest", "gateway"])  # the query service also verifies the gateway's keys
    headers = api_headers(database_url)
    try:
        failures: list[grpc.RpcError] = []

        def stream() -> ingest_pb2.IngestRun | None:
            with sync_channel(topology.address("ingest")) as channel:
                try:
                    return ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(
                        STREAM.requests(), timeout=120, metadata=TENANT
                    )
                except grpc.RpcError as error:
                    failures.append(error)
                    return None

        def running_stream() -> tuple[int, int] | None:
            assert not failures, failures[0]
            with clean_db.connect() as connection:
                row = connection.execute(
                    text("SELECT id, inserted FROM ingest_runs WHERE kind = 'stream' AND status = 'running'")
                ).first()
            return (row.id, row.inserted) if row is not None and row.inserted >= STREAM.count * 0.4 else None

        sender = threading.Thread(target=stream)
        sender.start()
        killed_run, _ = wait_until(running_stream, 60, "the stream reached 40 %")
        topology.processes["ingest"].process.send_signal(signal.SIGKILL)
        sender.join(30)
        assert not sender.is_alive() and len(failures) == 1
        assert failures[0].code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]

        with httpx.Client(base_url=topology.gateway_url, headers=headers, timeout=10) as client:  # stopped: 503
            began = time.monotonic()
            response = client.get("/api/v1/ingest/runs")
            assert response.status_code == 503 and response.json()["backend"] == "ingest", response.text
            assert time.monotonic() - began < 2
            assert client.get("/readyz").json()["backends"]["ingest"].startswith("UNAVAILABLE")

        topology.start(["ingest"])  # the same port; the killed run's session is gone with its process
        with sync_channel(topology.address("ingest")) as channel:  # the client retries: the whole stream again
            retry = ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(
                STREAM.requests(), timeout=120, metadata=TENANT
            )
        assert retry.status == SUCCEEDED and retry.rejected == 0

        with clean_db.connect() as connection:
            killed = connection.execute(
                text("SELECT status, error, received, inserted FROM ingest_runs WHERE id = :id"), {"id": killed_run}
            ).one()
            count, keys, total = connection.execute(
                text("SELECT count(*), count(DISTINCT (muid, obis, ts)), sum(value) FROM readings")
            ).one()
            channel_total = connection.execute(text("SELECT sum(reading_count) FROM meter_channels")).scalar()
        # The killed run kept only whole batches, and says it was interrupted.
        assert killed.status == "failed" and killed.error.startswith("interrupted:")
        assert killed.inserted % STREAM.per_meter == 0 and killed.received == killed.inserted
        assert (retry.received, retry.inserted, retry.unchanged) == (
            STREAM.count,
            STREAM.count - killed.inserted,
            killed.inserted,
        )
        # Every reading exactly once: the count, the distinct keys, and the generator's own exact sum.
        assert (count, keys, channel_total) == (STREAM.count, STREAM.count, STREAM.count)
        assert total == STREAM.total
        assert assert_rollup_exact(clean_db) == STREAM.count // 4
    finally:
        topology.stop()
