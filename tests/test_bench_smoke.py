"""`make bench` at smoke size, so the harness cannot rot: every measurement runs and reports a ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterdata import bench


@pytest.mark.heavy
def test_bench_smoke_reports_every_measurement(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", server_url)  # the bench creates and drops a database of its own there
    from meterdata.settings import get_settings

    get_settings.cache_clear()
    try:
        results = bench.run(bench.SIZES["smoke"], tmp_path)
    finally:
        get_settings.cache_clear()
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [r["name"][:2] for r in report["results"]] == ["1.", "2.", "3.", "4.", "5.", "6."]
    ingest = results[0]
    assert ingest.details["rows"] == bench.SIZES["smoke"].ingest_rows
    assert ingest.ratio is not None and 0 < ingest.ratio < 10
    assert results[4].details["gateway"]["errors"] == 0
    load = results[5].details["loaded"]
    assert load["errors"] == 0 and load["ingest"]["status"] == "succeeded", load["error_samples"]
    assert load["clients"] == bench.SIZES["smoke"].load_clients and load["requests"] == sum(
        kind["requests"] for kind in load["by_kind"].values()
    )
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.count("\n| ") == 1 + 6  # header + one row per measurement
