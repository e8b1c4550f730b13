"""`make bench`: each figure beside the physical reference measured in the same run, on this machine.

1. ingest: readings streamed through the gRPC ingest service vs a raw binary COPY of the same rows
   into an empty table of the same schema; the ingest service's peak memory.
2. per-meter series: a year of one meter through the gateway vs the same SQL run directly.
3. cost growth: the per-meter series with 10 meters vs 1,000 meters x 1 year in the table.
4. fleet aggregation: the daily total of all meters over a year, from the rollup, vs raw readings.
5. gateway throughput: concurrent clients on a small series call vs a minimal FastAPI app running
   the same SQL directly (the cost of the gRPC hop).
6. load: 50 clients for 60 s mixing series, readings and summary calls (`meterdata.loadtest`) while an
   ingest stream writes, vs the same mix from one client with nothing else running.
Results go to `docs/BENCHMARKS.md` (Markdown) and `docs/benchmarks.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from meterdata import PROJECT_ROOT
from meterdata.db import make_engine, migrate, sqlalchemy_url
from meterdata.grpc_client import sync_channel
from meterdata.loadtest import discover_channels, run_load
from meterdata.runner import Topology, free_port, resolve_database_url
from meterdata.settings import get_settings
from meterdata.synthetic import IMPORT_OBIS, Block, generate
from meterdata.tenancy import DEFAULT_TENANT, tenant_metadata
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc

YEAR_START = datetime(2023, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Size:
    name: str
    ingest_rows: int
    calls: int
    small_fleet: int
    large_fleet: int
    days: int
    clients: int
    seconds: float
    load_clients: int
    load_seconds: float


SIZES = {
    "full": Size("full", 1_000_000, 200, 10, 1_000, 365, 32, 30.0, 50, 60.0),
    "smoke": Size("smoke", 20_000, 10, 2, 6, 14, 4, 1.0, 4, 2.0),
}


@dataclass
class Result:
    name: str
    figure: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def latency_summary(samples: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(samples, q) * 1000, 2) for q in (50, 95, 99)}


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- data ---------------------------------------------------------------------------------------------
def limited_blocks(meters: int, days: int, rows: int, **kwargs: Any) -> Iterator[Block]:
    """Synthetic blocks, cut at exactly `rows` readings."""
    left = rows
    for block in generate(meters, days, **kwargs):
        if left <= 0:
            return
        take = min(left, len(block.ts))
        left -= take
        yield Block(block.muid, block.obis, block.ts[:take], block.values[:take])


def copy_buffer(blocks: list[Block]) -> bytes:
    from ingest_service.pgcopy import encode_blocks
    from ingest_service.validation import ColumnBlock

    return encode_blocks(ColumnBlock(b.muid, b.obis, "measured", "energy", b.ts, b.values) for b in blocks)


def bulk_load(
    database_url: str, meters: int, days: int, first_index: int = 0, channels: tuple[str, ...] = (IMPORT_OBIS,)
) -> int:
    """Load synthetic meters straight into the tables (binary COPY, rollups by SQL): the fast way to
    build a large table for the query measurements. Returns the readings loaded."""
    engine = make_engine(database_url)
    total = 0
    with engine.begin() as connection:
        run_id = connection.execute(
            text(
                "INSERT INTO ingest_runs (kind, status, source) VALUES ('stream', 'succeeded', 'bench bulk load') RETURNING id"
            )
        ).scalar_one()
    batch: list[Block] = []

    def flush() -> None:
        nonlocal batch
        if not batch:
            return
        muids = sorted({b.muid for b in batch})
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO meters (muid) SELECT unnest(CAST(:m AS uuid[])) ON CONFLICT DO NOTHING"), {"m": muids}
            )
            connection.execute(
                text(
                    "INSERT INTO meter_channels (muid, obis) SELECT m, o FROM unnest(CAST(:m AS uuid[])) m, unnest(CAST(:o AS text[])) o ON CONFLICT DO NOTHING"
                ),
                {"m": muids, "o": list(channels)},
            )
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(
                "CREATE TEMP TABLE bulk (muid uuid, obis text, ts timestamptz, value float8, quality text, measurement text) ON COMMIT DROP"
            )
            cursor.copy_expert(
                "COPY bulk (muid, obis, ts, value, quality, measurement) FROM STDIN (FORMAT binary)",
                io.BytesIO(copy_buffer(batch)),
            )
            cursor.execute(
                "INSERT INTO readings SELECT muid, obis, ts, value, quality, measurement, %s FROM bulk", (run_id,)
            )
            cursor.close()
        batch = []

    rows_in_batch = 0
    for block in generate(meters, days, start=YEAR_START, seed=7 + first_index, channels=channels):
        block = Block(str(uuid.UUID(int=uuid.UUID(block.muid).int + first_index)), block.obis, block.ts, block.values)
        batch.append(block)
        total += len(block.ts)
        rows_in_batch += len(block.ts)
        if rows_in_batch >= 500_000:
            flush()
            rows_in_batch = 0
    flush()
    with engine.begin() as connection:
        connection.execute(text(REBUILD_ROLLUPS))
    return total


REBUILD_ROLLUPS = """
TRUNCATE readings_hourly, fleet_hourly;
INSERT INTO readings_hourly (muid, obis, hour, value_sum, value_min, value_max, reading_count)
SELECT muid, obis, date_trunc('hour', ts, 'UTC'), sum(value), min(value), max(value), count(*) FROM readings GROUP BY 1, 2, 3;
INSERT INTO fleet_hourly (tenant, obis, hour, value_sum, reading_count)
SELECT m.tenant, h.obis, h.hour, sum(h.value_sum), sum(h.reading_count) FROM readings_hourly h JOIN meters m USING (muid) GROUP BY 1, 2, 3;
UPDATE meter_channels c SET first_ts = s.f, last_ts = s.l, reading_count = s.n
FROM (SELECT muid, obis, min(hour) AS f, max(hour) + interval '45 minutes' AS l, sum(reading_count) AS n FROM readings_hourly GROUP BY 1, 2) s
WHERE c.muid = s.muid AND c.obis = s.obis;
ANALYZE;
"""


# -- 1. ingest ----------------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_ingest(size: Size, database_url: str, topology: Topology) -> Result:
    blocks = list(
        limited_blocks(
            max(1, size.ingest_rows // (size.days * 96 * 2) + 1), size.days, size.ingest_rows, start=YEAR_START, seed=1
        )
    )
    rows = sum(len(b.ts) for b in blocks)
    engine = make_engine(database_url)
    payload = copy_buffer(blocks)
    with engine.begin() as connection:
        connection.execute(
            text("DROP TABLE IF EXISTS copy_reference; CREATE TABLE copy_reference (LIKE readings INCLUDING ALL)")
        )
        connection.execute(text("ALTER TABLE copy_reference ALTER COLUMN ingest_run_id DROP NOT NULL"))
    with engine.begin() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        started = time.perf_counter()
        cursor.copy_expert(
            "COPY copy_reference (muid, obis, ts, value, quality, measurement) FROM STDIN (FORMAT binary)",
            io.BytesIO(payload),
        )
        cursor.close()
    copy_seconds = time.perf_counter() - started
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE copy_reference"))
    progress(f"raw COPY of {rows:,} rows: {copy_seconds:.2f} s")

    def requests() -> Iterator[ingest_pb2.WriteReadingsRequest]:
        first = True
        for block in blocks:
            for begin in range(0, len(block.ts), 10_000):
                columns = ingest_pb2.ReadingColumns(
                    muid=block.muid, obis=block.obis, quality="measured", measurement="energy",
                    ts_seconds=block.ts[begin : begin + 10_000].tolist(), values=block.values[begin : begin + 10_000].tolist(),
                )  # fmt: skip
                yield ingest_pb2.WriteReadingsRequest(columns=[columns], register_unknown_meters=first)
                first = False

    with sync_channel(topology.address("ingest")) as channel:
        started = time.perf_counter()
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        run = stub.WriteReadings(requests(), timeout=3600, metadata=tenant_metadata(DEFAULT_TENANT))
        ingest_seconds = time.perf_counter() - started
    assert run.inserted == rows, f"ingest inserted {run.inserted} of {rows}"
    memory = peak_rss_mb(topology.processes["ingest"].process.pid)
    ingest_rate, copy_rate = rows / ingest_seconds, rows / copy_seconds
    ratio = ingest_rate / copy_rate
    progress(f"gRPC ingest of {rows:,} rows: {ingest_seconds:.2f} s ({ratio:.2f} of COPY), peak RSS {memory:.0f} MB")
    return Result(
        "1. ingest (gRPC stream -> PostgreSQL)",
        f"{ingest_rate:,.0f} rows/s ({ingest_seconds:.2f} s for {rows:,})",
        f"raw binary COPY {copy_rate:,.0f} rows/s ({copy_seconds:.2f} s)",
        ratio, ">= 0.5 of COPY; peak RSS < 300 MB", ratio >= 0.5 and memory < 300,
        {"rows": rows, "ingest_seconds": ingest_seconds, "copy_seconds": copy_seconds, "peak_rss_mb": round(memory, 1)},
    )  # fmt: skip


# -- 2./3. per-meter series ---------------------------------------------------------------------------
SERIES_CALLS = {
    "daily sums, Europe/Zurich": ("day", "sum"),
    "hourly means, Europe/Zurich": ("hour", "mean"),
}


def series_url(gateway: str, muid: str, interval: str, agg: str, days: int) -> str:
    end = "2024-01-01" if days >= 365 else f"2023-01-{1 + days:02d}"
    return f"{gateway}/api/v1/meters/{muid}/series?obis={IMPORT_OBIS}&start=2023-01-01&end={end}&interval={interval}&agg={agg}&tz=Europe/Zurich"


def direct_series(database_url: str, muid: str, interval: str, agg: str, days: int) -> Callable[[], Any]:
    """The query service's own SQL, run directly (no gRPC, no gateway)."""
    from meterdata.settings import Settings
    from query_service.queries import Queries

    queries = Queries(make_engine(database_url), Settings(database_url=database_url))
    end = datetime(2024, 1, 1, tzinfo=UTC) if days >= 365 else datetime(2023, 1, 1 + days, tzinfo=UTC)
    return lambda: queries.series(
        tenant=DEFAULT_TENANT,
        muid=muid,
        obis=IMPORT_OBIS,
        start=YEAR_START,
        end=end,
        interval=interval,
        aggregation=agg,
        time_zone="Europe/Zurich",
    )


