"""Client channels for service-to-service and gateway calls.

Every channel retries `UNAVAILABLE` (and only that) with backoff through gRPC's own retry policy;
callers always pass a deadline (`timeout=`).
"""

from __future__ import annotations

import json

import grpc
from google.rpc import error_details_pb2, status_pb2

from meterdata.grpc_server import STATUS_DETAILS_KEY

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

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def aio_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def sync_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


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
