"""Series from the rollups: per-meter hour+ series and fleet totals equal the raw readings, after
revisions and re-ingests, through the real ingest service, query service and gateway."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
import pytest

from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.synthetic import IMPORT_OBIS, generate
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc
from tests.ingest_helpers import assert_rollup_exact

START = datetime(2023, 3, 20, tzinfo=UTC)  # spans the March DST switch in Europe/Zurich
DAYS = 14
METERS = 5


def requests(blocks: list, register: bool = True) -> Iterator[ingest_pb2.WriteReadingsRequest]:
    for index, block in enumerate(blocks):
        columns = ingest_pb2.ReadingColumns(
            muid=block.muid, obis=block.obis, quality="measured", measurement="energy",
            ts_seconds=block.ts.tolist(), values=block.values.tolist(),
        )  # fmt: skip
        yield ingest_pb2.WriteReadingsRequest(columns=[columns], register_unknown_meters=register and index == 0)


@pytest.fixture(scope="module")
def fleet(database_url: str, engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pd.DataFrame]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE fleet_hourly, readings_hourly, rejected_readings, reading_revisions, readings, meter_channels, ingest_runs, meters"
            )
        )
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("fleet-logs"))
    topology.start(["query", "ingest", "gateway"])
    blocks = list(generate(METERS, DAYS, start=START, seed=11, block_days=5, channels=(IMPORT_OBIS,)))
    revised = [b for b in blocks if b.muid == blocks[0].muid]
    for block in revised:  # the upstream corrects every tenth reading of the first meter
        block.values[::10] = np.round(block.values[::10] + 0.5, 4)
    with sync_channel(topology.address("ingest"), tenant="default") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        original = list(generate(METERS, DAYS, start=START, seed=11, block_days=5, channels=(IMPORT_OBIS,)))
        first = stub.WriteReadings(requests(original), timeout=120)
        again = stub.WriteReadings(requests(revised, register=False), timeout=120)
    assert first.inserted == METERS * DAYS * 96
    assert again.updated == sum(len(b.values[::10]) for b in revised)
    assert_rollup_exact(engine)
    frame = pd.DataFrame(
        {
            "muid": np.concatenate([[b.muid] * len(b.ts) for b in blocks]),
            "ts": pd.to_datetime(np.concatenate([b.ts for b in blocks]), unit="s", utc=True),
            "value": np.concatenate([b.values for b in blocks]),
        }
    )
    yield topology.gateway_url, frame, topology.auth_headers
    topology.stop()


def local_daily(frame: pd.DataFrame) -> pd.DataFrame:
    local = frame.assign(day=frame["ts"].dt.tz_convert("Europe/Zurich").dt.normalize())
    return local.groupby("day")["value"].agg(["sum", "count"])


def test_fleet_daily_totals_equal_the_raw_readings_across_dst(fleet) -> None:  # type: ignore[no-untyped-def]
    gateway, frame, headers = fleet
    body = httpx.get(
        f"{gateway}/api/v1/fleet/series",
        params={"obis": IMPORT_OBIS, "interval": "day", "tz": "Europe/Zurich"},
        headers=headers,
        timeout=30,
    ).json()
    expected = local_daily(frame)
    served = {pd.Timestamp(b["start"]): b for b in body["buckets"] if b["count"]}
    assert len(served) == len(expected)
    for day, row in expected.iterrows():
        bucket = served[day]
        assert bucket["count"] == row["count"]
        assert bucket["value"] == pytest.approx(row["sum"], abs=1e-9)
    dst_day = served[pd.Timestamp("2023-03-26T00:00:00+01:00")]
    assert (dst_day["expected"], dst_day["count"]) == (92, 92 * METERS)
    assert body["muid"] == "" and body["unit"] == "kWh"


def test_per_meter_hour_and_day_series_from_the_rollup_equal_the_raw_readings(fleet) -> None:  # type: ignore[no-untyped-def]
    gateway, frame, headers = fleet
    muid = frame["muid"].iloc[0]  # the revised meter
    mine = frame[frame["muid"] == muid]
    for interval, agg in (("day", "sum"), ("hour", "mean"), ("week", "max")):
        body = httpx.get(
            f"{gateway}/api/v1/meters/{muid}/series",
            params={"obis": IMPORT_OBIS, "interval": interval, "agg": agg, "tz": "Europe/Zurich"},
            headers=headers,
            timeout=30,
        ).json()
        local = mine.assign(key=mine["ts"].dt.tz_convert("Europe/Zurich"))
        if interval == "day":
            keys = local["key"].dt.normalize()
        elif interval == "hour":
            keys = local["key"].dt.floor("h", ambiguous="infer")
        else:
            keys = local["key"].dt.normalize() - pd.to_timedelta(local["key"].dt.day_of_week, unit="D")
        expected = local.groupby(keys)["value"].agg(agg if agg != "mean" else "mean")
        served = {pd.Timestamp(b["start"]): b["value"] for b in body["buckets"] if b["count"]}
        assert len(served) == len(expected), interval
        for key, value in expected.items():
            assert served[key] == pytest.approx(value, abs=1e-9), (interval, key)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"interval": "15min"}, "interval"),
        ({"agg": "max"}, "agg"),
        ({"start": "2023-03-21T00:30:00Z"}, "start"),
        ({"obis": "0100991D00FF"}, "obis"),
    ],
)
def test_fleet_errors_name_the_parameter(fleet, params: dict[str, str], name: str) -> None:  # type: ignore[no-untyped-def]
    gateway, _, headers = fleet
    response = httpx.get(
        f"{gateway}/api/v1/fleet/series", params={"obis": IMPORT_OBIS, **params}, headers=headers, timeout=30
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert name in [p["name"] for p in response.json()["invalid_params"]]