def measure_series(size: Size, database_url: str, topology: Topology, muid: str) -> dict[str, dict[str, Any]]:
    figures = {}
    gateway = topology.gateway_url
    with httpx.Client(timeout=30, headers=topology.auth_headers) as client:
        for label, (interval, agg) in SERIES_CALLS.items():
            url = series_url(gateway, muid, interval, agg, size.days)
            response = client.get(url)
            response.raise_for_status()
            via_gateway = timed(lambda url=url: client.get(url).raise_for_status(), size.calls)
            direct = timed(direct_series(database_url, muid, interval, agg, size.days), size.calls)
            figures[label] = {
                "gateway": latency_summary(via_gateway),
                "direct": latency_summary(direct),
                "buckets": len(response.json()["buckets"]),
            }
    return figures


def bench_series(size: Size, database_url: str, topology: Topology) -> tuple[Result, dict[str, Any]]:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE fleet_hourly, readings_hourly, rejected_readings, reading_revisions, readings, meter_channels, meters, ingest_runs CASCADE"
            )
        )
    loaded = bulk_load(database_url, size.small_fleet, size.days)
    with engine.connect() as connection:
        muid = connection.execute(text("SELECT muid::text FROM meters ORDER BY muid LIMIT 1")).scalar_one()
    progress(f"{size.small_fleet} meters x {size.days} days loaded ({loaded:,} readings); timing series")
    small = measure_series(size, database_url, topology, muid)
    daily = small["daily sums, Europe/Zurich"]
    ratio = daily["gateway"]["p50"] / daily["direct"]["p50"]
    result = Result(
        "2. per-meter series (a year, daily sums in Europe/Zurich)",
        f"gateway p50 {daily['gateway']['p50']} ms, p95 {daily['gateway']['p95']} ms, p99 {daily['gateway']['p99']} ms",
        f"same SQL directly p50 {daily['direct']['p50']} ms", ratio, "gateway p50 <= 3x direct SQL", ratio <= 3, small,
    )  # fmt: skip
    return result, {"muid": muid, "small": small}


