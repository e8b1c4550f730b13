"""Liveness, readiness and metrics: what an orchestrator and Prometheus ask."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import AppDep
from gateway.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness",
    description="200 while the gateway process serves HTTP; it does not ask the backends (see `/readyz`).",
    response_model=Health,
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    description="Asks each backend's gRPC health service. 200 when all are serving; 503 naming each one that is not.",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "At least one backend is not serving.",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not ready",
                        "backends": {
                            "query": "UNAVAILABLE at 127.0.0.1:50052",
                            "ingest": "serving",
                            "analytics": "serving",
                        },
                    }
                }
            },
        }
    },
)
async def readyz(gateway: AppDep) -> JSONResponse:
    names = list(gateway.backends.addresses)
    states = dict(zip(names, await asyncio.gather(*(gateway.backends.health(n) for n in names)), strict=True))
    ready = all(state == "serving" for state in states.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "backends": states}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Request counts and latency by route template and status, and backend call latency by method "
    "and gRPC status, in the Prometheus text format. Open unless the server sets METRICS_REQUIRE_KEY, which "
    "asks for an API key of scope `admin`.",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": 'meterdata_gateway_requests_total{method="GET",route="/api/v1/meters",status="200"} 3.0\n',
                }
            }
        }
    },
)
async def metrics(gateway: AppDep) -> Response:
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
