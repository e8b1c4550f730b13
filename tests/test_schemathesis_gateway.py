"""Hostile input over the gateway's whole OpenAPI document (schemathesis), against a live topology with
the published meters seeded and a valid API key (made with `python -m gateway keys create`): at least
100 generated cases per operation that takes input, every check schemathesis has, no 5xx, and every
response matching the documented schema.

Deliberate settings, each with its reason:
- phases `examples` and `fuzzing` (the coverage phase trips an internal error of schemathesis on
  Python 3.11, and with stateful it would double the time), two workers (with more, Hypothesis stops
  drawing for some operations well short of 100 cases);
- a 400 problem naming the parameter counts as a right answer to a request the schema admits (the
  schema types `tz`, `start`, `end`, `page_token` and the muids as plain strings; an unknown zone or a
  foreign page token can only be refused);
- valid but expensive sizes (`nlags`, `width`, `height`) are drawn small, to keep the run inside the
  suite's time budget; values outside the documented ranges are sent as drawn.

The bugs it found (integers beyond 32 bits were a 500, a JSON 0/1 passed for a boolean) are fixed; each
keeps the request that reproduced it in `test_former_findings_are_refused_with_the_parameter_named`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from meterdata.runner import Topology, free_port
from tests.reliability_helpers import UNLIMITED_ENV, api_headers
from tests.seed import EXPORT_MUID, IMPORT_MUID, published_points, seed_readings

EXAMPLES = 100
SEEDED_UNTIL = datetime(2023, 2, 5, 12, tzinfo=UTC)  # 4.5 days of each published meter: analytics stay quick
HOOKS = """
import schemathesis