def bench_growth(size: Size, database_url: str, topology: Topology, muid: str, small: dict[str, Any]) -> Result:
    started = time.perf_counter()
    loaded = bulk_load(database_url, size.large_fleet - size.small_fleet, size.days, first_index=10_000)
    progress(
        f"grew to {size.large_fleet} meters (+{loaded:,} readings) in {time.perf_counter() - started:.0f} s; timing series"
    )
    large = measure_series(size, database_url, topology, muid)
    with make_engine(database_url).connect() as connection:
        readings = connection.execute(
            text("SELECT sum(reading_count) FROM meter_channels WHERE obis = :o"), {"o": IMPORT_OBIS}
        ).scalar_one()
    before = small["daily sums, Europe/Zurich"]["gateway"]["p50"]
    after = large["daily sums, Europe/Zurich"]["gateway"]["p50"]
    ratio = after / before
    return Result(
        f"3. cost growth ({size.small_fleet} -> {size.large_fleet} meters, {int(readings):,} readings per channel)",
        f"per-meter daily series p50 {after} ms with {size.large_fleet} meters",
        f"{before} ms with {size.small_fleet} meters", ratio, "grows < 1.5x", ratio < 1.5,
        {"large": large, "readings_in_channel": int(readings)},
    )  # fmt: skip


