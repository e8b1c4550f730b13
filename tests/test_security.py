"""Security of the running topology (issue 7): API keys and their scopes, tenants kept apart by the
services themselves, limits, hostile input in every parameter, and no secret in any log or error body.

One topology for the module, as `make run` starts it, at DEBUG logging and with a database URL that
carries a password, so that the last test can grep every log for the secrets. Two tenants: `default`
with the two published meters, `acme` with an import and an export meter of its own (a synthetic
week whose sums are computed here). Keys are made with the operator CLI, as an operator would.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ingest_service.mirror import Mirror
from meterdata import PROJECT_ROOT
from meterdata.apikeys import create_key
from meterdata.db import sqlalchemy_url
from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology, development_key
from meterdata.v1 import (
    analytics_pb2,
    analytics_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from tests.seed import EXPORT_MUID, EXPORT_OBIS, IMPORT_MUID, IMPORT_OBIS, seed_published, seed_readings

ACME_IMPORT = "acde0000-0000-4000-8000-00000000000a"
ACME_EXPORT = "acde0000-0000-4000-8000-00000000000b"
ACME_START = datetime(2023, 2, 6, tzinfo=UTC)  # a Monday; a week of quarter-hours
QUARTER = timedelta(minutes=15)
DEFAULT_MUIDS = (IMPORT_MUID, EXPORT_MUID)
ACME_MUIDS = (ACME_IMPORT, ACME_EXPORT)
GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
TABLES = (
    "meters", "meter_channels", "readings", "readings_hourly", "fleet_hourly", "reading_revisions",
    "rejected_readings", "ingest_runs", "api_keys",
)  # fmt: skip
INJECTIONS = [
    "' OR 1=1 --",
    "'; DROP TABLE readings; --",
    '" OR ""="',
    "1) UNION SELECT muid::text, tenant FROM meters --",
    "ünïcødé ☃ \U0001d518\U0001d52b\U0001d526 \u202e\u0000 é",
    "a\x00b",
    "%27%20OR%20%271%27%3D%271",
    "x" * 4000,
]
# What a response must never contain for a key of the other tenant.
FOREIGN = {"acme": DEFAULT_MUIDS, "default": ACME_MUIDS}


def acme_points(muid: str) -> list[tuple[datetime, float]]:
    """A week of quarter-hours; import follows the hour of day, export is daytime only."""
    points = []
    for i in range(7 * 96):
        ts = ACME_START + i * QUARTER
        hour = ts.hour
        value = 0.02 + 0.001 * hour if muid == ACME_IMPORT else (0.05 if 8 <= hour < 16 else 0.0)
        points.append((ts, round(value, 4)))
    return points


def password_url(url: str, engine: Engine) -> tuple[str, str | None]:
    """`url` with a password in it (its own, or one added where the server trusts the connection), so the
    log test can look for it; (url, None) when the server would refuse an added password."""
    parsed = make_url(sqlalchemy_url(url))
    if parsed.password:
        return url, str(parsed.password)
    password = f"pw-{secrets.token_hex(8)}"
    candidate = parsed.set(password=password).render_as_string(hide_password=False)
    probe = create_engine(candidate)
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - a server that checks passwords: keep the original URL
        return url, None
    finally:
        probe.dispose()
    return candidate, password


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )


def create_key_with_cli(env: dict[str, str], tenant: str, scope: str) -> str:
    done = run_cli("create", "--tenant", tenant, "--scope", scope, "--note", "test", env=env)
    assert done.returncode == 0, done.stderr
    keys = re.findall(r"^mdk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", done.stdout, re.MULTILINE)
    assert len(keys) == 1, done.stdout
    return keys[0]


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


@dataclass
class Stack:
    topology: Topology
    engine: Engine
    cli_env: dict[str, str]
    password: str | None
    keys: dict[str, str]  # "<tenant>-<scope>" -> key
    bodies: list[str] = field(default_factory=list)  # every error body seen, for the secret grep

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.topology.gateway_url, headers=headers, timeout=60)

    def get(self, path: str, key: str | None, **params: Any) -> httpx.Response:
        with self.client(key) as client:
            response = client.get(path, params=params)
        self.note(response)
        return response

    def note(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            self.bodies.append(response.text)


@pytest.fixture(scope="module")
def stack(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    seed_published(engine)
    seed_readings(engine, ACME_IMPORT, IMPORT_OBIS, acme_points(ACME_IMPORT), tenant="acme")
    seed_readings(engine, ACME_EXPORT, EXPORT_OBIS, acme_points(ACME_EXPORT), tenant="acme")
    url, password = password_url(database_url, engine)
    with Mirror() as mirror:
        env = {
            "LOG_LEVEL": "DEBUG",
            "API_KEY_CACHE_SECONDS": "1",
            "RATE_LIMIT_PER_SECOND": "0",  # the injection test sends hundreds of requests; 429 is tested apart
            "GRPC_MAX_MESSAGE_BYTES": str(GRPC_MAX_MESSAGE_BYTES),
            "UPSTREAM_BASE_URL": mirror.url,
            "UPSTREAM_FALLBACK_TO_MIRROR": "false",
        }
        topology = Topology.on_free_ports(url, tmp_path_factory.mktemp("security-logs"), env)
        topology.start()
        cli_env = topology.environment()
        try:
            keys = {"default-admin": topology.api_key, "acme-read": create_key_with_cli(cli_env, "acme", "read")}
            for name in ("default-read", "default-ingest", "acme-ingest", "acme-admin"):  # the CLI's own code
                tenant, scope = name.split("-")
                keys[name] = create_key(engine, tenant, scope, "test").key
            yield Stack(topology, engine, cli_env, password, keys)
        finally:
            topology.stop()


def operations(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    document = httpx.get(f"{stack.topology.gateway_url}/openapi.json", timeout=30).json()
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/")
    ]


def valid_parameters(operation: dict[str, Any], tenant: str) -> tuple[dict[str, str], dict[str, Any]]:
    """(path, query) parameters the route accepts for `tenant`: the documented examples, with that
    tenant's own meters in place of the published ones."""
    mine = {IMPORT_MUID: ACME_IMPORT, EXPORT_MUID: ACME_EXPORT} if tenant == "acme" else {}
    path_params, query = {}, {}
    for parameter in operation.get("parameters", []):
        value = parameter.get("example")
        value = mine.get(value, value) if isinstance(value, str) else value
        if parameter["in"] == "path":
            path_params[parameter["name"]] = str(value)
        elif parameter["in"] == "query" and parameter["name"] not in ("page_token", "format"):
            query[parameter["name"]] = value
    return path_params, query


