"""Errors as `application/problem+json` (RFC 9457), each naming the parameter or backend at fault.

The gateway never answers a backend failure with a 500: gRPC statuses map to 4xx for the client's
mistakes and to 502/503/504 for the backends' (a stopped service is 503, a slow one 504).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import grpc
from fastapi.responses import JSONResponse

from meterdata.grpc_client import field_violations

PROBLEM_JSON = "application/problem+json"

GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
BACKEND_FAILURE = 502  # INTERNAL, UNKNOWN, DATA_LOSS: the backend broke, not the request

TITLES = {
    400: "Invalid parameter",
    401: "API key required",
    403: "Not allowed for this API key",
    404: "Not found",
    413: "Request body too large",
    429: "Too many requests",
    502: "Backend error",
    503: "Backend unavailable",
    504: "Backend timed out",
}

# gRPC request fields -> the HTTP query/path parameters that carry them.
HTTP_PARAMETER = {
    "time_zone": "tz",
    "aggregation": "agg",
    "page_size": "limit",
    "muids": "muids",
    "ingest_run_id": "id",
}


class ProblemError(Exception):
    """Raised by route code for the client's mistakes the gateway itself detects."""

    def __init__(self, status: int, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter


class InvalidParameter(ProblemError):
    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(400, f"{parameter}: {reason}", parameter)
        self.reason = reason


def problem_response(
    status: int,
    detail: str,
    instance: str,
    invalid_params: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, HTTPStatus(status).phrase),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if invalid_params:
        body["invalid_params"] = invalid_params
    body.update(extra)
    headers = {**({"Retry-After": "1"} if status == 503 else {}), **(headers or {})}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def parameter_name(field: str) -> str:
    return HTTP_PARAMETER.get(field, field)


def rpc_problem(
    error: grpc.aio.AioRpcError, backend: str, instance: str, default_parameter: str | None
) -> JSONResponse:
    """The problem response for a failed backend call, with gRPC field names translated to HTTP ones."""
    code = error.code()
    status = GRPC_TO_HTTP.get(code, BACKEND_FAILURE)
    detail = error.details() or code.name
    params = [{"name": parameter_name(field), "reason": reason} for field, reason in field_violations(error)]
    for param, (field, _) in zip(params, field_violations(error), strict=True):
        if detail.startswith(f"{field}: "):
            detail = f"{param['name']}: {detail[len(field) + 2 :]}"
    if not params and default_parameter and status in (400, 404):
        params = [{"name": default_parameter, "reason": detail}]
        detail = f"{default_parameter}: {detail}"
    if status >= 500:
        detail = f"the {backend} service answered {code.name}: {detail}"
    return problem_response(status, detail, instance, params, code=code.name, backend=backend)