# -- 4. fleet -----------------------------------------------------------------------------------------
RAW_FLEET_DAILY = """
SELECT date_trunc('day', ts, 'Europe/Zurich') AS day, sum(value) AS total, count(*) AS n
FROM readings r JOIN meters m USING (muid)
WHERE m.tenant = 'default' AND obis = :obis AND ts >= :start AND ts < :end
GROUP BY 1 ORDER BY 1
"""


def bench_fleet(size: Size, database_url: str, topology: Topology) -> Result:
    end = YEAR_END if size.days >= 365 else datetime(2023, 1, 1 + size.days, tzinfo=UTC)
    # UTC instants, so the raw SQL below and the gateway cut the same range into the same local days
    url = f"{topology.gateway_url}/api/v1/fleet/series?obis={IMPORT_OBIS}&start=2023-01-01T00:00:00Z&end={end.date()}T00:00:00Z&interval=day&agg=sum&tz=Europe/Zurich"
    engine = make_engine(database_url)
    with httpx.Client(timeout=60, headers=topology.auth_headers) as client:
        response = client.get(url)
        if response.status_code == 404:
            return Result("4. fleet aggregation", "not available: no fleet series route", "", None, "< 1 s", False)
        response.raise_for_status()
        samples = timed(lambda: client.get(url).raise_for_status(), max(3, size.calls // 20))
    with engine.connect() as connection:
        started = time.perf_counter()
        raw = connection.execute(text(RAW_FLEET_DAILY), {"obis": IMPORT_OBIS, "start": YEAR_START, "end": end}).all()
        raw_seconds = time.perf_counter() - started
    served = [(b["value"], b["count"]) for b in response.json()["buckets"] if b["count"]]
    equal = len(served) == len(raw) and all(
        abs(v - r.total) <= 1e-9 * max(1.0, abs(r.total)) and n == r.n for (v, n), r in zip(served, raw, strict=False)
    )
    p50 = percentile(samples, 50)
    return Result(
        f"4. fleet aggregation (daily totals of {size.large_fleet} meters over the range)",
        f"gateway p50 {p50 * 1000:.1f} ms from the rollup; equal to raw readings: {equal}",
        f"the same from raw readings in SQL: {raw_seconds * 1000:.0f} ms", p50 / raw_seconds, "< 1 s and exactly equal to raw",
        p50 < 1.0 and equal, {"days": len(raw), "raw_seconds": raw_seconds, "gateway": latency_summary(samples)},
    )  # fmt: skip


# -- 5. throughput ------------------------------------------------------------------------------------
DIRECT_APP = '''
import os
from fastapi import FastAPI
from sqlalchemy import create_engine, text
engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=10)
app = FastAPI()
SQL = text("""SELECT date_trunc('hour', ts, 'Europe/Zurich') AS hour, sum(value) AS total, count(*) AS n FROM readings
WHERE muid = CAST(:muid AS uuid) AND obis = :obis AND ts >= '2023-01-02T00:00:00+01:00' AND ts < '2023-01-03T00:00:00+01:00' GROUP BY 1 ORDER BY 1""")
@app.get("/series/{muid}")
def series(muid: str):
    with engine.connect() as c:
        return {"buckets": [{"start": r.hour.isoformat(), "value": r.total, "count": r.n} for r in c.execute(SQL, {"muid": muid, "obis": os.environ["BENCH_OBIS"]})]}
'''


async def hammer(url: str, clients: int, seconds: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    kinds: Counter[str] = Counter()
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients), headers=headers
    ) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    if response.status_code != 200:
                        errors += 1
                        kinds[f"HTTP {response.status_code}: {response.text[:120]}"] += 1
                except httpx.HTTPError as error:
                    errors += 1
                    kinds[type(error).__name__] += 1
                latencies.append(time.perf_counter() - started)

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - begun
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "errors": errors,
        "error_kinds": dict(kinds),
        **latency_summary(latencies),
    }