def build(template: str, path_params: dict[str, str]) -> str:
    return template.format(**{name: quote(value, safe="") for name, value in path_params.items()})


def valid_request(path: str, operation: dict[str, Any], tenant: str) -> tuple[str, dict[str, Any]]:
    path_params, query = valid_parameters(operation, tenant)
    return build(path, path_params), query


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


# ---------------------------------------------------------------- keys


def test_keys_cli_stores_only_a_hash_lists_without_secrets_and_revokes(stack: Stack) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout
    assert all(word in help_text for word in ("read", "ingest", "admin", "create", "revoke", "list", "tenant"))
    bad = run_cli("create", "--tenant", "Not A Tenant", "--scope", "read", env=stack.cli_env)
    assert bad.returncode != 0 and "tenant" in bad.stderr

    key = create_key_with_cli(stack.cli_env, "default", "read")
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    with stack.engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key_id}).mappings().one()
    assert bytes(row["secret_sha256"]) == hashlib.sha256(f"{key_id}:{secret}".encode()).digest()
    assert secret not in json.dumps({k: str(v) for k, v in row.items()})  # no column holds the secret
    assert (row["tenant"], row["scope"], row["revoked_at"]) == ("default", "read", None)

    listing = run_cli("list", "--tenant", "default", env=stack.cli_env)
    assert listing.returncode == 0 and key_id in listing.stdout and secret not in listing.stdout

    assert stack.get("/api/v1/meters", key).status_code == 200
    revoked = run_cli("revoke", key_id, env=stack.cli_env)
    assert revoked.returncode == 0, revoked.stderr
    assert run_cli("revoke", key_id, env=stack.cli_env).returncode == 1  # already revoked
    time.sleep(1.2)  # API_KEY_CACHE_SECONDS=1 in this topology
    assert_problem(stack.get("/api/v1/meters", key), 401)
    assert key_id in run_cli("list", "--all", env=stack.cli_env).stdout


