"""TLS, configured by settings only: the query service serves gRPC over TLS (GRPC_TLS_CERT_FILE/KEY_FILE),
the gateway calls it over TLS (GRPC_TLS_CA_FILE) and serves HTTPS itself (GATEWAY_TLS_CERT_FILE/KEY_FILE).
The same query service runs with GRPC_DEFAULT_TENANT, the opt-in for internal calls without a tenant.

The certificates are made here: a throw-away CA and a server certificate for localhost/127.0.0.1 signed
by it (the `cryptography` package, pinned in requirements-dev.txt).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine

from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.settings import Settings
from meterdata.v1 import query_pb2, query_pb2_grpc
from tests.seed import EXPORT_MUID, IMPORT_MUID, seed_published


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path, label: str) -> Pki:
    """A CA and a server certificate (localhost, 127.0.0.1) signed by it, as PEM files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"meterdata test CA {label}"))
        .issuer_name(_name(f"meterdata test CA {label}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / f"{label}-ca.pem", directory / f"{label}-server.pem", directory / f"{label}-server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


@pytest.fixture(scope="module")
def tls(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Topology, Pki]]:
    seed_published(engine)
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory, "good")
    env = {
        "GRPC_TLS_CERT_FILE": str(pki.cert),
        "GRPC_TLS_KEY_FILE": str(pki.key),
        "GRPC_TLS_CA_FILE": str(pki.ca),
        "GATEWAY_TLS_CERT_FILE": str(pki.cert),
        "GATEWAY_TLS_KEY_FILE": str(pki.key),
        "GRPC_DEFAULT_TENANT": "default",  # and this installation lets internal calls omit the tenant
        "LOG_LEVEL": "WARNING",
    }
    topology = Topology.on_free_ports(database_url, directory / "logs", env)
    topology.start(["query", "gateway"])  # the runner's health checks already speak TLS to both
    try:
        yield topology, pki
    finally:
        topology.stop()


def test_grpc_over_tls_with_the_ca_and_only_with_it(tls: tuple[Topology, Pki], tmp_path: Path) -> None:
    topology, _ = tls
    address = topology.address("query")
    request = query_pb2.ListMetersRequest(page_size=1000)
    with sync_channel(address, topology.client_settings(), tenant="default") as channel:
        meters = query_pb2_grpc.QueryServiceStub(channel).ListMeters(request, timeout=10).meters
    published = {m.muid: m.reading_count for m in meters if m.muid in (IMPORT_MUID, EXPORT_MUID)}
    assert published == {IMPORT_MUID: 2688, EXPORT_MUID: 2688}
    with sync_channel(address, topology.client_settings()) as channel:  # no tenant: GRPC_DEFAULT_TENANT applies
        assert query_pb2_grpc.QueryServiceStub(channel).ListMeters(request, timeout=10).meters == meters

    other = make_pki(tmp_path, "other")
    for settings in (Settings(_env_file=None), Settings(_env_file=None, grpc_tls_ca_file=str(other.ca))):  # type: ignore[call-arg]
        with sync_channel(address, settings, tenant="default") as channel:  # plaintext, or a CA it does not trust
            with pytest.raises(grpc.RpcError) as refused:
                query_pb2_grpc.QueryServiceStub(channel).ListMeters(query_pb2.ListMetersRequest(), timeout=3)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_gateway_serves_https_and_calls_the_query_service_over_tls(tls: tuple[Topology, Pki]) -> None:
    topology, pki = tls
    assert topology.gateway_url.startswith("https://")
    with httpx.Client(
        base_url=topology.gateway_url, verify=ssl.create_default_context(cafile=pki.ca), headers=topology.auth_headers
    ) as client:
        body = client.get(f"/api/v1/meters/{IMPORT_MUID}/series", params={"interval": "month", "tz": "UTC"}).json()
        assert [b["count"] for b in body["buckets"]] == [2688]
        assert client.get("/readyz").json()["backends"]["query"] == "serving"
    with pytest.raises(httpx.HTTPError):  # not trusted without the CA
        httpx.get(f"{topology.gateway_url}/healthz", timeout=5)
    with pytest.raises(httpx.HTTPError):  # and no plaintext HTTP on that port
        httpx.get(topology.gateway_url.replace("https://", "http://") + "/healthz", timeout=5)
