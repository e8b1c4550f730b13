"""Ingest runs: start a pull from the upstream, follow its progress, list past runs (IngestService)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from gateway import convert
from gateway.csvout import csv_response, paged_rows
from gateway.deps import GatewayDep
from gateway.params import INT32_MAX, INT64_MAX, Format, PageToken, Tz
from gateway.routes.docs import csv_content, problems
from gateway.schemas import IngestRunDetail, IngestRunList, IngestRunRequest
from meterdata.v1 import ingest_pb2

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])

RunsLimit = Annotated[
    int | None, Query(description="Runs per page: default 50, at most 500.", examples=[20], ge=1, le=INT32_MAX)
]
RunId = Annotated[
    int,
    Path(description="The run's id, from the answer of `POST /api/v1/ingest/runs`.", examples=[1], ge=1, le=INT64_MAX),
]


@router.post(
    "/runs",
    status_code=202,
    summary="Start a pull from the upstream meter API",
    description="Starts an ingest run that pulls new readings of the given meters (all configured meters when "
    "`muids` is empty) and answers at once with the run in state `running`; poll `Location` "
    "(`GET /api/v1/ingest/runs/{id}`) until `status` is `succeeded` or `failed`. The body is optional.",
    response_model=IngestRunDetail,
    responses={
        202: {"headers": {"Location": {"description": "URL of the run", "schema": {"type": "string"}}}},
        **problems(400, 503, 504),
    },
)
async def start_run(
    gateway: GatewayDep,
    request: Request,
    body: Annotated[IngestRunRequest | None, Body(description="Which meters to pull, and whether fully.")] = None,
    tz: Tz = None,
) -> Response:
    zone = gateway.zone(tz)
    body = body or IngestRunRequest()
    pull = ingest_pb2.PullMetersRequest(muids=body.muids, full=body.full, wait=False)
    run = await gateway.backends.call("ingest", "PullMeters", pull, "muids")
    location = str(request.url_for("get_run", id=run.id).path)
    return JSONResponse(
        {**convert.run_json(run, zone), "time_zone": zone.key}, status_code=202, headers={"Location": location}
    )


@router.get(
    "/runs",
    summary="List ingest runs",
    description="Ingest runs, newest first, in pages. With `format=csv`: every run in one streamed body.",
    response_model=IngestRunList,
    responses={
        200: {
            "content": csv_content(
                "id,kind,status,source,muids,started_at,finished_at,received,inserted,updated,unchanged,rejected,error\r\n"
                "1,pull,succeeded,http://127.0.0.1:8001,95ce3367-cbce-4a4d-bbe3-da082831d7bd,"
                "2023-03-01T09:00:00.120000+01:00,2023-03-01T09:00:01.480000+01:00,2688,2688,0,0,0,\r\n"
            )
        },
        **problems(400, 503, 504),
    },
)
async def list_runs(
    gateway: GatewayDep,
    limit: RunsLimit = None,
    page_token: PageToken = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    zone = gateway.zone(tz)
    request = ingest_pb2.ListIngestRunsRequest(page_size=limit or 0, page_token=page_token or "")
    if format == "csv":
        request.page_size, request.page_token = 500, ""
    first = await gateway.backends.call("ingest", "ListIngestRuns", request)
    if format == "json":
        return JSONResponse(
            {
                "time_zone": zone.key,
                "runs": [convert.run_json(run, zone) for run in first.runs],
                "next_page_token": first.next_page_token or None,
            }
        )

    async def next_page(token: str) -> Any:
        request.page_token = token
        return await gateway.backends.call("ingest", "ListIngestRuns", request)

    rows = paged_rows(first, next_page, lambda page: [convert.run_csv_row(run, zone) for run in page.runs])
    return csv_response(convert.RUN_CSV_HEADER, rows, "ingest_runs.csv")


@router.get(
    "/runs/{id}",
    summary="Get an ingest run",
    description="One run with its counts (received, inserted, updated, unchanged, rejected) and status.",
    response_model=IngestRunDetail,
    responses=problems(400, 404, 503, 504),
)
async def get_run(gateway: GatewayDep, id: RunId, tz: Tz = None) -> Response:
    zone = gateway.zone(tz)
    run = await gateway.backends.call("ingest", "GetIngestRun", ingest_pb2.GetIngestRunRequest(id=id), "id")
    return JSONResponse({**convert.run_json(run, zone), "time_zone": zone.key})
