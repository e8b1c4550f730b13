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

from gateway.backends import BackendError, Backends
from gateway.deps import Gateway
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.problems import PROBLEM_JSON, ProblemError, problem_response, rpc_problem
from gateway.routes import analytics, ingest, meters, ops
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
"""

TAGS = [
    {"name": "meters", "description": "Meters, raw readings and aggregated series (QueryService)."},
    {"name": "ingest", "description": "Pulls from the upstream meter API (IngestService)."},
    {"name": "operations", "description": "Liveness, readiness, metrics."},
]


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    params = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = location[1] if len(location) > 1 else (location[0] if location else "request")
        params.append({"name": name, "reason": error.get("msg", "invalid")})
    detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params)
    return problem_response(400, detail, request.url.path, params)


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
        return response

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra=fields(path=request.url.path))
        return problem_response(500, "internal error in the gateway; see its log", request.url.path)


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, adjusted to what the gateway really does.

    Validation errors are 400 problem+json (FastAPI would document 422), error bodies are
    `application/problem+json`, and every parameter and JSON body carries an `example`, copied from
    the schema's examples, so that Swagger UI's "Try it out" is pre-filled.
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
    app.openapi_schema = document
    return document


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backends = Backends(settings, metrics)  # channels belong to the serving event loop
        app.state.gateway = Gateway(settings, metrics, backends)
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
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Location", "Content-Disposition", "Retry-After"],
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    # The dashboard (static files) at `/`, mounted last so that every API route above takes precedence.
    app.mount("/", StaticFiles(directory=Path(__file__).parent / "static", html=True), name="dashboard")
    return app
