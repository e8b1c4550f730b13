"""The analytics routes of the REST gateway, end to end: gateway -> analytics service -> query service ->
PostgreSQL seeded with the published data. Expected values come from pandas on the raw JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gateway.app import create_app
from meterdata.runner import Topology
from meterdata.settings import Settings
from tests.seed import EXPORT_MUID, IMPORT_MUID, published_points, seed_published

TZ = "Europe/Zurich"
ANALYTICS_PATHS = {
    "/api/v1/meters/{muid}/profile",
    "/api/v1/meters/{muid}/autocorrelation",
    "/api/v1/meters/{muid}/summary",
    "/api/v1/meters/{muid}/explain",
    "/api/v1/balance",
    "/api/v1/balance/plot.png",
    "/api/v1/meters/{muid}/plots/{kind}.png",
}


def raw(muid: str) -> pd.Series:
    _, points = published_points(muid)
    return pd.Series([v for _, v in points], index=pd.DatetimeIndex([t for t, _ in points])).sort_index()


@pytest.fixture(scope="module")
def client(engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    seed_published(engine)
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("analytics-gateway-logs"))
    topology.start(["query", "analytics", "gateway"])
    try:
        with httpx.Client(base_url=topology.gateway_url, headers=topology.auth_headers, timeout=60) as http:
            yield http
    finally:
        topology.stop()


def ok(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


def problem(client: httpx.Client, path: str, status: int, parameter: str | None, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    if parameter:
        assert [p["name"] for p in body["invalid_params"]] == [parameter], body
        assert body["detail"].startswith(f"{parameter}: "), body
    return body  # type: ignore[no-any-return]


def test_profile_json_and_csv(client: httpx.Client) -> None:
    local = raw(EXPORT_MUID).tz_convert(TZ)
    expected = local.groupby(local.index.hour).agg(["count", "sum", "mean", "median"])
    body = ok(client, f"/api/v1/meters/{EXPORT_MUID}/profile", kind="hour_of_day", tz=TZ).json()
    assert (body["unit"], body["time_zone"], body["kind"], body["obis"]) == ("kWh", TZ, "hour_of_day", "0100021D00FF")
    assert [g["hour"] for g in body["groups"]] == list(range(24))
    assert body["groups"][0]["weekday"] is None and body["groups"][0]["minute"] is None
    np.testing.assert_allclose([g["sum"] for g in body["groups"]], expected["sum"], atol=1e-12)
    np.testing.assert_allclose([g["median"] for g in body["groups"]], expected["median"], atol=1e-12)

    text = ok(client, f"/api/v1/meters/{EXPORT_MUID}/profile", kind="hour_of_day", format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 24 and "sum_kWh" in rows[0]
    assert [float(r["sum_kWh"]) for r in rows] == pytest.approx(expected["sum"].tolist())

    matrix = ok(client, f"/api/v1/meters/{IMPORT_MUID}/profile", kind="hour_by_weekday").json()["groups"]
    assert len(matrix) == 168 and matrix[0]["key"] == "1-00" and matrix[0]["weekday"] == 1


def test_summary_of_both_meters(client: httpx.Client) -> None:
    for muid, total, zeros in ((IMPORT_MUID, 97.6082, 0), (EXPORT_MUID, 36.19725, 1680)):
        body = ok(client, f"/api/v1/meters/{muid}/summary", tz=TZ, top=3).json()
        assert body["total"] == pytest.approx(total)
        assert body["zero_share"] * body["count"] == pytest.approx(zeros)
        assert (body["count"], body["expected"], body["readings"]) == (2688, 2688, 2688)
        assert body["start"] == "2023-02-01T01:00:00+01:00" and body["end"] == "2023-03-01T01:00:00+01:00"
        assert len(body["peak_intervals"]) == 3
    body = ok(client, f"/api/v1/meters/{IMPORT_MUID}/summary").json()
    assert (body["max"], body["max_at"]) == (0.9612, "2023-02-20T16:00:00+01:00")
    daily = ok(client, f"/api/v1/meters/{EXPORT_MUID}/summary", interval="day", start="2023-02-06", end="2023-02-13")
    week = raw(EXPORT_MUID)["2023-02-05T23:00Z":"2023-02-12T22:45Z"]
    assert daily.json()["count"] == 7 and daily.json()["total"] == pytest.approx(week.sum())


def test_autocorrelation(client: httpx.Client) -> None:
    body = ok(client, f"/api/v1/meters/{EXPORT_MUID}/autocorrelation", nlags=192, ljung_box_lags="96,672").json()
    assert body["observations"] == 2688 and len(body["lags"]) == 192
    assert 96 in body["significant_lags"] and body["strongest_lag"] == 96
    assert [r["lag"] for r in body["ljung_box"]] == [96, 672]
    assert body["seasonal_strength"] > body["seasonal_strength_noise"]
    text = ok(client, f"/api/v1/meters/{EXPORT_MUID}/autocorrelation", interval="hour", format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 48 and rows[23]["lag"] == "24" and rows[23]["acf_significant"] == "true"


def test_explain(client: httpx.Client) -> None:
    pv = ok(client, f"/api/v1/meters/{EXPORT_MUID}/explain").json()
    assert (pv["classification"], pv["direction"], pv["obis_notation"]) == (
        "photovoltaic_export",
        "export",
        "1-0:2.29.0*255",
    )
    assert {e["name"] for e in pv["evidence"]} >= {"night_energy_share", "sun_elevation_correlation"}
    load = ok(client, f"/api/v1/meters/{IMPORT_MUID}/explain", obis="1-0:1.29.0*255").json()
    assert (load["classification"], load["direction"]) == ("consumption", "import")
    assert next(e for e in load["evidence"] if e["name"] == "spike_count")["value"] > 0


def test_balance_json_and_csv(client: httpx.Client) -> None:
    params = {"import_muid": IMPORT_MUID, "export_muid": EXPORT_MUID}
    body = ok(client, "/api/v1/balance", **params).json()
    assert body["imported_total"] == pytest.approx(97.6082)
    assert body["exported_total"] == pytest.approx(36.19725)
    assert body["net_import_total"] == pytest.approx(97.6082 - 36.19725)
    assert body["export_interval_share"] == pytest.approx(1008 / 2688)
    assert body["buckets"][0]["start"] == "2023-02-01T00:00:00+01:00"
    net = (raw(IMPORT_MUID) - raw(EXPORT_MUID)).tz_convert(TZ)
    assert [b["net_import"] for b in body["buckets"]] == pytest.approx(net.groupby(net.index.date).sum().tolist())
    rows = list(
        csv.DictReader(io.StringIO(ok(client, "/api/v1/balance", format="csv", interval="week", **params).text))
    )
    assert len(rows) == 5 and sum(float(r["net_import_kWh"]) for r in rows) == pytest.approx(97.6082 - 36.19725)
    png = ok(client, "/api/v1/balance/plot.png", **params)
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "kind", ["timeseries", "histogram", "hour-of-day", "weekday", "heatmap", "acf", "decomposition", "daily"]
)
def test_plots(client: httpx.Client, kind: str) -> None:
    response = ok(client, f"/api/v1/meters/{IMPORT_MUID}/plots/{kind}.png", width=700, height=350)
    assert response.headers["content-type"] == "image/png"
    assert 10_000 < len(response.content) < 2_000_000
    assert Image.open(io.BytesIO(response.content)).size == (700, 350)


def test_errors_are_problems_naming_the_parameter(client: httpx.Client) -> None:
    meter = f"/api/v1/meters/{IMPORT_MUID}"
    problem(client, "/api/v1/meters/not-a-uuid/summary", 400, "muid")
    problem(client, f"{meter}/summary", 400, "tz", tz="Mars/Base")
    problem(client, f"{meter}/summary", 400, "top", top=1000)
    problem(client, f"{meter}/summary", 400, "end", start="2023-02-10", end="2023-02-01")
    problem(client, f"{meter}/summary", 400, "obis", obis="nonsense")
    problem(client, f"{meter}/profile", 400, "kind", kind="fortnight")
    problem(client, f"{meter}/plots/acf.png", 400, "width", width=10)
    problem(client, f"{meter}/autocorrelation", 400, "alpha", alpha=2)
    problem(client, f"{meter}/autocorrelation", 400, "ljung_box_lags", ljung_box_lags="a,b")
    problem(client, "/api/v1/balance", 400, "import_obis", import_muid=EXPORT_MUID, export_muid=IMPORT_MUID)
    problem(client, "/api/v1/balance", 400, "export_muid", import_muid=IMPORT_MUID)
    body = problem(client, "/api/v1/meters/00000000-0000-0000-0000-000000000000/explain", 404, "muid")
    assert body["backend"] == "analytics"
    body = problem(client, f"{meter}/autocorrelation", 409, None, start="2023-02-10", end="2023-02-11")
    assert body["code"] == "FAILED_PRECONDITION" and "need at least 386 observations" in body["detail"]


def test_openapi_documents_every_analytics_parameter() -> None:
    document = create_app(Settings()).openapi()
    assert ANALYTICS_PATHS <= set(document["paths"])
    for path in ANALYTICS_PATHS:
        operation = document["paths"][path]["get"]
        assert operation["summary"] and operation["description"]
        for parameter in operation["parameters"]:
            assert parameter.get("description") and "example" in parameter, (path, parameter["name"])
        for status, response in operation["responses"].items():
            assert all("example" in media for media in response["content"].values()), (path, status)
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, status)
        assert "422" not in operation["responses"]
        assert "409" in operation["responses"]
