"""Operations (health, readiness, metrics, CORS) and the ingest-run routes through the gateway."""

from __future__ import annotations

import csv
import http.client
import io
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from meterdata.runner import Topology
from meterdata.settings import Settings
from tests.query_api.helpers import IMPORT_MUID, Stack, close, series_path


def test_healthz(stack: Stack) -> None:
    assert stack.json("/healthz") == {"status": "ok"}


def test_gateway_keeps_idle_connections_open_for_the_configured_time(database_url: str, tmp_path: Path) -> None:
    """A proxy reuses idle connections; if the gateway closes one as a request arrives on it, the request
    fails (a reset here, a 502 behind a proxy). So the idle timeout is a setting, by default above the
    60 s idle timeout of common proxies, and the server applies it."""
    assert Settings().gateway_keep_alive_seconds > 60
    topology = Topology.on_free_ports(database_url, tmp_path, {"GATEWAY_KEEP_ALIVE_SECONDS": "2"})
    topology.start(["gateway"])
    try:
        connection = http.client.HTTPConnection("127.0.0.1", topology.ports["gateway"], timeout=5)
        try:
            for idle in (0.0, 1.0):  # within the timeout: the same connection answers again
                time.sleep(idle)
                connection.request("GET", "/healthz")
                assert connection.getresponse().read() == b'{"status":"ok"}'
            opened = connection.sock
            time.sleep(3.5)  # idle beyond it: the gateway has closed the connection
            assert opened is connection.sock and opened.recv(1) == b""
        finally:
            connection.close()
    finally:
        topology.stop()


def test_readyz_names_the_backend_that_is_down(stack: Stack) -> None:
    """The stack runs query and ingest, not analytics: readiness says exactly that."""
    response = stack.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["backends"]["query"] == body["backends"]["ingest"] == "serving"
    assert body["backends"]["analytics"].startswith("UNAVAILABLE at 127.0.0.1:")


def samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = stack.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_by_route_template_and_status(stack: Stack) -> None:
    route = "/api/v1/meters/{muid}/series"
    key = ("meterdata_gateway_requests_total", (("method", "GET"), ("route", route), ("status", "200")))
    bad = ("meterdata_gateway_requests_total", (("method", "GET"), ("route", route), ("status", "400")))
    before = samples(stack)
    for _ in range(3):
        stack.json(series_path(IMPORT_MUID), interval="day")
    stack.get(series_path(IMPORT_MUID), tz="Nowhere")
    after = samples(stack)
    assert after[key] - before.get(key, 0) == 3
    assert after[bad] - before.get(bad, 0) == 1
    latency = ("meterdata_gateway_request_duration_seconds_count", key[1])
    assert after[latency] - before.get(latency, 0) == 3
    backend = (
        "meterdata_gateway_backend_call_duration_seconds_count",
        (("backend", "query"), ("code", "OK"), ("method", "GetSeries")),
    )
    assert after[backend] - before.get(backend, 0) == 3
    assert not any(IMPORT_MUID in dict(labels).get("route", "") for _, labels in after)  # templates, not paths


def test_cors_allows_the_configured_frontend_origin(stack: Stack) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = stack.client.options("/api/v1/meters", headers={"Origin": "http://localhost:5173", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    denied = stack.client.options("/api/v1/meters", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    simple = stack.client.get("/api/v1/meters", headers={"Origin": "http://localhost:5173"})
    assert simple.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_start_a_pull_and_follow_it(stack: Stack) -> None:
    response = stack.client.post("/api/v1/ingest/runs", json={"muids": [IMPORT_MUID], "full": True})
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["location"] == f"/api/v1/ingest/runs/{run['id']}"
    assert run["kind"] == "pull" and run["muids"] == [IMPORT_MUID] and run["time_zone"] == "Europe/Zurich"
    deadline = time.monotonic() + 30
    while run["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        run = stack.json(response.headers["location"])
    assert run["status"] == "succeeded", run
    assert run["received"] == 2688 and run["rejected"] == 0
    assert run["inserted"] + run["updated"] + run["unchanged"] == 2688
    assert run["source"].startswith(stack.mirror.url)  # type: ignore[attr-defined]
    assert run["finished_at"] >= run["started_at"]
    # What the pull stored is what the published file says.
    (month,) = stack.json(series_path(IMPORT_MUID), interval="month", tz="UTC")["buckets"]
    assert close(month["value"], 97.6082) and month["count"] == 2688

    listed = stack.json("/api/v1/ingest/runs", limit=500, tz="UTC")
    assert run["id"] in [r["id"] for r in listed["runs"]]
    ids = [r["id"] for r in listed["runs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    rows = list(csv.DictReader(io.StringIO(stack.get("/api/v1/ingest/runs", format="csv", tz="UTC").text)))
    assert [int(r["id"]) for r in rows] == ids
    mine = next(r for r in rows if int(r["id"]) == run["id"])
    assert (mine["status"], mine["muids"], int(mine["received"])) == ("succeeded", IMPORT_MUID, 2688)


def test_post_without_body_pulls_every_configured_meter(stack: Stack) -> None:
    response = stack.client.post("/api/v1/ingest/runs")
    assert response.status_code == 202, response.text
    run = response.json()
    assert sorted(run["muids"]) == sorted(
        ["95ce3367-cbce-4a4d-bbe3-da082831d7bd", "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"]
    )
    deadline = time.monotonic() + 30
    while run["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        run = stack.json(f"/api/v1/ingest/runs/{run['id']}")
    assert run["status"] == "succeeded", run
