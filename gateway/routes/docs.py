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
DESCRIPTIONS = {
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