def bench_throughput(size: Size, database_url: str, topology: Topology, muid: str) -> Result:
    gateway_url = f"{topology.gateway_url}/api/v1/meters/{muid}/series?obis={IMPORT_OBIS}&start=2023-01-02&end=2023-01-03&interval=hour&agg=sum&tz=Europe/Zurich"
    port = free_port()
    env = dict(
        os.environ,
        BENCH_DATABASE_URL=sqlalchemy_url(database_url),
        BENCH_OBIS=IMPORT_OBIS,
        PYTHONPATH=str(PROJECT_ROOT),
    )
    app_dir = Path(topology.log_dir) / "direct_app"
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "direct_app.py").write_text(DIRECT_APP)
    direct = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "direct_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=app_dir, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/series/{muid}", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        via_gateway = asyncio.run(hammer(gateway_url, size.clients, size.seconds, topology.auth_headers))
        progress(f"gateway: {via_gateway['rps']:.0f} req/s, {via_gateway['errors']} errors")
        via_direct = asyncio.run(hammer(f"http://127.0.0.1:{port}/series/{muid}", size.clients, size.seconds))
        progress(f"direct app: {via_direct['rps']:.0f} req/s, {via_direct['errors']} errors")
    finally:
        direct.terminate()
        direct.wait(10)
    ratio = via_gateway["rps"] / via_direct["rps"]
    return Result(
        f"5. gateway throughput ({size.clients} clients, {size.seconds:.0f} s, a day of hourly sums)",
        f"{via_gateway['rps']:.0f} req/s, {via_gateway['errors']} errors, p99 {via_gateway['p99']} ms",
        f"minimal FastAPI app with the SQL inline: {via_direct['rps']:.0f} req/s, p99 {via_direct['p99']} ms",
        ratio, "0 errors (the ratio is the cost of the gRPC hop)", via_gateway["errors"] == 0,
        {"gateway": via_gateway, "direct": via_direct},
    )  # fmt: skip


# -- 6. load ------------------------------------------------------------------------------------------
LOAD_SEED = 99  # the load's ingest stream writes meters of its own, none of the bulk-loaded fleet


