"""The load test at suite size: concurrent clients mixing series, readings and summary calls through the
gateway while an ingest stream writes, with no error, and latency percentiles reported. `make bench`
runs the same generator (`meterdata.loadtest`) at full size: 50 clients for 60 s."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from meterdata.loadtest import run_load
from meterdata.runner import Topology
from tests.reliability_helpers import UNLIMITED_ENV, api_headers
from tests.seed import EXPORT_MUID, IMPORT_MUID, seed_published

CLIENTS, SECONDS, INGEST_RATE = 10, 5.0, 5_000


@pytest.mark.heavy
def test_ten_clients_for_five_seconds_while_ingesting_answer_without_error(
    database_url: str, clean_db: Engine, tmp_path: Path
) -> None:
    seed_published(clean_db)
    topology = Topology.on_free_ports(database_url, tmp_path, {**UNLIMITED_ENV, "LOG_LEVEL": "WARNING"})
    topology.start()
    try:
        report = run_load(
            topology.gateway_url, clients=CLIENTS, seconds=SECONDS, headers=api_headers(database_url),
            ingest_address=topology.address("ingest"), ingest_rate=INGEST_RATE,
        )  # fmt: skip
    finally:
        topology.stop()
    print(report.summary())
    assert report.errors == 0, report.error_samples
    assert report.statuses == {"200": report.requests}
    assert all(report.by_kind[kind].requests > 0 for kind in ("series", "readings", "summary")), report.by_kind
    assert report.requests >= CLIENTS * SECONDS  # at least one answer per client and second
    assert 0 < report.p50_ms <= report.p95_ms <= report.p99_ms < 30_000
    # The stream ran alongside and landed whole, next to the published meters it did not touch.
    ingest = report.ingest
    assert ingest is not None and ingest.status == "succeeded", ingest
    assert ingest.readings >= INGEST_RATE * SECONDS * 0.5 and ingest.inserted == ingest.readings
    with clean_db.connect() as connection:
        stored = dict(connection.execute(text("SELECT muid::text, count(*) FROM readings GROUP BY 1")).all())
    assert stored.pop(IMPORT_MUID) == stored.pop(EXPORT_MUID) == 2688
    assert sum(stored.values()) == ingest.readings
