"""Load through the gateway: N concurrent clients for S seconds mixing series, readings and summary calls,
while an ingest stream writes new meters through the ingest service.

Every answer other than 200 is an error (so is a timeout or a refused connection), and each call's
latency is kept, so the report has p50/p95/p99 per kind and overall. The ingest stream is paced
(`ingest_rate` readings per second) and ends with the load; its run must end `succeeded`.

    from meterdata.loadtest import run_load
    report = run_load("http://127.0.0.1:8000", clients=50, seconds=60, ingest_address="127.0.0.1:50051")
    assert report.errors == 0, report.error_samples

`make bench` runs it at full size (50 clients, 60 s); the test suite at a small one.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np

QUARTER = timedelta(minutes=15)
KINDS = ("series", "readings", "summary")
SERIES_SHAPES = [  # (interval, longest range in days): charts a frontend draws
    ("15min", 3),
    ("hour", 14),
    ("day", 120),
    ("week", 400),
    ("month", 800),
]
AGGREGATIONS = ("sum", "mean", "max", "count")
ZONES = ("Europe/Zurich", "UTC", "America/New_York")


@dataclass(frozen=True)
class Channel:
    muid: str
    obis: str
    first: datetime
    last: datetime


@dataclass
class KindStats:
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0


@dataclass
class IngestStats:
    messages: int = 0
    readings: int = 0
    run_id: int = 0
    status: str = ""
    inserted: int = 0
    error: str = ""


@dataclass
class LoadReport:
    clients: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    by_kind: dict[str, KindStats]
    statuses: dict[str, int]
    error_samples: list[str] = field(default_factory=list)
    ingest: IngestStats | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        line = (
            f"{self.clients} clients x {self.seconds:g} s: {self.requests} requests ({self.rps:.0f}/s), "
            f"{self.errors} errors, p50 {self.p50_ms} ms, p95 {self.p95_ms} ms, p99 {self.p99_ms} ms"
        )
        if self.ingest is not None:
            line += f"; ingest stream {self.ingest.readings} readings, run {self.ingest.run_id} {self.ingest.status}"
        return line


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    if not samples:
        return 0.0, 0.0, 0.0
    p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
    return round(float(p50), 2), round(float(p95), 2), round(float(p99), 2)


def discover_channels(client: httpx.Client, limit: int = 100) -> list[Channel]:
    """The channels with readings among the first `limit` meters the API lists."""
    response = client.get("/api/v1/meters", params={"limit": limit, "tz": "UTC"})
    response.raise_for_status()
    channels = []
    for meter in response.json()["meters"]:
        for channel in meter["channels"]:
            if channel["reading_count"] and channel["first_reading"] and channel["last_reading"]:
                channels.append(
                    Channel(
                        meter["muid"],
                        channel["obis"],
                        datetime.fromisoformat(channel["first_reading"]),
                        datetime.fromisoformat(channel["last_reading"]),
                    )
                )
    return channels


def _window(rng: random.Random, channel: Channel, longest_days: float) -> tuple[str, str]:
    """A random range inside the channel's data, at most `longest_days` long, on the quarter-hour grid."""
    span = channel.last + QUARTER - channel.first
    length = min(span, timedelta(days=rng.uniform(0.25, longest_days)))
    offset = (span - length) * rng.random()
    start = channel.first + (offset // QUARTER) * QUARTER
    end = start + max(QUARTER, (length // QUARTER) * QUARTER)
    return start.isoformat(), end.isoformat()


def request_for(kind: str, channel: Channel, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(path, params) of one call of `kind` on `channel`."""
    base = f"/api/v1/meters/{channel.muid}"
    if kind == "series":
        interval, longest = rng.choice(SERIES_SHAPES)
        start, end = _window(rng, channel, longest)
        params = {"obis": channel.obis, "interval": interval, "agg": rng.choice(AGGREGATIONS), "tz": rng.choice(ZONES)}
        return f"{base}/series", {**params, "start": start, "end": end}
    if kind == "readings":
        start, end = _window(rng, channel, 10)
        params = {"obis": channel.obis, "start": start, "end": end, "limit": rng.choice((96, 500, 1000))}
        return f"{base}/readings", {**params, "order": rng.choice(("asc", "desc"))}
    start, end = _window(rng, channel, 31)
    return f"{base}/summary", {
        "obis": channel.obis,
        "start": start,
        "end": end,
        "interval": rng.choice(("15min", "hour", "day")),
    }


async def _hammer(
    gateway_url: str, channels: list[Channel], clients: int, seconds: float, headers: Mapping[str, str],
    weights: Mapping[str, float], seed: int, timeout: float,
) -> tuple[dict[str, list[float]], dict[str, int], Counter[str], list[str], float]:  # fmt: skip
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: dict[str, int] = dict.fromkeys(KINDS, 0)
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    kinds, kind_weights = list(weights), list(weights.values())
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=gateway_url, headers=dict(headers), timeout=timeout, limits=limits) as client:

        async def worker(index: int, stop: float) -> None:
            rng = random.Random(seed * 1_000_003 + index)
            while time.perf_counter() < stop:
                kind = rng.choices(kinds, kind_weights)[0]
                path, params = request_for(kind, rng.choice(channels), rng)
                started = time.perf_counter()
                try:
                    response = await client.get(path, params=params)
                    status = str(response.status_code)
                    failed = response.status_code != 200
                    detail = response.text[:300]
                except httpx.HTTPError as error:
                    status, failed, detail = type(error).__name__, True, str(error)[:300]
                latencies[kind].append(time.perf_counter() - started)
                statuses[status] += 1
                if failed:
                    errors[kind] += 1
                    if len(samples) < 20:
                        samples.append(f"{status} GET {path} {params}: {detail}")

        begun = time.perf_counter()
        await asyncio.gather(*(worker(i, begun + seconds) for i in range(clients)))
        elapsed = time.perf_counter() - begun
    return latencies, errors, statuses, samples, elapsed


def _ingest_messages(stop: float, rate: float, stats: IngestStats, seed: int) -> Iterator[Any]:
    """Synthetic meters' blocks (a month each), paced at `rate` readings per second, until `stop`."""
    from meterdata.synthetic import generate
    from meterdata.v1 import ingest_pb2

    started = time.perf_counter()
    for block in generate(meters=1_000_000, days=62, block_days=31, seed=seed):
        if time.perf_counter() >= stop:
            return
        columns = ingest_pb2.ReadingColumns(
            muid=block.muid, obis=block.obis, ts_seconds=block.ts.tolist(), values=block.values.tolist(),
            quality="measured", measurement="energy",
        )  # fmt: skip
        yield ingest_pb2.WriteReadingsRequest(columns=[columns], register_unknown_meters=stats.messages == 0)
        stats.messages += 1
        stats.readings += len(block.ts)
        ahead = stats.readings / rate - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(min(ahead, max(0.0, stop - time.perf_counter())))


def _stream(address: str, stop: float, rate: float, stats: IngestStats, tenant: str, seed: int) -> None:
    import grpc

    from meterdata.grpc_client import sync_channel
    from meterdata.v1 import ingest_pb2, ingest_pb2_grpc

    with sync_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            run = stub.WriteReadings(
                _ingest_messages(stop, rate, stats, seed),
                timeout=max(60.0, stop - time.perf_counter() + 60),
                metadata=(("x-meterdata-tenant", tenant),),
            )
        except grpc.RpcError as error:
            stats.status, stats.error = "failed", f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
            return
    stats.run_id, stats.inserted = run.id, run.inserted
    stats.status = ingest_pb2.IngestRunStatus.Name(run.status).removeprefix("INGEST_RUN_STATUS_").lower()
    stats.error = run.error


def run_load(
    gateway_url: str,
    *,
    clients: int = 50,
    seconds: float = 60.0,
    headers: Mapping[str, str] | None = None,
    ingest_address: str | None = None,
    ingest_rate: float = 20_000.0,
    tenant: str = "default",
    weights: Mapping[str, float] | None = None,
    channels: list[Channel] | None = None,
    seed: int = 7,
    timeout: float = 30.0,
) -> LoadReport:
    """`clients` concurrent clients for `seconds` against the gateway at `gateway_url` (a mix of series,
    readings and summary calls on the channels the API lists, or `channels`), with an ingest stream into
    `ingest_address` meanwhile when given. `headers` carry the API key."""
    headers = dict(headers or {})
    weights = dict(weights or {"series": 0.6, "readings": 0.3, "summary": 0.1})
    if channels is None:
        with httpx.Client(base_url=gateway_url, headers=headers, timeout=timeout) as client:
            channels = discover_channels(client)
    if not channels:
        raise ValueError("no channel with readings to load: ingest or seed some data first")
    ingest: IngestStats | None = None
    streamer = None
    if ingest_address:
        ingest = IngestStats()
        stop = time.perf_counter() + seconds
        streamer = threading.Thread(
            target=_stream, args=(ingest_address, stop, ingest_rate, ingest, tenant, seed), daemon=True
        )
        streamer.start()
    latencies, errors, statuses, samples, elapsed = asyncio.run(
        _hammer(gateway_url, channels, clients, seconds, headers, weights, seed, timeout)
    )
    if streamer is not None:
        streamer.join(120)
    by_kind = {}
    for kind in KINDS:
        p50, p95, p99 = percentiles(latencies[kind])
        by_kind[kind] = KindStats(len(latencies[kind]), errors[kind], p50, p95, p99)
    every = [x for kind in KINDS for x in latencies[kind]]
    p50, p95, p99 = percentiles(every)
    return LoadReport(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=len(every),
        errors=sum(errors.values()),
        rps=round(len(every) / elapsed, 1),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        by_kind=by_kind,
        statuses=dict(statuses),
        error_samples=samples,
        ingest=ingest,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m meterdata.loadtest --gateway URL [--clients N --seconds S --ingest ADDRESS --key KEY]`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m meterdata.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8000", help="the gateway's base URL")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--ingest", default=None, help="ingest service address for a concurrent stream")
    parser.add_argument("--key", default=None, help="API key (sent as Authorization: Bearer)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    report = run_load(
        args.gateway, clients=args.clients, seconds=args.seconds, headers=headers, ingest_address=args.ingest
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    for sample in report.error_samples:
        print("error:", sample)
    return 1 if report.errors or (report.ingest and report.ingest.status != "succeeded") else 0


if __name__ == "__main__":
    raise SystemExit(main())