def bench_load(size: Size, topology: Topology) -> Result:
    """The issue's load at full size. The reference is the same mix from a single client with no ingest:
    the ratio says how much the p99 grows under 50 clients and a concurrent stream on this machine."""
    with httpx.Client(base_url=topology.gateway_url, headers=topology.auth_headers, timeout=30) as client:
        channels = discover_channels(client)  # once, so both runs draw from the same channels
    alone = run_load(
        topology.gateway_url, clients=1, seconds=size.load_seconds / 4, headers=topology.auth_headers,
        channels=channels, seed=LOAD_SEED,
    )  # fmt: skip
    progress(f"one client alone: {alone.summary()}")
    loaded = run_load(
        topology.gateway_url, clients=size.load_clients, seconds=size.load_seconds, headers=topology.auth_headers,
        channels=channels, ingest_address=topology.address("ingest"), seed=LOAD_SEED,
    )  # fmt: skip
    progress(f"under load: {loaded.summary()}")
    for sample in loaded.error_samples[:5]:
        progress(f"error: {sample}")
    ingest = loaded.ingest
    held = loaded.errors == 0 and ingest is not None and ingest.status == "succeeded"
    return Result(
        f"6. load ({size.load_clients} clients, {size.load_seconds:.0f} s, series/readings/summary while ingesting)",
        f"{loaded.requests:,} requests ({loaded.rps:.0f}/s), {loaded.errors} errors, p50 {loaded.p50_ms} ms, "
        f"p99 {loaded.p99_ms} ms; ingest {ingest.readings if ingest else 0:,} readings, run {ingest.status if ingest else '-'}",
        f"the same mix from one client, nothing else running: p50 {alone.p50_ms} ms, p99 {alone.p99_ms} ms",
        loaded.p99_ms / alone.p99_ms if alone.p99_ms else None, "0 errors, the ingest run succeeded", held,
        {"loaded": loaded.as_dict(), "alone": alone.as_dict()},
    )  # fmt: skip


# -- report -------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    import grpc
    import sqlalchemy

    with make_engine(BENCH_STATE["url"]).connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar_one()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
        "python": platform.python_version(),
        "postgresql": postgres,
        "database": BENCH_STATE["description"],
        "grpcio": grpc.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }


BENCH_STATE: dict[str, str] = {}


def markdown(size: Size, info: dict[str, str], results: list[Result]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"`make bench` (size `{size.name}`) on {info['date']}: {info['machine']}, Python {info['python']}, "
        f"PostgreSQL {info['postgresql']} ({info['database']}), grpcio {info['grpcio']}, SQLAlchemy {info['sqlalchemy']}.",
        "Every figure stands beside a reference measured in the same run on the same machine; the ratio is figure / reference.",
        "",
        "| measurement | figure | reference | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(f"| {r.name} | {r.figure} | {r.reference} | {ratio} | {r.target} | {met} |")
    lines += ["", "Raw figures: [`benchmarks.json`](benchmarks.json).", ""]
    return "\n".join(lines)


def run(size: Size, out_dir: Path) -> list[Result]:
    settings = get_settings()
    server_url, description = resolve_database_url(settings)
    name = f"meterdata_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
    BENCH_STATE.update(url=database_url, description=description)
    results: list[Result] = []
    try:
        migrate(database_url)
        logs = out_dir / ".bench-logs" if size.name == "smoke" else settings.data_dir / "bench-logs"
        # The per-key rate limit protects a shared gateway; the load measurements need it out of the way.
        topology = Topology.on_free_ports(database_url, logs, {"RATE_LIMIT_PER_SECOND": "0"})
        with topology:
            progress(f"services up on free ports, database {name} ({description})")
            results.append(bench_ingest(size, database_url, topology))
            series, state = bench_series(size, database_url, topology)
            results.append(series)
            results.append(bench_growth(size, database_url, topology, state["muid"], state["small"]))
            results.append(bench_fleet(size, database_url, topology))
            results.append(bench_throughput(size, database_url, topology, state["muid"]))
            results.append(bench_load(size, topology))
            info = machine()
    finally:
        make_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "BENCHMARKS.md").write_text(markdown(size, info, results))
    (out_dir / "benchmarks.json").write_text(
        json.dumps(
            {"size": asdict(size), "machine": info, "results": [asdict(r) for r in results]}, indent=2, default=str
        )
        + "\n"
    )
    print(markdown(size, info, results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterdata.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="full", help="full (about 17 minutes) or smoke (seconds, for CI)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "docs",
        help="folder for BENCHMARKS.md and benchmarks.json (default docs/)",
    )
    args = parser.parse_args(argv)
    run(SIZES[args.size], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
