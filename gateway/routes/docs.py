"""OpenAPI fragments shared by routes: error responses and CSV bodies, each with an example."""

from __future__ import annotations

from typing import Any

from gateway.params import IMPORT_MUID
from gateway.problems import PROBLEM_JSON
from gateway.schemas import Problem

PROBLEM_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "type": "about:blank",
        "title": "Invalid parameter",
        "status": 400,
        "detail": "end: must be after start (start 2023-02-10T00:00:00+00:00 is inclusive, end 2023-02-01T00:00:00+00:00 exclusive)",
        "instance": f"/api/v1/meters/{IMPORT_MUID}/series",
        "invalid_params": [{"name": "end", "reason": "must be after start"}],
        "code": "INVALID_ARGUMENT",
        "backend": "query",
    },
    404: {
        "type": "about:blank",
        "title": "Not found",
        "status": 404,
        "detail": "muid: no meter 00000000-0000-0000-0000-000000000000",
        "instance": "/api/v1/meters/00000000-0000-0000-0000-000000000000",
        "invalid_params": [{"name": "muid", "reason": "no meter 00000000-0000-0000-0000-000000000000"}],
        "code": "NOT_FOUND",
        "backend": "query",
    },
    503: {
        "type": "about:blank",
        "title": "Backend unavailable",
        "status": 503,
        "detail": "the query service answered UNAVAILABLE: failed to connect to all addresses",
        "instance": "/api/v1/meters",
        "code": "UNAVAILABLE",
        "backend": "query",
    },
    504: {
        "type": "about:blank",
        "title": "Backend timed out",
        "status": 504,
        "detail": "the query service answered DEADLINE_EXCEEDED: Deadline Exceeded",
        "instance": "/api/v1/meters",
        "code": "DEADLINE_EXCEEDED",
        "backend": "query",
    },
}
PROBLEM_EXAMPLES.update(
    {
        401: {
            "type": "about:blank",
            "title": "API key required",
            "status": 401,
            "detail": "the API key is not valid (unknown, revoked or malformed)",
            "instance": "/api/v1/meters",
        },
        403: {
            "type": "about:blank",
            "title": "Not allowed for this API key",
            "status": 403,
            "detail": "the API key's scope 'read' does not allow POST /api/v1/ingest/runs; it needs admin or ingest",
            "instance": "/api/v1/ingest/runs",
        },
        413: {
            "type": "about:blank",
            "title": "Request body too large",
            "status": 413,
            "detail": "the request body is larger than 65536 bytes (MAX_REQUEST_BODY_BYTES)",
            "instance": "/api/v1/ingest/runs",
        },
        429: {
            "type": "about:blank",
            "title": "Too many requests",
            "status": 429,
            "detail": "rate limit of this API key exceeded (50 requests per second, bursts of 100); retry after the "
            "time in Retry-After",
            "instance": "/api/v1/meters",
        },
    }
)
DESCRIPTIONS = {
    401: "No API key, or one that is unknown, revoked or malformed (`WWW-Authenticate: Bearer`).",
    403: "The API key's scope does not allow this request (`read`: GET; `ingest`: /ingest; `admin`: all).",
    413: "The request body is larger than the server's MAX_REQUEST_BODY_BYTES.",
    429: "The API key sent more requests than its rate limit allows; retry after `Retry-After` seconds.",
    400: "A parameter is invalid; `invalid_params` names it.",
    404: "The meter, channel or run does not exist; `invalid_params` names the parameter.",
    503: "A backend service is down; retry later.",
    504: "A backend did not answer within the deadline.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"example": PROBLEM_EXAMPLES[status]}},
        }
        for status in statuses
    }


def csv_content(example: str) -> dict[str, Any]:
    return {"text/csv": {"schema": {"type": "string"}, "example": example}}