def test_make_run_development_key_replaces_the_previous_one(stack: Stack) -> None:
    first = development_key(stack.topology.database_url)
    second = development_key(stack.topology.database_url)
    time.sleep(1.2)
    assert_problem(stack.get("/api/v1/meters", first), 401)
    muids = {m["muid"] for m in stack.get("/api/v1/meters", second, limit=1000).json()["meters"]}
    assert set(DEFAULT_MUIDS) <= muids and not muids & set(ACME_MUIDS)  # other tests may add default meters


def test_every_api_route_requires_a_valid_key(stack: Stack) -> None:
    wrong_secret = stack.keys["default-read"][:-4] + "AAAA"
    unknown = f"mdk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    checked = 0
    for method, path, operation in operations(stack):
        url, query = valid_request(path, operation, "default")
        for headers, error in (
            ({}, None),
            ({"Authorization": f"Bearer {wrong_secret}"}, "invalid_token"),
            ({"X-API-Key": unknown}, "invalid_token"),
            ({"Authorization": "Bearer not-a-key"}, "invalid_token"),
            ({"Authorization": f"Basic {stack.keys['default-admin']}"}, None),  # not a bearer token
        ):
            with stack.client(**headers) as client:
                response = client.request(method.upper(), url, params=query)
            stack.note(response)
            body = assert_problem(response, 401)
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer realm=") and (error is None or f'error="{error}"' in challenge)
            assert body["instance"] == url
            checked += 1
    assert checked == 5 * len(operations(stack)) and checked >= 5 * 15
    # Either header carries a good key.
    with stack.client(**{"X-API-Key": stack.keys["default-read"]}) as client:
        assert client.get("/api/v1/meters").status_code == 200
    assert stack.get("/api/v1/meters", stack.keys["default-read"]).status_code == 200
    # The open routes stay open.
    with stack.client() as client:
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/", "/js/api.js", "/metrics"):
            assert client.get(path).status_code == 200, path


