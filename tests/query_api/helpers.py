"""Shared expectations for the query and gateway tests: the seeded meters and independent references."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd

from meterdata.runner import Topology
from tests.seed import EXPORT_MUID, EXPORT_OBIS, IMPORT_MUID, IMPORT_OBIS, published_points

__all__ = ["EXPORT_MUID", "EXPORT_OBIS", "IMPORT_MUID", "IMPORT_OBIS"]

DST_MUID = "d57d57d5-0000-4000-8000-000000000001"  # 2023-03-01 .. 2023-11-01 UTC, both DST switches
GAP_MUID = "9a9a9a9a-0000-4000-8000-000000000002"  # the import meter with one hour removed
REMOVED_HOUR = datetime(2023, 2, 10, 10, tzinfo=UTC)  # 11:00-12:00 in Zurich
QUARTER = timedelta(minutes=15)


def dst_points() -> list[tuple[datetime, float]]:
    """Quarter-hours from 2023-03-01 to 2023-11-01 UTC with a value that varies by hour and day."""
    start = datetime(2023, 3, 1, tzinfo=UTC)
    count = int((datetime(2023, 11, 1, tzinfo=UTC) - start) / QUARTER)
    return [(start + i * QUARTER, round(0.01 + 0.001 * (i % 96) + 0.0001 * (i // 96 % 7), 6)) for i in range(count)]


def gap_points() -> list[tuple[datetime, float]]:
    _, points = published_points(IMPORT_MUID)
    return [(ts, v) for ts, v in points if not REMOVED_HOUR <= ts < REMOVED_HOUR + timedelta(hours=1)]


def frame(points: list[tuple[datetime, float]]) -> pd.Series:
    """The points as a pandas Series indexed by UTC time, for independent expectations."""
    series = pd.Series([v for _, v in points], index=pd.DatetimeIndex([ts for ts, _ in points]))
    return series.sort_index()


def published_frame(muid: str) -> pd.Series:
    return frame(published_points(muid)[1])


@dataclass
class Stack:
    topology: Topology
    client: httpx.Client
    mirror: object  # ingest_service.mirror.Mirror

    @property
    def url(self) -> str:
        return self.topology.gateway_url

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.client.get(path, params={k: v for k, v in params.items() if v is not None})

    def json(self, path: str, **params: object) -> dict:  # type: ignore[type-arg]
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def series_path(muid: str) -> str:
    return f"/api/v1/meters/{muid}/series"


def readings_path(muid: str) -> str:
    return f"/api/v1/meters/{muid}/readings"
