"""Prometheus metrics of the gateway: requests and latency by route template and status, backend calls.

Each app owns its registry, so tests can build several apps in one process. Routes are labelled by
their template (`/api/v1/meters/{muid}/series`), never the raw path, to keep the label set bounded.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # process-wide: the `_created` gauges only add noise to the exposition
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meterdata_gateway_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "meterdata_gateway_request_duration_seconds",
            "HTTP request latency until the last body byte, by method, route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backend_seconds = Histogram(
            "meterdata_gateway_backend_call_duration_seconds",
            "gRPC calls to the backends, by backend, method and gRPC status",
            ["backend", "method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def route_template(scope: Scope) -> str:
    """The template of the route that answered (the router records it in the scope), else `unmatched`."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


class MetricsMiddleware:
    """Counts and times every HTTP request, streamed bodies until their last chunk."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "done": False}

        def observe() -> None:
            if state["done"]:
                return
            state["done"] = True
            labels = (scope["method"], route_template(scope), str(state["status"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.request_seconds.labels(*labels).observe(time.perf_counter() - started)

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self.app(scope, receive, send_observed)
        finally:
            observe()
