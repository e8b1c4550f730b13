"""The one gRPC server bootstrap of the three services.

Every service gets the same: `grpc.aio` server, `grpc.health.v1`, server reflection (grpcurl works),
an interceptor that logs each call and turns domain errors into statuses naming the field (and any
unexpected exception into INTERNAL without leaking its text), and graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meterdata.errors import DomainError
from meterdata.logs import fields
from meterdata.settings import Settings, get_settings

log = logging.getLogger("meterdata.grpc")

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def status_metadata(error: DomainError) -> tuple[tuple[str, bytes], ...]:
    """Rich status (google.rpc.Status with BadRequest) carried in the trailing metadata."""
    status = status_pb2.Status(code=error.code.value[0], message=str(error))
    if error.field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
                ]
            )
        )
        status.details.append(detail)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    if isinstance(exc, DomainError):
        log.info("rpc refused", extra=fields(method=method, code=exc.code.name, error=str(exc)))
        await context.abort(exc.code, str(exc), status_metadata(exc))
    if isinstance(exc, DATABASE_UNREACHABLE):
        # An outage, not a bug: UNAVAILABLE tells clients (and the gateway: 503) to retry later.
        log.warning("rpc failed: database unreachable", extra=fields(method=method, error=type(exc).__name__))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unreachable; retry later")
    log.exception("rpc failed", extra=fields(method=method))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the service log")


DATABASE_UNREACHABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error leaves as a status
            await _abort(context, method, exc)
        log.debug("rpc ok", extra=fields(method=method, ms=round((time.perf_counter() - started) * 1000, 2)))
        return response

    return wrapper


def _wrap_stream(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in behavior(request, context):
                yield item
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, method, exc)

    return wrapper


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(method, handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_wrap_unary(method, handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_wrap_stream(method, handler.unary_stream), **kwargs)
        return grpc.stream_stream_rpc_method_handler(_wrap_stream(method, handler.stream_stream), **kwargs)


Registrar = Callable[[grpc.aio.Server], None]


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from GRPC_TLS_CERT_FILE/GRPC_TLS_KEY_FILE (PEM), or None for plaintext."""
    if not settings.grpc_tls_cert_file:
        return None
    key = Path(settings.grpc_tls_key_file).read_bytes()
    chain = Path(settings.grpc_tls_cert_file).read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


async def serve(
    *,
    service_name: str,
    register: Registrar,
    host: str,
    port: int,
    grace_seconds: float = 5.0,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    settings: Settings | None = None,
    also_serves: Sequence[str] = (),
    readiness: Callable[[], bool] | None = None,
    readiness_interval: float = 1.0,
) -> None:
    """Run one service until SIGTERM/SIGINT, then drain in-flight calls for `grace_seconds`.

    `settings` gives the largest message (GRPC_MAX_MESSAGE_BYTES: a bigger one is refused with
    RESOURCE_EXHAUSTED before it is parsed) and TLS; `also_serves` names further services that
    `register` adds, for health and reflection. `readiness` (blocking, e.g. "is the database
    reachable") is polled every `readiness_interval` seconds: the named services' health follows it
    (readiness probes, the gateway's /readyz), while the server's own "" stays SERVING (liveness), so an
    outage takes replicas out of rotation without restarting them.
    """
    settings = settings or get_settings()
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            service_name,
            *also_serves,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = server_credentials(settings)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"could not bind {host}:{port}")
    await server.start()
    for name in ("", service_name, *also_serves):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra=fields(service=service_name, address=f"{host}:{bound}", tls=credentials is not None))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if readiness is not None:
        watcher = asyncio.create_task(
            _follow_readiness(
                health_servicer, (service_name, *also_serves), readiness, readiness_interval, service_name
            )
        )
    await stop.wait()
    if watcher is not None:
        watcher.cancel()

    log.info("shutting down", extra=fields(service=service_name, grace_seconds=grace_seconds))
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_seconds)
    if on_shutdown is not None:
        await on_shutdown()
    log.info("stopped", extra=fields(service=service_name))


async def _follow_readiness(
    health_servicer: Any, names: Sequence[str], readiness: Callable[[], bool], interval: float, service_name: str
) -> None:
    serving = True
    while True:
        await asyncio.sleep(interval)
        try:
            ready = await asyncio.to_thread(readiness)
        except Exception:  # noqa: BLE001 - a failing probe means not ready
            ready = False
        if ready != serving:
            serving = ready
            status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
            log.warning("readiness changed", extra=fields(service=service_name, ready=ready))
            for name in names:
                await health_servicer.set(name, status)
