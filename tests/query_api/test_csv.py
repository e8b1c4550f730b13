"""`format=csv` parses back with the csv module to the same values as the JSON."""

from __future__ import annotations

import csv
import io

import pytest

from tests.query_api.helpers import (
    DST_MUID,
    EXPORT_MUID,
    IMPORT_MUID,
    Stack,
    published_frame,
    readings_path,
    series_path,
)


def parse(stack: Stack, path: str, **params: object) -> list[dict[str, str]]:
    response = stack.get(path, format="csv", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.text)))


def optional_float(text: str) -> float | None:
    return float(text) if text else None


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "day", "agg": "sum", "tz": "Europe/Zurich"},
        {"interval": "hour", "agg": "mean", "tz": "UTC"},
        {"interval": "hour", "agg": "max", "tz": "Europe/Zurich", "start": "2023-10-29", "end": "2023-10-30"},
    ],
)
def test_series_csv_equals_json(stack: Stack, params: dict[str, str]) -> None:
    muid = DST_MUID if "start" in params else IMPORT_MUID
    body = stack.json(series_path(muid), **params)
    rows = parse(stack, series_path(muid), **params)
    assert list(rows[0]) == ["start", "end", "value_kWh", "count", "expected"]
    assert len(rows) == len(body["buckets"])
    for row, bucket in zip(rows, body["buckets"], strict=True):
        assert (row["start"], row["end"]) == (bucket["start"], bucket["end"])
        assert optional_float(row["value_kWh"]) == bucket["value"]  # repr round-trips floats exactly
        assert (int(row["count"]), int(row["expected"])) == (bucket["count"], bucket["expected"])


def test_count_series_names_its_unit(stack: Stack) -> None:
    rows = parse(stack, series_path(IMPORT_MUID), interval="day", agg="count", tz="UTC")
    assert list(rows[0])[2] == "value_readings" and {r["value_readings"] for r in rows} == {"96.0"}


def test_empty_bucket_is_an_empty_cell(stack: Stack) -> None:
    rows = parse(stack, series_path(DST_MUID), interval="day", tz="UTC", start="2023-10-31", end="2023-11-02")
    assert [(r["value_kWh"] != "", r["count"]) for r in rows] == [(True, "96"), (False, "0")]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_readings_csv_streams_the_whole_range(stack: Stack, order: str) -> None:
    rows = parse(stack, readings_path(EXPORT_MUID), order=order, tz="UTC")
    assert list(rows[0]) == ["ts", "value_kWh", "quality"]
    raw = published_frame(EXPORT_MUID)
    expected = raw if order == "asc" else raw.iloc[::-1]
    assert [r["ts"] for r in rows] == [ts.isoformat() for ts in expected.index]
    assert [float(r["value_kWh"]) for r in rows] == expected.tolist()
    page = stack.json(readings_path(EXPORT_MUID), order=order, tz="UTC", limit=100)
    assert [{"ts": r["ts"], "value": float(r["value_kWh"]), "quality": r["quality"]} for r in rows[:100]] == page[
        "readings"
    ]


def test_readings_csv_of_a_local_day(stack: Stack) -> None:
    rows = parse(stack, readings_path(IMPORT_MUID), start="2023-02-14", end="2023-02-15")
    assert len(rows) == 96 and rows[0]["ts"] == "2023-02-14T00:00:00+01:00"


def test_meters_csv_equals_json(stack: Stack) -> None:
    body = stack.json("/api/v1/meters", limit=1000)
    rows = parse(stack, "/api/v1/meters")
    flattened = [
        {
            "muid": meter["muid"],
            "tenant": meter["tenant"],
            **{k: "" if v is None else str(v) for k, v in channel.items()},
        }
        for meter in body["meters"]
        for channel in meter["channels"]
    ]
    assert rows == flattened
    assert {r["muid"] for r in rows} >= {IMPORT_MUID, EXPORT_MUID, DST_MUID}