def test_openapi_declares_the_key_schemes_on_every_api_operation(stack: Stack) -> None:
    document = httpx.get(f"{stack.topology.gateway_url}/openapi.json", timeout=30).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    for method, path, operation in operations(stack):
        assert operation["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], (method, path)
        assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in document["paths"][path]["get"]


def test_scopes(stack: Stack) -> None:
    run_body = {"muids": [IMPORT_MUID], "full": False}
    read, ingest, admin = (stack.keys[f"default-{s}"] for s in ("read", "ingest", "admin"))
    with stack.client(read) as client:
        assert client.get(f"/api/v1/meters/{IMPORT_MUID}/series", params={"interval": "day"}).status_code == 200
        assert client.get("/api/v1/ingest/runs").status_code == 200
        refused = client.post("/api/v1/ingest/runs", json=run_body)
        stack.note(refused)
        body = assert_problem(refused, 403)
        assert "'read' does not allow POST /api/v1/ingest/runs" in body["detail"]
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    with stack.client(ingest) as client:
        started = client.post("/api/v1/ingest/runs", json=run_body)
        assert started.status_code == 202, started.text
        run = client.get(started.headers["location"]).json()
        assert run["id"] == started.json()["id"] and run["muids"] == [IMPORT_MUID]
        refused = client.get("/api/v1/meters")
        stack.note(refused)
        assert "'ingest' does not allow GET /api/v1/meters" in assert_problem(refused, 403)["detail"]
    with stack.client(admin) as client:
        assert client.get("/api/v1/meters").status_code == 200
        assert client.post("/api/v1/ingest/runs", json=run_body).status_code == 202


# ---------------------------------------------------------------- tenants


def test_a_tenant_sees_only_its_own_meters_over_http(stack: Stack) -> None:
    acme, default = stack.keys["acme-read"], stack.keys["default-read"]
    listed = stack.get("/api/v1/meters", acme, limit=1000).json()
    assert sorted(m["muid"] for m in listed["meters"]) == sorted(ACME_MUIDS)
    assert {m["tenant"] for m in listed["meters"]} == {"acme"}
    csv_text = stack.get("/api/v1/meters", acme, format="csv").text
    assert ACME_IMPORT in csv_text and IMPORT_MUID not in csv_text
    theirs = {m["muid"] for m in stack.get("/api/v1/meters", default, limit=1000).json()["meters"]}
    assert set(DEFAULT_MUIDS) <= theirs and not theirs & set(ACME_MUIDS)  # other tests may add default meters

    # Another tenant's meter is answered exactly like a meter that does not exist.
    nowhere = "00000000-0000-4000-8000-0000000000ff"
    for key, foreign in ((acme, IMPORT_MUID), (default, ACME_IMPORT)):
        for suffix, params in (
            ("", {}),
            ("/readings", {}),
            ("/series", {"interval": "day"}),
            ("/profile", {}),
            ("/summary", {}),
            ("/explain", {}),
            ("/autocorrelation", {}),
            ("/plots/heatmap.png", {}),
        ):
            theirs = assert_problem(stack.get(f"/api/v1/meters/{foreign}{suffix}", key, **params), 404)
            missing = assert_problem(stack.get(f"/api/v1/meters/{nowhere}{suffix}", key, **params), 404)
            assert theirs["detail"].replace(foreign, nowhere) == missing["detail"], suffix
            assert theirs["invalid_params"][0]["name"] == "muid"
    balance = {"import_muid": IMPORT_MUID, "export_muid": ACME_EXPORT, "interval": "day"}
    assert_problem(stack.get("/api/v1/balance", acme, **balance), 404)

    # Acme's own numbers: its week of import, by local day, and its fleet total.
    week = stack.get(f"/api/v1/meters/{ACME_IMPORT}/series", acme, interval="day", tz="UTC").json()
    expected_day = sum(v for ts, v in acme_points(ACME_IMPORT) if ts.date() == ACME_START.date())
    assert [b["count"] for b in week["buckets"]] == [96] * 7
    assert math.isclose(week["buckets"][0]["value"], expected_day, abs_tol=1e-9)
    window = {"start": "2023-02-01T00:00:00Z", "end": "2023-03-01T00:00:00Z", "interval": "month", "tz": "UTC"}
    fleet = stack.get("/api/v1/fleet/series", acme, obis=IMPORT_OBIS, **window).json()
    assert [b["count"] for b in fleet["buckets"]] == [7 * 96]  # acme's one import meter, not the published one
    assert math.isclose(fleet["buckets"][0]["value"], sum(v for _, v in acme_points(ACME_IMPORT)), abs_tol=1e-6)
    default_fleet = stack.get("/api/v1/fleet/series", default, obis=IMPORT_OBIS, **window).json()
    with stack.engine.connect() as connection:  # the default tenant's raw readings (other tests may add some)
        count, total = connection.execute(
            text(
                "SELECT count(*), sum(value) FROM readings r JOIN meters m USING (muid) WHERE m.tenant = 'default' "
                "AND r.obis = :obis AND r.ts >= '2023-02-01T00:00Z' AND r.ts < '2023-03-01T00:00Z'"
            ),
            {"obis": IMPORT_OBIS},
        ).one()
    assert count >= 2688 and [b["count"] for b in default_fleet["buckets"]] == [count]
    assert math.isclose(default_fleet["buckets"][0]["value"], total, rel_tol=1e-9)

    # Ingest runs: acme sees its own, never the default tenant's.
    with stack.client(stack.keys["default-admin"]) as client:
        default_run = client.post("/api/v1/ingest/runs", json={"muids": [EXPORT_MUID]}).json()["id"]
    with stack.client(stack.keys["acme-ingest"]) as client:
        refused = client.post("/api/v1/ingest/runs", json={"muids": [EXPORT_MUID]})
        stack.note(refused)
        assert assert_problem(refused, 404)["invalid_params"][0]["name"] == "muids[0]"
        runs = client.get("/api/v1/ingest/runs", params={"limit": 500}).json()["runs"]
        assert default_run not in [r["id"] for r in runs]
        assert_problem(client.get(f"/api/v1/ingest/runs/{default_run}"), 404)
    with stack.engine.connect() as connection:
        owner = connection.execute(text("SELECT tenant FROM meters WHERE muid = :m"), {"m": EXPORT_MUID}).scalar()
    assert owner == "default"


def test_the_services_enforce_the_tenant_themselves(stack: Stack) -> None:
    """An internal client talking gRPC directly gets the same isolation, and none without a tenant."""
    topology = stack.topology
    with (
        sync_channel(topology.address("query")) as bare,
        sync_channel(topology.address("query"), tenant="acme") as acme,
    ):
        for call in (
            lambda: query_pb2_grpc.QueryServiceStub(bare).ListMeters(query_pb2.ListMetersRequest(), timeout=10),
            lambda: query_pb2_grpc.QueryServiceStub(bare).ListMeters(
                query_pb2.ListMetersRequest(), timeout=10, metadata=(("x-meterdata-tenant", "' OR 1=1 --"),)
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "x-meterdata-tenant" in refused.value.details()
        stub = query_pb2_grpc.QueryServiceStub(acme)
        assert sorted(m.muid for m in stub.ListMeters(query_pb2.ListMetersRequest(), timeout=10).meters) == sorted(
            ACME_MUIDS
        )
        for call in (
            lambda: stub.GetMeter(query_pb2.GetMeterRequest(muid=IMPORT_MUID), timeout=10),
            lambda: stub.ListReadings(query_pb2.ListReadingsRequest(muid=IMPORT_MUID, obis=IMPORT_OBIS), timeout=10),
            lambda: stub.GetSeries(query_pb2.GetSeriesRequest(muid=IMPORT_MUID, obis=IMPORT_OBIS), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as hidden:
                call()
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND

    profile = analytics_pb2.GetProfileRequest(
        channel=common_pb2.ChannelRange(muid=IMPORT_MUID), kind=analytics_pb2.PROFILE_KIND_HOUR_OF_DAY
    )
    with (
        sync_channel(topology.address("analytics")) as bare,
        sync_channel(topology.address("analytics"), tenant="acme") as acme,
    ):
        with pytest.raises(grpc.RpcError) as refused:
            analytics_pb2_grpc.AnalyticsServiceStub(bare).GetProfile(profile, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = analytics_pb2_grpc.AnalyticsServiceStub(acme)
        with pytest.raises(grpc.RpcError) as hidden:  # the tenant is forwarded to the query service
            stub.GetProfile(profile, timeout=30)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        profile.channel.muid = ACME_IMPORT
        assert sum(g.count for g in stub.GetProfile(profile, timeout=30).groups) == 7 * 96

    before = counts(stack.engine)
    newcomer = "acde0000-0000-4000-8000-00000000000c"
    columns = [
        ingest_pb2.ReadingColumns(
            muid=muid,
            obis=IMPORT_OBIS,
            quality="measured",
            measurement="energy",
            ts_seconds=[int(datetime(2023, 2, 14, tzinfo=UTC).timestamp())],
            values=[9.0],
        )
        for muid in (IMPORT_MUID, newcomer)
    ]
    with sync_channel(topology.address("ingest"), tenant="acme") as acme:
        stub = ingest_pb2_grpc.IngestServiceStub(acme)
        run = stub.WriteReadings(
            iter([ingest_pb2.WriteReadingsRequest(columns=columns, register_unknown_meters=True)]), timeout=30
        )
        assert (run.received, run.inserted, run.rejected) == (2, 1, 1)
        rejected = stub.ListRejectedReadings(ingest_pb2.ListRejectedReadingsRequest(ingest_run_id=run.id), timeout=10)
        assert [r.field for r in rejected.rejected] == ["muid"] and IMPORT_MUID in rejected.rejected[0].raw
        with pytest.raises(grpc.RpcError) as hidden:
            stub.PullMeters(ingest_pb2.PullMetersRequest(muids=[IMPORT_MUID], wait=True), timeout=30)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        assert run.id in [r.id for r in stub.ListIngestRuns(ingest_pb2.ListIngestRunsRequest(), timeout=10).runs]
    with sync_channel(topology.address("ingest")) as bare:
        with pytest.raises(grpc.RpcError) as refused:
            ingest_pb2_grpc.IngestServiceStub(bare).ListIngestRuns(ingest_pb2.ListIngestRunsRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with sync_channel(topology.address("ingest"), tenant="default") as default:
        with pytest.raises(grpc.RpcError) as hidden:
            ingest_pb2_grpc.IngestServiceStub(default).GetIngestRun(
                ingest_pb2.GetIngestRunRequest(id=run.id), timeout=10
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    after = counts(stack.engine)
    assert after["readings"] == before["readings"] + 1  # only the newcomer's reading
    with stack.engine.connect() as connection:
        owners = dict(connection.execute(text("SELECT muid::text, tenant FROM meters")).all())
        published = connection.execute(
            text("SELECT count(*), sum(value) FROM readings WHERE muid = :m AND ts = '2023-02-14T00:00Z'"),
            {"m": IMPORT_MUID},
        ).one()
    assert owners[newcomer] == "acme" and owners[IMPORT_MUID] == "default"
    assert published[0] == 1 and published[1] != 9.0


# ---------------------------------------------------------------- hostile input and limits


def test_injection_strings_in_every_parameter_change_nothing_and_leak_nothing(stack: Stack) -> None:
    before = counts(stack.engine)
    with stack.engine.connect() as connection:
        tables_before = set(
            connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        )
    sent = 0
    for index, payload in enumerate(INJECTIONS):
        tenant = "acme" if index % 2 == 0 else "default"
        key = stack.keys[f"{tenant}-admin"]
        with stack.client(key) as client:
            for method, path, operation in operations(stack):
                path_params, query = valid_parameters(operation, tenant)
                targets = [(p["in"], p["name"]) for p in operation.get("parameters", [])]
                if "requestBody" in operation:
                    targets += [("body", "muids"), ("body", "full")]
                for where, name in targets:
                    params, body = dict(query), {"muids": [payload]}  # a POST never starts a pull
                    url = build(path, {**path_params, name: payload} if where == "path" else path_params)
                    if where == "query":
                        params[name] = payload
                    elif where == "body" and name == "full":
                        body = {"full": payload}
                    if method == "post":
                        response = client.post(url, params=params, json=body)
                    else:
                        response = client.get(url, params=params)
                    sent += 1
                    stack.note(response)
                    where_what = (method, path, where, name, payload[:30])
                    assert response.status_code < 500, (*where_what, response.status_code, response.text[:300])
                    for muid in FOREIGN[tenant]:
                        assert muid not in response.text, where_what
            # and in the key itself
            header = payload[:200].replace("\x00", "").encode()  # a header cannot carry NUL
            with httpx.Client(base_url=stack.topology.gateway_url, headers={"X-API-Key": header}) as bare:
                assert bare.get("/api/v1/meters").status_code == 401
    assert sent >= len(INJECTIONS) * 90
    assert counts(stack.engine) == before
    with stack.engine.connect() as connection:
        tables_after = set(
            connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        )
    assert tables_after == tables_before


def test_limits_page_size_range_body_and_message_size(stack: Stack) -> None:
    key = stack.keys["default-admin"]
    readings = f"/api/v1/meters/{IMPORT_MUID}/readings"
    body = assert_problem(stack.get(readings, key, limit=10_001), 400)
    assert body["invalid_params"][0]["name"] == "limit"
    series = f"/api/v1/meters/{IMPORT_MUID}/series"
    body = assert_problem(stack.get(series, key, interval="15min", start="2020-01-01", end="2023-01-01"), 400)
    assert body["invalid_params"][0]["name"] == "end"

    with stack.client(key) as client:
        large = {"muids": [IMPORT_MUID] * 3000}  # about 120 KB, MAX_REQUEST_BODY_BYTES is 64 KiB
        response = client.post("/api/v1/ingest/runs", json=large)
        stack.note(response)
        assert "MAX_REQUEST_BODY_BYTES" in assert_problem(response, 413)["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"muids": ['
            for _ in range(3000):
                yield b'"' + IMPORT_MUID.encode() + b'",'
            yield b'"' + IMPORT_MUID.encode() + b'"]}'

        response = client.post("/api/v1/ingest/runs", content=chunks(), headers={"content-type": "application/json"})
        stack.note(response)
        assert_problem(response, 413)
    runs_before = counts(stack.engine)["ingest_runs"]

    # A gRPC message above GRPC_MAX_MESSAGE_BYTES is refused before it is parsed; nothing is written.
    values = GRPC_MAX_MESSAGE_BYTES // 8 + 1000
    start = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    columns = ingest_pb2.ReadingColumns(
        muid=ACME_IMPORT, obis=IMPORT_OBIS, quality="measured", measurement="energy",
        ts_seconds=range(start, start + 900 * values, 900), values=[0.5] * values,
    )  # fmt: skip
    with sync_channel(stack.topology.address("ingest"), tenant="acme") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            ingest_pb2_grpc.IngestServiceStub(channel).WriteReadings(
                iter([ingest_pb2.WriteReadingsRequest(columns=[columns])]), timeout=30
            )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with stack.engine.connect() as connection:
        assert not connection.execute(
            text("SELECT count(*) FROM readings WHERE muid = :m AND ts >= '2030-01-01'"), {"m": ACME_IMPORT}
        ).scalar()
    assert counts(stack.engine)["ingest_runs"] <= runs_before + 1  # at most the run that was refused


def gateway_beside(stack: Stack, tmp_path: Path, **settings: str) -> Topology:
    """A second gateway, started, on the stack's services with other settings; the caller stops it."""
    topology = stack.topology
    services = {f"{name.upper()}_ADDRESS": topology.address(name) for name in ("query", "ingest", "analytics")}
    gateway = Topology.on_free_ports(topology.database_url, tmp_path, {**services, **settings})
    gateway.start(["gateway"])
    return gateway


def test_rate_limit_per_key_answers_429_with_retry_after(stack: Stack, tmp_path: Path) -> None:
    """A second gateway on the same services, with a tight token bucket (2 per second, bursts of 3) and
    METRICS_REQUIRE_KEY on."""
    limited = gateway_beside(
        stack, tmp_path, RATE_LIMIT_PER_SECOND="2", RATE_LIMIT_BURST="3", METRICS_REQUIRE_KEY="true"
    )
    try:
        first, second = stack.keys["acme-read"], stack.keys["default-read"]
        with httpx.Client(base_url=limited.gateway_url, timeout=30) as client:
            statuses = [client.get("/api/v1/meters", headers={"X-API-Key": first}).status_code for _ in range(3)]
            refused = client.get("/api/v1/meters", headers={"X-API-Key": first})
            stack.note(refused)
            other = client.get("/api/v1/meters", headers={"X-API-Key": second})
            assert statuses == [200, 200, 200]
            body = assert_problem(refused, 429)
            assert "rate limit" in body["detail"]
            wait = int(refused.headers["retry-after"])
            assert 1 <= wait <= 2
            assert other.status_code == 200  # the bucket is the key's, not the gateway's
            time.sleep(wait)
            assert client.get("/api/v1/meters", headers={"X-API-Key": first}).status_code == 200
            # METRICS_REQUIRE_KEY: /metrics wants an admin key there.
            assert_problem(client.get("/metrics"), 401)
            assert_problem(client.get("/metrics", headers={"X-API-Key": stack.keys["default-ingest"]}), 403)
            metrics = client.get("/metrics", headers={"X-API-Key": stack.keys["default-admin"]})
            assert metrics.status_code == 200 and "meterdata_gateway_requests_total" in metrics.text
            document = client.get("/openapi.json").json()
            assert document["paths"]["/metrics"]["get"]["security"]
    finally:
        limited.stop()


def test_refused_keys_are_limited_per_address_and_known_keys_still_pass(stack: Stack, tmp_path: Path) -> None:
    """A second gateway allowing 3 refused lookups per minute: unknown keys are looked up (401) until the
    address has spent them, then 429 with Retry-After (no lookup); a refused key seen before is still a
    cached 401, a key verified before still passes, and a key this gateway has not verified waits too."""
    guarded = gateway_beside(stack, tmp_path, AUTH_FAILURES_PER_MINUTE="3")
    try:
        unknown = [f"mdk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}" for _ in range(5)]
        with httpx.Client(base_url=guarded.gateway_url, timeout=30) as client:

            def get(key: str) -> httpx.Response:
                response = client.get("/api/v1/meters", headers={"X-API-Key": key})
                stack.note(response)
                return response

            assert get(stack.keys["default-read"]).status_code == 200  # verified, now cached
            assert [get(key).status_code for key in unknown[:3]] == [401, 401, 401]
            refused = get(unknown[3])
            body = assert_problem(refused, 429)
            assert "too many refused API keys" in body["detail"]
            assert 1 <= int(refused.headers["retry-after"]) <= 20  # one lookup back every 20 s
            assert get(unknown[0]).status_code == 401  # refused before: answered from the cache
            assert get(stack.keys["default-read"]).status_code == 200  # verified before: passes
            assert get(stack.keys["default-admin"]).status_code == 429  # not verified yet: waits as well
    finally:
        guarded.stop()


# ---------------------------------------------------------------- secrets


def test_no_secret_in_any_log_or_error_body(stack: Stack) -> None:
    """Runs last: errors of every kind (401, 403, 404, 400, 413, a stopped backend's 503) with real keys,
    then every service log (at DEBUG) and every error body of the module are searched for the secrets."""
    topology = stack.topology
    read, admin = stack.keys["default-read"], stack.keys["default-admin"]
    wrong = read[:-6] + "ABCDEF"
    stack.get("/api/v1/meters", wrong)
    stack.get(f"/api/v1/meters/{IMPORT_MUID}/series", read, tz="Nowhere/Land")
    stack.get(f"/api/v1/meters/{ACME_IMPORT}", read)
    with stack.client(read) as client:
        stack.note(client.post("/api/v1/ingest/runs", json={}))
    topology.stop(["analytics"])
    unavailable = stack.get(f"/api/v1/meters/{IMPORT_MUID}/summary", admin)
    assert unavailable.status_code == 503
    assert len(stack.bodies) >= 5  # and, in a full run of this module, the hundreds of earlier ones

    secrets_ = {name: key.split("_", 2)[2] for name, key in stack.keys.items()}
    secrets_["wrong key"] = wrong.split("_", 2)[2]
    if stack.password:
        secrets_["database password"] = stack.password
    logs = {path.name: path.read_text(errors="replace") for path in topology.log_dir.glob("*.log")}
    assert {"query.log", "ingest.log", "analytics.log", "gateway.log"} <= set(logs)
    assert "rpc ok" in logs["query.log"] and "DEBUG" in logs["query.log"]  # DEBUG really was on
    for service in ("query", "ingest", "analytics"):  # GRPC_LISTEN_HOST's default: loopback only
        assert re.search(r"serving service=\S+ address=127\.0\.0\.1:\d+ tls=False", logs[f"{service}.log"]), service
    for name, secret in secrets_.items():
        for log_name, content in logs.items():
            assert secret not in content, f"{name} appears in {log_name}"
        for body in stack.bodies:
            assert secret not in body, f"{name} appears in an error body: {body[:200]}"
