"""Keyset pagination of readings through the gateway: every reading exactly once, in order, both ways."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.query_api.helpers import EXPORT_MUID, IMPORT_MUID, Stack, published_frame, readings_path, series_path


def walk(stack: Stack, muid: str, **params: object) -> tuple[list[dict], int]:  # type: ignore[type-arg]
    readings: list[dict] = []  # type: ignore[type-arg]
    token, pages = None, 0
    while True:
        body = stack.json(readings_path(muid), page_token=token, **params)
        assert body["unit"] == "kWh" and body["muid"] == muid
        readings += body["readings"]
        pages += 1
        token = body["next_page_token"]
        if token is None:
            return readings, pages


@pytest.mark.parametrize("muid", [IMPORT_MUID, EXPORT_MUID])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_walking_all_pages_returns_every_reading_once_in_order(stack: Stack, muid: str, order: str) -> None:
    raw = published_frame(muid)
    readings, pages = walk(stack, muid, order=order, limit=500, tz="UTC")
    assert pages == 6  # 2688 readings in pages of 500
    instants = [datetime.fromisoformat(r["ts"]) for r in readings]
    assert len(set(instants)) == len(instants) == 2688
    expected = raw if order == "asc" else raw.iloc[::-1]
    assert instants == list(expected.index)
    assert [r["value"] for r in readings] == expected.tolist()
    assert {r["quality"] for r in readings} == {"measured"}


def test_page_boundary_on_the_last_reading(stack: Stack) -> None:
    """A limit that divides the count exactly: no empty page at the end (the service probes one row ahead)."""
    readings, pages = walk(stack, IMPORT_MUID, limit=1344)
    assert len(readings) == 2688 and pages == 2
    assert readings[-1]["ts"] == "2023-03-01T00:45:00+01:00"


def test_default_page_is_1000_and_rendered_in_the_zone(stack: Stack) -> None:
    body = stack.json(readings_path(IMPORT_MUID))
    assert len(body["readings"]) == 1000 and body["next_page_token"]
    assert body["time_zone"] == "Europe/Zurich" and body["order"] == "asc"
    assert body["readings"][0]["ts"] == "2023-02-01T01:00:00+01:00"
    assert body["obis"] == "0100011D00FF"


def test_a_local_day_of_readings(stack: Stack) -> None:
    raw = published_frame(IMPORT_MUID).tz_convert("Europe/Zurich")["2023-02-14"]
    readings, _ = walk(stack, IMPORT_MUID, start="2023-02-14", end="2023-02-15", limit=40, order="desc")
    assert [r["ts"] for r in readings] == [ts.isoformat() for ts in raw.index[::-1]]
    assert [r["value"] for r in readings] == raw.iloc[::-1].tolist()


def test_obis_in_notation_names_the_same_channel(stack: Stack) -> None:
    hex_form = stack.json(readings_path(EXPORT_MUID), obis="0100021D00FF", limit=5)
    notation = stack.json(readings_path(EXPORT_MUID), obis="1-0:2.29.0*255", limit=5)
    assert hex_form["readings"] == notation["readings"] and notation["obis"] == "0100021D00FF"


def test_a_token_only_works_for_its_own_query(stack: Stack) -> None:
    token = stack.json(readings_path(IMPORT_MUID), limit=10)["next_page_token"]
    for other in ({"order": "desc"}, {"start": "2023-02-02"}):
        response = stack.get(readings_path(IMPORT_MUID), limit=10, page_token=token, **other)
        assert response.status_code == 400
        assert response.json()["invalid_params"][0]["name"] == "page_token"
    response = stack.get(readings_path(EXPORT_MUID), limit=10, page_token=token)
    assert response.status_code == 400 and response.json()["invalid_params"][0]["name"] == "page_token"


def test_readings_and_series_agree(stack: Stack) -> None:
    readings, _ = walk(stack, EXPORT_MUID, limit=10_000)
    series = stack.json(series_path(EXPORT_MUID), interval="month", tz="UTC")
    assert len(readings) == 2688 == series["buckets"][0]["count"]
