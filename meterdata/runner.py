"""The local runner: one command brings up the database, the three services and the gateway.

`make run` calls `python -m meterdata run`. The tests start the same `Topology` on free ports, so
the end-to-end tests exercise exactly what a user runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterdata import PROJECT_ROOT
from meterdata.db import make_engine, migrate, start_embedded_postgres
from meterdata.settings import Settings, get_settings
from meterdata.tenancy import DEFAULT_TENANT

log = logging.getLogger("meterdata.runner")

SERVICE_MODULES = {
    "ingest": "ingest_service",
    "query": "query_service",
    "analytics": "analytics_service",
    "gateway": "gateway",
}
GRPC_SERVICE_NAMES = {
    "ingest": "meterdata.v1.IngestService",
    "query": "meterdata.v1.QueryService",
    "analytics": "meterdata.v1.AnalyticsService",
}
START_ORDER = ("query", "ingest", "analytics", "gateway")
DEV_KEY_NOTE = "make run development key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resolve_database_url(settings: Settings) -> tuple[str, str]:
    """(url, description): the configured server, or the embedded one started under data_dir."""
    if settings.database_url:
        return settings.database_url, "PostgreSQL from DATABASE_URL"
    if settings.environment == "production":
        raise RuntimeError("DATABASE_URL must be set when ENVIRONMENT=production (no embedded database there)")
    url = start_embedded_postgres(settings.data_dir)
    return url, f"embedded PostgreSQL (pgserver) in {settings.data_dir / 'pgdata'}"


def grpc_healthy(address: str, service: str, timeout: float = 1.0, settings: Settings | None = None) -> bool:
    """The gRPC health of `service` at `address`, over TLS when GRPC_TLS_CA_FILE is set."""
    from meterdata.grpc_client import sync_channel

    with sync_channel(address, settings or get_settings()) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def http_healthy(url: str, timeout: float = 1.0, ca_file: str = "") -> bool:
    """GET `url` answers 200; an https URL is verified with `ca_file` (else the system's CAs)."""
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        return httpx.get(url, timeout=timeout, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Topology:
    """The services as child processes on the given ports, sharing one database."""

    database_url: str
    log_dir: Path
    ports: dict[str, int] = field(
        default_factory=lambda: {"ingest": 50051, "query": 50052, "analytics": 50053, "gateway": 8000}
    )
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, database_url: str, log_dir: Path, extra_env: Mapping[str, str] | None = None) -> Topology:
        return cls(database_url, log_dir, {name: free_port() for name in SERVICE_MODULES}, dict(extra_env or {}))

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        scheme = "https" if self.extra_env.get("GATEWAY_TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{self.ports['gateway']}"

    @cached_property
    def api_key(self) -> str:
        """An admin key of the default tenant in this topology's database, created on first use (as `make
        run` creates one): what tests and tools send to the gateway."""
        from meterdata.apikeys import create_key

        return create_key(make_engine(self.database_url), DEFAULT_TENANT, "admin", "topology").key

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client_settings(self) -> Settings:
        """Settings of a client of this topology (TLS towards its services when they use it)."""
        return Settings(_env_file=None, grpc_tls_ca_file=self.extra_env.get("GRPC_TLS_CA_FILE", ""))  # type: ignore[call-arg]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
                "INGEST_PORT": str(self.ports["ingest"]),
                "QUERY_PORT": str(self.ports["query"]),
                "ANALYTICS_PORT": str(self.ports["analytics"]),
                "GATEWAY_PORT": str(self.ports["gateway"]),
                "INGEST_ADDRESS": self.address("ingest"),
                "QUERY_ADDRESS": self.address("query"),
                "ANALYTICS_ADDRESS": self.address("analytics"),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, names: Iterable[str] = START_ORDER, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        wanted = [name for name in START_ORDER if name in set(names)]
        for name in wanted:
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("ab") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", SERVICE_MODULES[name], "serve"],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            self.processes[name] = ServiceProcess(name, process, log_path)
        for name in wanted:
            self.wait_healthy(name, timeout)

    def is_healthy(self, name: str) -> bool:
        if name == "gateway":
            # the gateway's certificate is checked with the same CA as the services' (one CA in tests)
            return http_healthy(f"{self.gateway_url}/healthz", ca_file=self.extra_env.get("GRPC_TLS_CA_FILE", ""))
        return grpc_healthy(self.address(name), GRPC_SERVICE_NAMES[name], settings=self.client_settings())

    def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        service = self.processes[name]
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{service.log_tail()}")
            if self.is_healthy(name):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} not healthy after {timeout:.0f}s:\n{service.log_tail()}")

    def stop(self, names: Iterable[str] | None = None) -> None:
        for name in reversed(START_ORDER):
            if name in self.processes and (names is None or name in names):
                self.processes.pop(name).stop()

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def development_key(database_url: str) -> str:
    """`make run`'s key (tenant default, scope admin): the previous run's key is revoked, a new one made."""
    from meterdata.apikeys import create_key, revoke_keys_with_note

    engine = make_engine(database_url)
    revoke_keys_with_note(engine, DEFAULT_TENANT, DEV_KEY_NOTE)
    return create_key(engine, DEFAULT_TENANT, "admin", DEV_KEY_NOTE).key


def prepare_database(settings: Settings) -> str:
    url, description = resolve_database_url(settings)
    print(f"database: {description}")
    migrate(url)
    print("database: schema migrated to the newest revision")
    return url


def run(settings: Settings) -> int:
    """`make run`: database, migrations, services, an ingest of the published meters, then wait for Ctrl-C."""
    from contextlib import ExitStack

    from ingest_service.cli import choose_source, console, pull_through_service  # the ingest service owns pulling

    database_url = prepare_database(settings)
    # Pick the upstream once, before the services start, and give it to them: later pulls (the API's
    # POST /api/v1/ingest/runs, the dashboard) then use the same source, the local mirror when offline.
    mirror_stack = ExitStack()
    source, sentence = choose_source(settings, None, mirror_stack)
    console.print(sentence)
    ports = {
        "ingest": settings.ingest_port,
        "query": settings.query_port,
        "analytics": settings.analytics_port,
        "gateway": settings.gateway_port,
    }
    topology = Topology(database_url, settings.data_dir / "logs", ports, {"UPSTREAM_BASE_URL": source})
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        print("services: starting " + ", ".join(f"{n} on :{p}" for n, p in ports.items()))
        topology.start()
        pull_through_service(settings, topology.address("ingest"), source)
        key = development_key(database_url)
        print()
        print(f"API key:  {key}")
        print("          (development key: tenant default, scope admin; a new one on every `make run`)")
        print(f"          export METERDATA_KEY={key}")
        print(f"gateway:  {topology.gateway_url}/#key={key}   (dashboard, signed in with the key)")
        print(f"API docs: {topology.gateway_url}/docs")
        print(f"example:  curl -H \"Authorization: Bearer $METERDATA_KEY\" '{topology.gateway_url}/api/v1/meters'")
        print(f"logs:     {topology.log_dir}/")
        print("Ctrl-C stops everything.")
        while not stopping:
            for service in topology.processes.values():
                if service.process.poll() is not None:
                    print(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping services ...")
        topology.stop()
        mirror_stack.close()
    return 0
