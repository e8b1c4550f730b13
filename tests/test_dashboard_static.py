"""The dashboard's files as the gateway serves them, without a browser or backends: the page at `/`,
its modules and the vendored chart library, no asset from another host, and the API routes still
answering before the static mount."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from meterdata.settings import Settings

STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # Backends on closed ports: gRPC channels connect lazily, and these routes never call them.
    settings = Settings(query_address="127.0.0.1:9", ingest_address="127.0.0.1:9", analytics_address="127.0.0.1:9")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_root_serves_the_dashboard(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>meterdata dashboard</title>" in response.text
    assert response.text == (STATIC / "index.html").read_text()


def test_every_referenced_asset_is_served_from_the_gateway(client: TestClient) -> None:
    html = (STATIC / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    local = [a for a in assets if not a.startswith(("data:", "docs", "openapi.json"))]
    assert {"vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "js/main.js", "dashboard.css"} <= set(local)
    for asset in local:
        assert "://" not in asset and not asset.startswith("//"), f"{asset} would be loaded from another host"
        response = client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.content == (STATIC / asset).read_bytes()
    assert client.get("/js/main.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_modules_import_only_local_modules() -> None:
    for module in (STATIC / "js").glob("*.js"):
        for target in re.findall(r'from\s+"([^"]+)"', module.read_text()):
            assert target.startswith("./") and (module.parent / target).is_file(), f"{module.name} imports {target}"
        assert "http://" not in module.read_text() and "https://" not in module.read_text()


def test_vendored_chart_library_is_pinned_with_its_licence() -> None:
    vendor = STATIC / "vendor" / "uplot"
    assert (vendor / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert "uplot@1.6.32" in (vendor / "README.md").read_text()


def test_api_routes_keep_precedence_over_the_static_mount(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/v1/meters/{muid}/series" in client.get("/openapi.json").json()["paths"]
    missing = client.get("/api/v1/no-such-route")
    assert missing.status_code == 401  # the whole /api namespace asks for a key before anything else
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["instance"] == "/api/v1/no-such-route"
    assert client.get("/no-such-file.js").status_code == 404
