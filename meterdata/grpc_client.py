"""Client channels for service-to-service and gateway calls.

Every channel retries `UNAVAILABLE` (and only that) with backoff through gRPC's own retry policy;
callers always pass a deadline (`timeout=`). Channels speak TLS when GRPC_TLS_CA_FILE is set, and
every call names its tenant (`meterdata.tenancy`): blocking channels through `sync_channel(..., tenant=)`,
async callers per call (`metadata=tenant_metadata(tenant)`).
"""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from meterdata.grpc_server import STATUS_DETAILS_KEY
from meterdata.settings import Settings, get_settings
from meterdata.tenancy import tenant_metadata

_SERVICE_CONFIG = json.dumps(
    {
        # Spread calls over every address a (headless) service name resolves to: one per replica.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    limit = settings.grpc_max_message_bytes
    return [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ]


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS towards the services when GRPC_TLS_CA_FILE names the CA (PEM) that signed their certificates."""
    if not settings.grpc_tls_ca_file:
        return None
    return grpc.ssl_channel_credentials(root_certificates=Path(settings.grpc_tls_ca_file).read_bytes())


def aio_channel(address: str, settings: Settings | None = None) -> grpc.aio.Channel:
    """A channel for the async clients (gateway, analytics), which set the tenant metadata per call."""
    settings = settings or get_settings()
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=channel_options(settings))
    return grpc.aio.secure_channel(address, credentials, options=channel_options(settings))


def sync_channel(address: str, settings: Settings | None = None, tenant: str | None = None) -> grpc.Channel:
    """A blocking channel; with `tenant`, every call on it carries that tenant's metadata."""
    settings = settings or get_settings()
    credentials = channel_credentials(settings)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=channel_options(settings))
    else:
        channel = grpc.secure_channel(address, credentials, options=channel_options(settings))
    return grpc.intercept_channel(channel, TenantInterceptor(tenant)) if tenant else channel


class _CallDetails(
    namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class TenantInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the tenant metadata to every call of a blocking channel (internal clients: CLI, report, tests)."""

    def __init__(self, tenant: str) -> None:
        self.metadata = tenant_metadata(tenant)

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(details.metadata or ()), *self.metadata]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs from a rich INVALID_ARGUMENT status, empty when there are none."""
    metadata = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    for key, value in metadata:
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            violations: list[tuple[str, str]] = []
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    violations += [(v.field, v.description) for v in bad_request.field_violations]
            return violations
    return []
