"""The gateway's long-lived gRPC channels to the backends, and the one way routes call them.

Every call carries the configured deadline and the tenant of the caller's API key (as the
`x-meterdata-tenant` metadata the services enforce), is timed into the metrics, and turns a gRPC error
into `BackendError`, which the app answers as problem+json (never a hang, never a 500). Routes get a
`TenantBackends`, so the tenant cannot be left out of a call.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.metrics import Metrics
from meterdata.grpc_client import aio_channel
from meterdata.runner import GRPC_SERVICE_NAMES
from meterdata.settings import Settings
from meterdata.tenancy import tenant_metadata
from meterdata.v1 import analytics_pb2_grpc, auth_pb2, auth_pb2_grpc, ingest_pb2_grpc, query_pb2_grpc

READINESS_TIMEOUT_SECONDS = 2.0


class BackendError(Exception):
    def __init__(self, backend: str, error: grpc.aio.AioRpcError, not_found_parameter: str | None) -> None:
        super().__init__(f"{backend}: {error.code().name}: {error.details()}")
        self.backend = backend
        self.error = error
        self.not_found_parameter = not_found_parameter


class Backends:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.deadline = settings.grpc_deadline_seconds
        self.addresses = {
            "query": settings.query_address,
            "ingest": settings.ingest_address,
            "analytics": settings.analytics_address,
        }
        self.channels = {name: aio_channel(address, settings) for name, address in self.addresses.items()}
        self.stubs: dict[str, Any] = {
            "query": query_pb2_grpc.QueryServiceStub(self.channels["query"]),
            "ingest": ingest_pb2_grpc.IngestServiceStub(self.channels["ingest"]),
            "analytics": analytics_pb2_grpc.AnalyticsServiceStub(self.channels["analytics"]),
        }
        # The query service also verifies API keys (the gateway holds no database connection).
        self.keys = auth_pb2_grpc.ApiKeyServiceStub(self.channels["query"])

    async def call(
        self, backend: str, method: str, request: Any, not_found_parameter: str | None = None, *, tenant: str
    ) -> Any:
        """`method` of `backend` for `tenant`, with the deadline; `not_found_parameter` names the parameter
        a bare NOT_FOUND blames."""
        stub = getattr(self.stubs[backend], method)
        return await self._timed(
            backend, method, not_found_parameter, stub(request, timeout=self.deadline, metadata=tenant_metadata(tenant))
        )

    async def verify_key(self, key: str) -> auth_pb2.ApiKeyPrincipal | None:
        """The key's tenant and scope, or None when the query service says it is not valid."""
        request = auth_pb2.VerifyApiKeyRequest(key=key)
        try:
            return await self._timed(
                "query", "VerifyApiKey", None, self.keys.VerifyApiKey(request, timeout=self.deadline)
            )
        except BackendError as error:
            if error.error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise

    async def _timed(self, backend: str, method: str, not_found_parameter: str | None, call: Any) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            raise BackendError(backend, error, not_found_parameter) from None
        finally:
            self.metrics.backend_seconds.labels(backend, method, code).observe(time.perf_counter() - started)

    async def health(self, backend: str) -> str:
        """`serving`, or why the backend is not ready."""
        stub = health_pb2_grpc.HealthStub(self.channels[backend])
        request = health_pb2.HealthCheckRequest(service=GRPC_SERVICE_NAMES[backend])
        try:
            response = await stub.Check(request, timeout=min(self.deadline, READINESS_TIMEOUT_SECONDS))
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} at {self.addresses[backend]}"
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return "serving"

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


class TenantBackends:
    """The backends as one tenant sees them: what routes call (`gateway.backends.call(...)`)."""

    def __init__(self, backends: Backends, tenant: str) -> None:
        self.backends = backends
        self.tenant = tenant

    async def call(self, backend: str, method: str, request: Any, not_found_parameter: str | None = None) -> Any:
        return await self.backends.call(backend, method, request, not_found_parameter, tenant=self.tenant)
