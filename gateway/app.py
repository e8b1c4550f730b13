"""The FastAPI application: routes, CORS, metrics, problem+json errors and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from gateway.auth import ApiKeyMiddleware, BodyLimitMiddleware, KeyVerifier, RateLimiter
from gateway.backends import BackendError, Backends
from gateway.deps import Gateway
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.problems import PROBLEM_JSON, ProblemError, problem_response, rpc_problem
from gateway.routes import analytics, ingest, meters, ops
from gateway.routes.docs import DESCRIPTIONS, PROBLEM_EXAMPLES
from meterdata.logs import fields
from meterdata.settings import Settings

log = logging.getLogger("gateway")

API_VERSION = "1.0.0"
DESCRIPTION = """
Smart-meter energy data for frontends: meters and their channels, raw quarter-hour readings, and
aggregated series in local time, as JSON or CSV. The guide with curl recipes for common charts is
`docs/API.md` in the repository; this page is the reference.

**Rules that hold everywhere**
- Energy is in **kWh**; every answer names its `unit` and the `time_zone` its times are rendered in.
- Ranges are `[start, end)`: `start` inclusive, `end` exclusive, ISO 8601. A date or a time without
  offset is read in `tz` (an IANA name, default `Europe/Zurich`).
- A reading's `ts` is the **start** of its 15-minute period.
- Series buckets are cut in local time: a day in `Europe/Zurich` is 23 or 25 hours on DST days, and
  each bucket reports `count` (readings found) and `expected` (quarter-hours it spans).
- Lists page with `limit` and `page_token` (from `next_page_token`); `format=csv` streams the list as CSV.
- Errors are `application/problem+json`; `invalid_params` names the parameter at fault.

**Authentication**: every `/api/v1` route needs an API key, sent as `Authorization: Bearer <key>` or
`X-API-Key: <key>` (press *Authorize* above). An operator creates keys with
`python -m gateway keys create --tenant <tenant> --scope read|ingest|admin`; `make run` prints a
development key. A key sees only its tenant's meters (another tenant's meter is 404). Scope `read`
allows every GET, `ingest` the `/api/v1/ingest` routes, `admin` everything. Each key has a rate limit
(429 with `Retry-After`).
"""

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`mdk_<id>_<secret>`) as a bearer token: `Authorization: Bearer <key>`.",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key in the `X-API-Key` header.",
    },
}
SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]
AUTH_HEADERS = {
    401: {"WWW-Authenticate": {"description": '`Bearer realm="meterdata"`', "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until the key may send again.", "schema": {"type": "integer"}}},
}

TAGS = [
    {"name": "meters", "description": "Meters, raw readings and aggregated series (QueryService)."},
    {"name": "ingest", "description": "Pulls from the upstream meter API (IngestService)."},
    {"name": "operations", "description": "Liveness, readiness, metrics."},
]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    params = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = location[1] if len(location) > 1 else (location[0] if location else "request")
        params.append({"name": name, "reason": error.get("msg", "invalid")})
    detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params)
    return problem_response(400, detail, request.url.path, params)


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Starlette names only the methods of the first route on the path; a path served by several routes
    (GET and POST /api/v1/ingest/runs) must list them all (RFC 9110, 15.5.6). The dashboard's static
    mount is left out: it matches every path."""
    routes = [route for route in app.router.routes if not isinstance(route, Mount)]
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(request, exc)

    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, exc: ProblemError) -> JSONResponse:
        params = [{"name": exc.parameter, "reason": getattr(exc, "reason", exc.detail)}] if exc.parameter else None
        return problem_response(exc.status, exc.detail, request.url.path, params)

    @app.exception_handler(BackendError)
    async def on_backend(request: Request, exc: BackendError) -> JSONResponse:
        response = rpc_problem(exc.error, exc.backend, request.url.path, exc.not_found_parameter)
        if response.status_code >= 500:
            log.warning("backend call failed", extra=fields(path=request.url.path, error=str(exc)))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem_response(exc.status_code, str(exc.detail), request.url.path)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(app, request)
        return response

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra=fields(path=request.url.path))
        return problem_response(500, "internal error in the gateway; see its log", request.url.path)


