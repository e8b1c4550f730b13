"""docker-compose.yml, run without Docker: every service's `command` as a local process with that
service's environment from the compose file.

What a container would change is substituted, and only that: compose host names become 127.0.0.1, the
container ports are remapped to free ones (as `ports:` would on a host), the test PostgreSQL stands in
for the `postgres` service, and a local mirror of the upstream (the published files over HTTP on
loopback) stands in for the internet. Each service must then pass its own compose healthcheck command,
the scheduler's first pull must land both published meters, and the gateway must answer a daily series
whose numbers are recomputed here from the raw JSON. The commands, ports and variables of the compose
file are then known to work, not just to parse.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, text

from meterdata.apikeys import create_key
from meterdata.runner import SERVICE_MODULES, free_port
from meterdata.settings import Settings
from tests.deploy_files import ROOT, command_argv, healthcheck_argv, load_compose, service_environment
from tests.seed import EXPORT_MUID, IMPORT_MUID, published_records

SERVICE_FILES = {
    "ingest_service": "server.py",
    "query_service": "server.py",
    "analytics_service": "server.py",
    "gateway": "app.py",
}
MISSING = [
    f"{package}/{name}"
    for package, name in [*SERVICE_FILES.items(), *((p, "__main__.py") for p in SERVICE_FILES)]
    if not (ROOT / package / name).exists()
]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(MISSING), reason=f"service packages not written yet: {', '.join(MISSING)}"),
]

CONTAINER_PORTS = {name: Settings.model_fields[f"{name}_port"].default for name in SERVICE_MODULES}
ZONE = ZoneInfo("Europe/Zurich")
HEALTH_TIMEOUT = 90.0
PULL_TIMEOUT = 120.0
READINGS_PER_METER = 2688


def seconds(duration: str) -> float:
    """A compose duration such as `15s`, `1m30s` or `500ms`."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def startup_order(services: Mapping[str, Any]) -> list[str]:
    """Services sorted so that each comes after everything in its depends_on."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name in order:
            return
        for dependency in services[name].get("depends_on") or {}:
            visit(dependency, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    return order


@dataclass
class ComposeAsProcesses:
    """The compose services as child processes on loopback."""

    compose: dict[str, Any]
    database_url: str
    upstream_url: str
    workdir: Path
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in SERVICE_MODULES})
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def localize(self, value: str) -> str:
        """`ingest:50051` (compose host name) or `127.0.0.1:50051` (in-container) -> 127.0.0.1:<remapped port>."""
        by_port = {str(port): self.ports[name] for name, port in CONTAINER_PORTS.items()}
        names = "|".join(CONTAINER_PORTS)
        pattern = rf"\b(?:{names}|127\.0\.0\.1|localhost):({'|'.join(by_port)})\b"
        return re.sub(pattern, lambda match: f"127.0.0.1:{by_port[match.group(1)]}", value)

    def environment(self, name: str) -> dict[str, str]:
        compose_env = service_environment(self.compose["services"][name])
        holds_database_url = "DATABASE_URL" in compose_env  # every process but the gateway
        if holds_database_url:
            database = urlsplit(compose_env["DATABASE_URL"])
            assert database.hostname == "postgres" and database.port == 5432, "DATABASE_URL names the compose postgres"
        settings = {name.upper() for name in Settings.model_fields}
        # The host's own meterdata settings (e.g. DATABASE_URL in CI) must not leak in: a container has none.
        env = {key: value for key, value in os.environ.items() if key not in settings}
        env.update({key: self.localize(value) for key, value in compose_env.items()})
        env.update(
            {
                **({"DATABASE_URL": self.database_url} if holds_database_url else {}),
                "GRPC_LISTEN_HOST": env["GRPC_LISTEN_HOST"].replace("0.0.0.0", "127.0.0.1"),
                "GATEWAY_HOST": env["GATEWAY_HOST"].replace("0.0.0.0", "127.0.0.1"),
                "UPSTREAM_BASE_URL": self.upstream_url,
                "PYTHONPATH": str(ROOT),
                **{f"{service.upper()}_PORT": str(port) for service, port in self.ports.items()},
            }
        )
        return env

    def argv(self, argv: list[str]) -> list[str]:
        """An argv from the compose file, with the image's `python` being this interpreter."""
        argv = [self.localize(arg) for arg in argv]
        return [sys.executable, *argv[1:]] if argv[0] == "python" else argv

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def run_to_completion(self, name: str, timeout: float = 120.0) -> int:
        """A one-shot service (depends_on condition service_completed_successfully)."""
        service = self.compose["services"][name]
        with self.log(name).open("wb") as log:
            return subprocess.run(
                self.argv(command_argv(service["command"])),
                cwd=self.workdir,
                env=self.environment(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode

    def start(self, name: str) -> None:
        service = self.compose["services"][name]
        with self.log(name).open("wb") as log:
            self.processes[name] = subprocess.Popen(
                self.argv(command_argv(service["command"])),
                cwd=self.workdir,  # no .env of the repository is read, as in the image
                env=self.environment(name),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def healthy(self, name: str) -> bool:
        """The service's own compose healthcheck command, run as `docker exec` would."""
        test = healthcheck_argv(self.compose["services"][name]["healthcheck"]["test"])
        try:
            result = subprocess.run(
                self.argv(test), cwd=self.workdir, env=self.environment(name), capture_output=True, timeout=15
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def wait_healthy(self, name: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < HEALTH_TIMEOUT:
            if self.processes[name].poll() is not None:
                pytest.fail(f"{name} exited with {self.processes[name].returncode}:\n{self.log_tail(name)}")
            if self.healthy(name):
                return time.monotonic() - started
            time.sleep(0.2)
        pytest.fail(f"{name} not healthy after {HEALTH_TIMEOUT:.0f} s:\n{self.log_tail(name)}")

    def stop_all(self) -> dict[str, tuple[int | None, float]]:
        """SIGTERM in reverse start order; (exit code or None if it had to be killed, seconds) per service."""
        outcome: dict[str, tuple[int | None, float]] = {}
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            grace = seconds(self.compose["services"][name].get("stop_grace_period", "10s"))
            started = time.monotonic()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code: int | None = process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
            outcome[name] = (code, time.monotonic() - started)
        return outcome


def expected_daily_sums(muid: str) -> tuple[str, dict[str, tuple[float, int]]]:
    """(obis, {local date: (sum, count)}) of a published meter, computed from its raw JSON records."""
    records = published_records(muid)
    obis = next(key for key in records[0] if key not in {"measurement", "timestamp", "tags"})
    days: dict[str, list[float]] = defaultdict(list)
    for record in records:
        instant = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        days[instant.astimezone(ZONE).date().isoformat()].append(float(record[obis]))
    return obis, {day: (sum(values), len(values)) for day, values in days.items()}


@pytest.fixture
def upstream_url() -> Iterator[str]:
    from ingest_service.mirror import Mirror

    with Mirror() as mirror:
        yield mirror.url


def test_compose_services_run_as_processes(
    database_url: str, clean_db: Engine, upstream_url: str, tmp_path: Path
) -> None:
    compose = load_compose({"POSTGRES_PASSWORD": "test-only"})
    services = compose["services"]
    topology = ComposeAsProcesses(compose, database_url, upstream_url, tmp_path)
    order = [name for name in startup_order(services) if name != "postgres"]  # the test database stands in
    assert order.index("migrate") < min(order.index(n) for n in ("ingest", "query"))
    health_seconds: dict[str, float] = {}
    try:
        for name in order:
            conditions = {dep: spec["condition"] for dep, spec in (services[name].get("depends_on") or {}).items()}
            for dependency, condition in conditions.items():
                if dependency == "postgres":
                    continue
                if condition == "service_healthy":
                    assert dependency in health_seconds, f"{name} needs {dependency} healthy first"
            if name == "migrate":
                code = topology.run_to_completion(name)
                assert code == 0, f"migrate exited with {code}:\n{topology.log_tail(name)}"
                continue
            topology.start(name)
            if services[name].get("healthcheck", {}).get("disable"):
                continue
            health_seconds[name] = topology.wait_healthy(name)
        assert set(health_seconds) == set(SERVICE_MODULES)

        # The scheduler's first pull (it pulls at once, then every PULL_INTERVAL_SECONDS) lands both meters.
        deadline = time.monotonic() + PULL_TIMEOUT
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            with clean_db.connect() as connection:
                counts = {
                    str(muid): count
                    for muid, count in connection.execute(text("SELECT muid, reading_count FROM meter_channels"))
                }
            if counts == {IMPORT_MUID: READINGS_PER_METER, EXPORT_MUID: READINGS_PER_METER}:
                break
            assert topology.processes["scheduler"].poll() is None, topology.log_tail("scheduler")
            time.sleep(0.5)
        assert counts == {IMPORT_MUID: READINGS_PER_METER, EXPORT_MUID: READINGS_PER_METER}, (
            f"{counts}\n{topology.log_tail('scheduler')}\n{topology.log_tail('ingest')}"
        )

        # The published port: the gateway answers, its backends are ready, and the series is right.
        gateway = f"http://127.0.0.1:{topology.ports['gateway']}"
        key = create_key(clean_db, "default", "read", "compose process test").key
        with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            assert client.get("/readyz").status_code == 200, client.get("/readyz").text
            for muid in (IMPORT_MUID, EXPORT_MUID):
                obis, days = expected_daily_sums(muid)
                response = client.get(
                    f"/api/v1/meters/{muid}/series",
                    params={
                        "obis": obis,
                        "interval": "day",
                        "agg": "sum",
                        "start": "2023-02-01",
                        "end": "2023-03-01",
                        "tz": "Europe/Zurich",
                    },
                )
                assert response.status_code == 200, response.text
                buckets = response.json()["buckets"]
                got = {b["start"][:10]: (b["value"], b["count"], b["expected"]) for b in buckets}
                # 28 local days; the first holds 92 readings (data starts at 01:00 Zurich), the readings
                # of 28 Feb after 23:00 UTC belong to 1 March, outside the range.
                assert sorted(got) == [f"2023-02-{day:02d}" for day in range(1, 29)]
                for day, (value, count, expected) in got.items():
                    assert (count, expected) == (days[day][1], 96), day
                    assert value == pytest.approx(days[day][0], abs=1e-9), day
                assert got["2023-02-01"][1] == 92
    finally:
        stopped = topology.stop_all()
    killed = {name: secs for name, (code, secs) in stopped.items() if code is None}
    assert not killed, f"not stopped by SIGTERM within stop_grace_period: {killed}"
