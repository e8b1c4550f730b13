"""One running stack for the query and gateway tests: real PostgreSQL, the query and ingest services and
the gateway as child processes (the runner's `Topology`), and the upstream mirror for ingest pulls.

Data is written straight to the database with `tests.seed` (these tests are about reading), once
per package: both published meters, a synthetic meter across the 2023 DST switches, and a copy of
the import meter with one hour removed. Expected values are computed in the tests from the raw
JSON or from the synthetic points, with pandas, never with project code.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from ingest_service.mirror import Mirror
from meterdata.runner import Topology
from tests.query_api.helpers import DST_MUID, GAP_MUID, Stack, dst_points, gap_points
from tests.seed import EXPORT_MUID, IMPORT_MUID, IMPORT_OBIS, published_points, seed_readings


@pytest.fixture(scope="package")
def seeded(engine: Engine) -> Engine:
    for muid in (IMPORT_MUID, EXPORT_MUID):
        obis, points = published_points(muid)
        seed_readings(engine, muid, obis, points)
    seed_readings(engine, DST_MUID, IMPORT_OBIS, dst_points())
    seed_readings(engine, GAP_MUID, IMPORT_OBIS, gap_points())
    return engine


@pytest.fixture(scope="package")
def stack(database_url: str, seeded: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Mirror() as mirror:
        env = {"UPSTREAM_BASE_URL": mirror.url, "UPSTREAM_FALLBACK_TO_MIRROR": "false", "LOG_LEVEL": "WARNING"}
        topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("api-logs"), env)
        topology.start(["query", "ingest", "gateway"])
        try:
            with httpx.Client(base_url=topology.gateway_url, headers=topology.auth_headers, timeout=30) as client:
                yield Stack(topology, client, mirror)
        finally:
            topology.stop()
