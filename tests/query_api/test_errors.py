"""Every error through HTTP: the status, a problem+json body, and the parameter it names.

Also the backends' failures: a stopped query service is 503 within the deadline, a query service that
accepts connections but never answers is 504 at the deadline; neither hangs nor answers 500.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterdata.runner import Topology
from tests.query_api.helpers import IMPORT_MUID, Stack, readings_path, series_path

UNKNOWN_MUID = "00000000-0000-4000-8000-000000000000"
SERIES = series_path(IMPORT_MUID)
READINGS = readings_path(IMPORT_MUID)

CASES = [
    # (path, params, status, parameter named)
    (SERIES, {"interval": "fortnight"}, 400, "interval"),
    (SERIES, {"agg": "median"}, 400, "agg"),
    (SERIES, {"tz": "Mars/Olympus_Mons"}, 400, "tz"),
    (SERIES, {"tz": "../../etc/passwd"}, 400, "tz"),
    (SERIES, {"start": "2023-02-10", "end": "2023-02-01"}, 400, "end"),
    (SERIES, {"start": "2023-02-10", "end": "2023-02-10"}, 400, "end"),
    (SERIES, {"interval": "15min", "start": "2020-01-01", "end": "2023-01-01"}, 400, "end"),
    (SERIES, {"start": "yesterday"}, 400, "start"),
    (SERIES, {"end": "2023-02-30"}, 400, "end"),
    (SERIES, {"obis": "not-an-obis"}, 400, "obis"),
    (SERIES, {"obis": "0100021D00FF"}, 404, "obis"),
    (SERIES, {"format": "xml"}, 400, "format"),
    (series_path(UNKNOWN_MUID), {}, 404, "muid"),
    (series_path("not-a-uuid"), {}, 400, "muid"),
    (READINGS, {"start": "2023-02-10", "end": "2023-02-01"}, 400, "end"),
    (READINGS, {"limit": 10_001}, 400, "limit"),
    (READINGS, {"limit": -1}, 400, "limit"),
    (READINGS, {"limit": 0}, 400, "limit"),
    (READINGS, {"limit": "many"}, 400, "limit"),
    (READINGS, {"order": "sideways"}, 400, "order"),
    (READINGS, {"page_token": "garbage!"}, 400, "page_token"),
    (READINGS, {"page_token": "eyJmb28iOjF9"}, 400, "page_token"),  # valid base64 JSON, not ours
    (READINGS, {"tz": "Nowhere/Land"}, 400, "tz"),
    (readings_path(UNKNOWN_MUID), {}, 404, "muid"),
    (f"/api/v1/meters/{UNKNOWN_MUID}", {}, 404, "muid"),
    ("/api/v1/meters/123", {}, 400, "muid"),
    ("/api/v1/meters", {"limit": 5000}, 400, "limit"),
    ("/api/v1/meters", {"page_token": "%%%"}, 400, "page_token"),
    ("/api/v1/ingest/runs/987654", {}, 404, "id"),
    ("/api/v1/ingest/runs/abc", {}, 400, "id"),
    ("/api/v1/ingest/runs/0", {}, 400, "id"),
    ("/api/v1/ingest/runs", {"limit": 501}, 400, "limit"),
]


def assert_problem(response: httpx.Response, status: int, parameter: str | None) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["instance"] == response.request.url.path
    if parameter is not None:
        assert [p["name"] for p in body["invalid_params"]] == [parameter], body
        assert body["detail"].startswith(f"{parameter}: "), body
        assert all(p["reason"] for p in body["invalid_params"])
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "params", "status", "parameter"), CASES, ids=[f"{c[3]}-{c[2]}" for c in CASES])
def test_error_names_the_parameter(stack: Stack, path: str, params: dict, status: int, parameter: str) -> None:  # type: ignore[type-arg]
    assert_problem(stack.get(path, **params), status, parameter)


def test_meter_with_several_channels_needs_obis(stack: Stack, seeded) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from tests.seed import seed_readings

    muid = "c4a22e15-0000-4000-8000-000000000003"
    point = [(datetime(2023, 2, 1, tzinfo=UTC), 0.5)]
    seed_readings(seeded, muid, "0100011D00FF", point)
    seed_readings(seeded, muid, "0100021D00FF", point)
    body = assert_problem(stack.get(series_path(muid)), 400, "obis")
    assert "0100011D00FF" in body["detail"] and "0100021D00FF" in body["detail"]
    assert stack.json(series_path(muid), obis="0100021D00FF", tz="UTC")["buckets"][0]["value"] == 0.5


def test_unknown_route_and_method_are_problems_too(stack: Stack) -> None:
    assert_problem(stack.get("/api/v1/nothing-here"), 404, None)
    response = stack.client.delete("/api/v1/meters")
    assert response.status_code == 405 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET"
    # A path served by two routes lists both routes' methods (Starlette alone named only the first's).
    for method in ("OPTIONS", "PUT", "DELETE"):
        response = stack.client.request(method, "/api/v1/ingest/runs")
        assert (response.status_code, response.headers["allow"]) == (405, "GET, POST"), method


def test_invalid_ingest_body_names_the_field(stack: Stack) -> None:
    response = stack.client.post("/api/v1/ingest/runs", json={"muids": ["not-a-uuid"]})
    body = assert_problem(response, 400, None)
    assert body["invalid_params"][0]["name"].startswith("muids")
    response = stack.client.post("/api/v1/ingest/runs", json={"full": "perhaps"})
    assert_problem(response, 400, "full")


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port that accepts connections and never speaks: a backend hung for good."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_stopped_query_service_is_503_within_the_deadline(database_url: str, seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = 3.0
    topology = Topology.on_free_ports(database_url, tmp_path, {"GRPC_DEADLINE_SECONDS": str(deadline)})
    topology.start(["query", "gateway"])
    try:
        with httpx.Client(base_url=topology.gateway_url, headers=topology.auth_headers, timeout=30) as client:
            assert client.get(SERIES, params={"interval": "day"}).status_code == 200
            topology.stop(["query"])
            for path in (SERIES, "/api/v1/meters", f"/api/v1/meters/{IMPORT_MUID}"):
                started = time.monotonic()
                response = client.get(path)
                elapsed = time.monotonic() - started
                body = assert_problem(response, 503, None)
                assert elapsed < deadline, elapsed
                assert body["backend"] == "query" and body["code"] == "UNAVAILABLE"
                assert "query service" in body["detail"]
                assert response.headers["retry-after"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["backends"]["query"].startswith("UNAVAILABLE")
            assert client.get("/healthz").status_code == 200  # the gateway itself is alive
    finally:
        topology.stop()


def test_hung_query_service_is_504_at_the_deadline(database_url: str, blackhole: str, tmp_path: Path) -> None:
    deadline = 1.0
    env = {"GRPC_DEADLINE_SECONDS": str(deadline), "QUERY_ADDRESS": blackhole}
    topology = Topology.on_free_ports(database_url, tmp_path, env)
    topology.start(["gateway"])
    try:
        with httpx.Client(base_url=topology.gateway_url, headers=topology.auth_headers, timeout=30) as client:
            started = time.monotonic()
            response = client.get(SERIES)
            elapsed = time.monotonic() - started
            body = assert_problem(response, 504, None)
            assert deadline * 0.9 <= elapsed < deadline + 1.5, elapsed
            assert body["backend"] == "query" and body["code"] == "DEADLINE_EXCEEDED"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["backends"]["query"].startswith("DEADLINE_EXCEEDED")
    finally:
        topology.stop()