def _secure(document: dict[str, Any], settings: Settings) -> None:
    """Declare the API key schemes, require them on every keyed operation, and document 401/403/429 (413)."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, path_item in document["paths"].items():
        keyed = path.startswith("/api/") or (path == "/metrics" and settings.metrics_require_key)
        if not keyed:
            continue
        for method, operation in path_item.items():
            operation["security"] = SECURITY
            statuses = [401, 403, 429] + ([413] if method in ("post", "put", "patch") else [])
            for status in statuses:
                operation["responses"].setdefault(
                    str(status),
                    {
                        "description": DESCRIPTIONS[status],
                        **({"headers": AUTH_HEADERS[status]} if status in AUTH_HEADERS else {}),
                        "content": {
                            PROBLEM_JSON: {
                                "schema": {"$ref": "#/components/schemas/Problem"},
                                "example": PROBLEM_EXAMPLES[status],
                            }
                        },
                    },
                )


def openapi_document(app: FastAPI, settings: Settings | None = None) -> dict[str, Any]:
    """FastAPI's document, adjusted to what the gateway really does.

    Validation errors are 400 problem+json (FastAPI would document 422), error bodies are
    `application/problem+json`, every parameter and JSON body carries an `example`, copied from
    the schema's examples, so that Swagger UI's "Try it out" is pre-filled, and the keyed routes
    declare the API key schemes with their 401/403/429 answers.
    """
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path_item in document["paths"].values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                examples = parameter.get("schema", {}).get("examples")
                if "example" not in parameter and examples:
                    parameter["example"] = examples[0]
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if int(status) >= 400 and "application/json" in content and PROBLEM_JSON in content:
                    problem = content.pop("application/json")
                    content[PROBLEM_JSON].setdefault("schema", problem["schema"])
                for media in content.values():
                    ref = media.get("schema", {}).get("$ref", "")
                    component = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
                    if "example" not in media and component.get("examples"):
                        media["example"] = component["examples"][0]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                ref = body.get("schema", {}).get("$ref", "")
                if not ref:  # an optional body is anyOf [model, null]
                    ref = next((s["$ref"] for s in body.get("schema", {}).get("anyOf", []) if "$ref" in s), "")
                component = schemas.get(ref.rsplit("/", 1)[-1], {})
                if "example" not in body and component.get("examples"):
                    body["example"] = component["examples"][0]
    _secure(document, settings or Settings())
    app.openapi_schema = document
    return document


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backends = Backends(settings, metrics)  # channels belong to the serving event loop
        refusals = RateLimiter(settings.auth_failures_per_minute / 60, max(1, settings.auth_failures_per_minute))
        keys = KeyVerifier(backends, settings.api_key_cache_seconds, refusals)
        limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        app.state.gateway = Gateway(settings, metrics, backends, keys, limiter)
        yield
        await backends.close()

    app = FastAPI(
        title="meterdata API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.include_router(meters.router)
    app.include_router(ingest.router)
    app.include_router(ops.router)
    app.include_router(analytics.router)
    _install_error_handlers(app)
    # Outermost last: metrics see every answer; CORS answers preflights and decorates refusals; the key
    # is checked before a body is read; the body is capped before a route parses it.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body_bytes)
    app.add_middleware(ApiKeyMiddleware, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"],
        expose_headers=["Location", "Content-Disposition", "Retry-After"],
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: openapi_document(app, settings)  # type: ignore[method-assign]
    # The dashboard (static files) at `/`, mounted last so that every API route above takes precedence.
    app.mount("/", StaticFiles(directory=Path(__file__).parent / "static", html=True), name="dashboard")
    return app