# Valid but expensive values are drawn small (the suite's time budget); out-of-range values go as drawn.
CAPS = {"nlags": (150, 5000), "width": (400, 4000), "height": (250, 3000)}


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict):
        for name, (cap, limit) in CAPS.items():
            value = query.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and cap < value <= limit:
                query[name] = cap - value % (cap // 2)
    return query
"""


@dataclass
class Stack:
    topology: Topology
    headers: dict[str, str]


@pytest.fixture(scope="module")
def stack(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.conftest import ALL_TABLES

    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE")
    for muid in (IMPORT_MUID, EXPORT_MUID):
        obis, points = published_points(muid)
        seed_readings(engine, muid, obis, [(ts, value) for ts, value in points if ts < SEEDED_UNTIL])
    # POST /ingest/runs starts real pulls; an upstream that refuses at once keeps them from costing time.
    # A long backend deadline: on a busy machine a slow analysis must not turn into a 504 here (this test is
    # about input, the deadlines have tests of their own).
    env = {**UNLIMITED_ENV, "UPSTREAM_BASE_URL": f"http://127.0.0.1:{free_port()}", "UPSTREAM_RETRIES": "0",
           "UPSTREAM_FALLBACK_TO_MIRROR": "false", "GRPC_DEADLINE_SECONDS": "25", "LOG_LEVEL": "WARNING"}  # fmt: skip
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("schemathesis-logs"), env)
    topology.start()
    try:
        yield Stack(topology, api_headers(database_url))
    finally:
        topology.stop()


def config_text(headers: dict[str, str], deterministic: bool) -> str:
    header_lines = "\n".join(f"{name} = {json.dumps(value)}" for name, value in headers.items())
    return f"""
workers = 2
continue-on-failure = true
request-timeout = 30

[headers]
{header_lines}

[generation]
max-examples = {EXAMPLES}
deterministic = {str(deterministic).lower()}
database = "none"

[phases.examples]
enabled = true
[phases.coverage]
enabled = false
[phases.fuzzing]
enabled = true
[phases.stateful]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


@dataclass
class Run:
    """What the NDJSON event stream says: cases generated per operation, and every 5xx answer."""

    cases: Counter[str]
    server_errors: list[tuple[str, int, dict[str, Any]]]  # (operation, status, the case's query)


def read_events(ndjson: Path) -> Run:
    run = Run(Counter(), [])
    for line in ndjson.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        cases = recorder.get("cases", {})
        run.cases[recorder["label"]] += sum(1 for case in cases.values() if not case.get("parent_id"))
        for case_id, interaction in recorder.get("interactions", {}).items():
            status = (interaction.get("response") or {}).get("status_code", 0)
            if status >= 500:
                query = cases.get(case_id, {}).get("value", {}).get("query") or {}
                run.server_errors.append((recorder["label"], status, query))
    return run


@pytest.mark.heavy
def test_the_whole_openapi_document_under_schemathesis(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "st_hooks.py").write_text(HOOKS)
    (tmp_path / "schemathesis.toml").write_text(config_text(stack.headers, deterministic=bool(os.environ.get("CI"))))
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         f"{stack.topology.gateway_url}/openapi.json", "--checks", "all", "--report", "json,ndjson",
         "--report-dir", str(reports), "--no-color"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path), "SCHEMATHESIS_HOOKS": "st_hooks"},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = done.stdout + done.stderr
    report = json.loads(next(reports.glob("json-*.json")).read_text())
    run = read_events(next(reports.glob("ndjson-*.ndjson")))
    counts = run.cases
    print("\n".join(f"{count:5d}  {label}" for label, count in sorted(counts.items())))
    print(f"{report['test_cases']['generated']} cases generated over {report['operations']['tested']} operations, "
          f"{len(run.server_errors)} answered 5xx")  # fmt: skip

    assert report["operations"]["tested"] == report["operations"]["total"] >= 18, output[-3000:]
    assert not report["errors"], output[-5000:]
    assert not run.server_errors, run.server_errors[:5]
    failures = sorted(
        {(operation, failure["code"]) for failure in report["failures"] for operation in failure["operations"]}
    )
    assert not failures, f"{failures}:\n{output[-8000:]}"
    document = httpx.get(f"{stack.topology.gateway_url}/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
            assert counts[label] >= (EXAMPLES if takes_input else 1), (label, counts[label])


def gateway(stack: Stack, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{stack.topology.gateway_url}{path}", headers=stack.headers, timeout=30, **kwargs)  # type: ignore[arg-type]


# Each once a 500 or a wrongly accepted body found by schemathesis; now a 400 naming the parameter.
FORMER_FINDINGS = [
    pytest.param("GET", "/api/v1/meters?limit=36405049638762450944", None, "limit", id="meters-limit-beyond-int64"),
    pytest.param("GET", f"/api/v1/meters/{IMPORT_MUID}/readings?limit=77814977578", None, "limit", id="readings-limit-beyond-int32"),
    pytest.param("GET", "/api/v1/ingest/runs?limit=2765642043", None, "limit", id="runs-limit-beyond-int32"),
    pytest.param("GET", "/api/v1/ingest/runs/92233720368547758070", None, "id", id="run-id-beyond-int64"),
    pytest.param("GET", f"/api/v1/meters/{EXPORT_MUID}/plots/acf.png?height=51086049743", None, "height", id="plot-height-beyond-int32"),
    pytest.param("GET", f"/api/v1/meters/{EXPORT_MUID}/plots/acf.png?width=-51086049743", None, "width", id="plot-width-below-int32"),
    pytest.param("GET", f"/api/v1/meters/{IMPORT_MUID}/summary?top=35184372088832", None, "top", id="summary-top-beyond-int32"),
    pytest.param("GET", f"/api/v1/meters/{IMPORT_MUID}/autocorrelation?nlags=4294967296", None, "nlags", id="nlags-beyond-int32"),
    pytest.param("POST", "/api/v1/ingest/runs", {"full": 0, "muids": [IMPORT_MUID]}, "full", id="full-0-is-not-false"),
    pytest.param("POST", "/api/v1/ingest/runs", {"full": "yes", "muids": [IMPORT_MUID]}, "full", id="full-yes-is-not-true"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "parameter"), FORMER_FINDINGS)
def test_former_findings_are_refused_with_the_parameter_named(
    stack: Stack, method: str, path: str, body: object, parameter: str
) -> None:
    response = gateway(stack, method, path, json=body) if body is not None else gateway(stack, method, path)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [p["name"] for p in response.json()["invalid_params"]] == [parameter], response.text
