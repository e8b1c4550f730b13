"""gRPC wiring of IngestService: request checks, then the Ingestor; no SQL here.

Every call acts for the tenant in its metadata (`meterdata.tenancy`): runs are created for it and
listed only to it, meters a pull or a stream registers become its meters, and a meter of another
tenant is never written (a pull naming one is NOT_FOUND; a stream's readings of one are rejected).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
from sqlalchemy.engine import RowMapping

from ingest_service import repository
from ingest_service.ingest import Ingestor, PullPlan, validate_requested_muids
from ingest_service.validation import (
    PROTO_FIELDS,
    BatchResult,
    BatchValidator,
    RecordError,
    Rejection,
    check_columns,
    check_reading,
    column_rows,
    raw_text,
)
from meterdata.db import database_reachable, engine_from_settings, require_current_schema
from meterdata.errors import DomainError, InvalidArgument, NotFound
from meterdata.grpc_server import serve
from meterdata.paging import decode_page_token, encode_page_token, page_size
from meterdata.settings import Settings
from meterdata.tenancy import caller_tenant
from meterdata.timeconv import from_timestamp, to_timestamp
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

RUN_KINDS = {"pull": ingest_pb2.INGEST_RUN_KIND_PULL, "stream": ingest_pb2.INGEST_RUN_KIND_STREAM}
RUN_STATUSES = {
    "running": ingest_pb2.INGEST_RUN_STATUS_RUNNING,
    "succeeded": ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED,
    "failed": ingest_pb2.INGEST_RUN_STATUS_FAILED,
}
SOURCE_KINDS = {ingest_pb2.SOURCE_KIND_STATIC: "static", ingest_pb2.SOURCE_KIND_API: "api"}


def run_message(row: RowMapping) -> ingest_pb2.IngestRun:
    run = ingest_pb2.IngestRun(
        id=row["id"],
        kind=RUN_KINDS[row["kind"]],
        status=RUN_STATUSES[row["status"]],
        source=row["source"],
        muids=row["muids"],
        started_at=to_timestamp(row["started_at"]),
        received=row["received"],
        inserted=row["inserted"],
        updated=row["updated"],
        unchanged=row["unchanged"],
        rejected=row["rejected"],
        error=row["error"],
    )
    if row["finished_at"] is not None:
        run.finished_at.CopyFrom(to_timestamp(row["finished_at"]))
    return run


# Pulls run on threads of their own, so that pulls waiting for the upstream or for another pull of the
# same meter never take the threads the calls are answered on; beyond MAX_PENDING_PULLS started and
# queued pulls a new one is refused (RESOURCE_EXHAUSTED, 429 at the gateway) rather than piled up.
PULL_WORKERS = 4
MAX_PENDING_PULLS = 8


class TooManyPulls(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.settings = ingestor.settings
        self._background: set[asyncio.Future[list[str]]] = set()
        self._pulls = ThreadPoolExecutor(PULL_WORKERS, thread_name_prefix="pull")
        self._pending_pulls = 0

    def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        return caller_tenant(context, self.settings.grpc_default_tenant)

    def _load_run(self, run_id: int, tenant: str) -> ingest_pb2.IngestRun:
        with self.ingestor.engine.connect() as connection:
            row = repository.get_run(connection, run_id, tenant)
        if row is None:
            raise NotFound(f"ingest run {run_id} does not exist")
        return run_message(row)

    async def PullMeters(
        self, request: ingest_pb2.PullMetersRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.IngestRun:
        tenant = self._tenant(context)
        muids = validate_requested_muids(request.muids) or list(self.settings.upstream_muids)
        if request.source_url and not request.source_url.startswith(("http://", "https://")):
            raise InvalidArgument("source_url", "must be an http:// or https:// URL")
        foreign = await asyncio.to_thread(self.ingestor.foreign_meters, muids, tenant)
        for index, muid in enumerate(muids):
            if muid in foreign:
                field = f"muids[{index}]" if request.muids else "muids"
                raise NotFound(f"meter {muid} cannot be written by tenant {tenant}", field)
        kind = SOURCE_KINDS.get(request.source_kind, self.settings.upstream_kind)
        plan = PullPlan(muids, request.source_url or self.settings.upstream_base_url, kind, request.full, tenant)  # type: ignore[arg-type]
        if self._pending_pulls >= MAX_PENDING_PULLS:
            raise TooManyPulls(f"{self._pending_pulls} pulls are already running or queued here; retry later")
        self._pending_pulls += 1
        try:
            run_id = await asyncio.to_thread(self.ingestor.start_run, "pull", plan.base_url, muids, tenant)
        except BaseException:
            self._pending_pulls -= 1
            raise
        job = asyncio.get_running_loop().run_in_executor(self._pulls, self.ingestor.pull, run_id, plan)
        job.add_done_callback(self._pull_done)
        if request.wait:
            await job
        else:
            self._background.add(job)
            job.add_done_callback(self._background.discard)
        return await asyncio.to_thread(self._load_run, run_id, tenant)

    def _pull_done(self, job: asyncio.Future[list[str]]) -> None:
        self._pending_pulls -= 1
        if not job.cancelled() and job.exception() is not None:
            log.error("pull ended by an exception", exc_info=job.exception())

    async def WriteReadings(
        self, request_iterator: AsyncIterator[ingest_pb2.WriteReadingsRequest], context: grpc.aio.ServicerContext
    ) -> ingest_pb2.IngestRun:
        """Each message is one transaction. Checking message n+1 overlaps with writing message n (a queue
        of two bounds the memory), so the service's CPU and the database's work in parallel."""
        peer = context.peer()
        tenant = self._tenant(context)
        run_id = await asyncio.to_thread(self.ingestor.start_run, "stream", f"grpc stream from {peer}", [], tenant)
        position = 0
        register: bool | None = None
        known: set[str] = set()
        pending: asyncio.Queue[tuple[BatchResult, int] | None] = asyncio.Queue(maxsize=2)

        async def write_all() -> None:
            while (item := await pending.get()) is not None:
                batch, received = item
                await asyncio.to_thread(
                    self._write_stream_batch, run_id, batch, received, known, bool(register), tenant
                )

        writer = asyncio.create_task(write_all())
        try:
            async for message in request_iterator:
                if register is None:
                    register = message.register_unknown_meters
                batch, received = self._validate_stream_message(message, position)
                position += received
                while not writer.done():
                    try:
                        await asyncio.wait_for(pending.put((batch, received)), timeout=1)
                        break
                    except TimeoutError:
                        continue
                if writer.done():
                    break  # the writer failed: its exception is raised below
            if not writer.done():
                await pending.put(None)
            await writer
        except BaseException as error:
            writer.cancel()
            await asyncio.to_thread(self.ingestor.finish_run, run_id, [f"stream ended early: {error!r}"])
            raise
        await asyncio.to_thread(self.ingestor.finish_run, run_id, [])
        return await asyncio.to_thread(self._load_run, run_id, tenant)

    def _validate_stream_message(
        self, message: ingest_pb2.WriteReadingsRequest, offset: int
    ) -> tuple[BatchResult, int]:
        """(valid readings and blocks with the rejections, number of readings received)."""
        batch = BatchValidator(PROTO_FIELDS.timestamp)
        ceiling = self.settings.value_ceiling_kwh
        for index, reading in enumerate(message.readings):
            position = offset + index
            try:
                if not reading.HasField("ts"):
                    raise RecordError("ts", "is missing")
                valid = check_reading(
                    reading.muid, reading.obis, from_timestamp(reading.ts),
                    reading.value, reading.quality, reading.measurement, ceiling, PROTO_FIELDS,
                )  # fmt: skip
            except RecordError as error:
                batch.reject(position, reading, error.field, error.reason, reading.muid)
                continue
            batch.accept(position, reading, [valid])
        result = batch.result
        position = offset + len(message.readings)
        for index, columns in enumerate(message.columns):
            block, rejections = check_columns(
                columns.muid, columns.obis, columns.ts_seconds, columns.values, columns.quality,
                columns.measurement, ceiling, position, f"columns[{index}]",
            )  # fmt: skip
            position += column_rows(len(columns.ts_seconds), len(columns.values))
            result.rejections += rejections
            if block is not None:
                result.blocks.append(block)
        return result, position - offset

    def _write_stream_batch(
        self, run_id: int, result: BatchResult, received: int, known: set[str], register: bool, tenant: str
    ) -> None:
        """Readings of meters nobody registered are rejected unless the stream asked to register them;
        readings of another tenant's meter are rejected in any case (registering leaves its tenant)."""
        muids = {r.muid for r in result.readings} | {b.muid for b in result.blocks}
        if muids - known:
            if register:
                self.ingestor.register_meters(muids - known, tenant)
            known |= self.ingestor.known_meters(muids - known, tenant)
        unknown = muids - known
        if unknown:
            reason = f"unknown meter {{}} for tenant {tenant}; register it (register_unknown_meters) unless it is another tenant's"
            for block in [b for b in result.blocks if b.muid in unknown]:
                result.rejections += [
                    Rejection(
                        -1,
                        raw_text({"muid": block.muid, "obis": block.obis, "ts_seconds": int(t), "value": float(v)}),
                        "muid",
                        reason.format(block.muid),
                        block.muid,
                    )
                    for t, v in zip(block.ts, block.values, strict=True)
                ]
            for reading in [r for r in result.readings if r.muid in unknown]:
                record = {
                    "muid": reading.muid,
                    "obis": reading.obis,
                    "ts": reading.ts.isoformat(),
                    "value": reading.value,
                }
                result.rejections.append(
                    Rejection(-1, raw_text(record), "muid", reason.format(reading.muid), reading.muid)
                )
            result.readings = [r for r in result.readings if r.muid not in unknown]
            result.blocks = [b for b in result.blocks if b.muid not in unknown]
        self.ingestor.write_batch(run_id, result, received)

    async def GetIngestRun(
        self, request: ingest_pb2.GetIngestRunRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.IngestRun:
        tenant = self._tenant(context)
        if request.id <= 0:
            raise InvalidArgument("id", f"must be a positive run id, got {request.id}")
        return await asyncio.to_thread(self._load_run, request.id, tenant)

    async def ListIngestRuns(
        self, request: ingest_pb2.ListIngestRunsRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.ListIngestRunsResponse:
        tenant = self._tenant(context)
        size = page_size(request.page_size, 50, 500)
        before = int(decode_page_token(request.page_token, {"before"})["before"]) if request.page_token else None

        def load() -> list[RowMapping]:
            with self.ingestor.engine.connect() as connection:
                return repository.list_runs(connection, before, size + 1, tenant)

        rows = await asyncio.to_thread(load)
        response = ingest_pb2.ListIngestRunsResponse(runs=[run_message(row) for row in rows[:size]])
        if len(rows) > size:
            response.next_page_token = encode_page_token({"before": rows[size - 1]["id"]})
        return response

    async def ListRejectedReadings(
        self, request: ingest_pb2.ListRejectedReadingsRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.ListRejectedReadingsResponse:
        tenant = self._tenant(context)
        if request.ingest_run_id <= 0:
            raise InvalidArgument("ingest_run_id", f"must be a positive run id, got {request.ingest_run_id}")
        size = page_size(request.page_size, 100, 1000)
        after = int(decode_page_token(request.page_token, {"after"})["after"]) if request.page_token else None

        def load() -> list[RowMapping]:
            with self.ingestor.engine.connect() as connection:
                if repository.get_run(connection, request.ingest_run_id, tenant) is None:
                    raise NotFound(f"ingest run {request.ingest_run_id} does not exist")
                return repository.list_rejections(connection, request.ingest_run_id, after, size + 1)

        rows = await asyncio.to_thread(load)
        response = ingest_pb2.ListRejectedReadingsResponse(
            rejected=[ingest_pb2.RejectedReading(**dict(row)) for row in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = encode_page_token({"after": rows[size - 1]["id"]})
        return response


async def main(settings: Settings) -> None:
    engine = engine_from_settings(settings)
    require_current_schema(engine)
    ingestor = Ingestor(engine, settings)
    await asyncio.to_thread(ingestor.fail_orphaned_runs)  # runs a killed process left `running`
    servicer = IngestServicer(ingestor)
    await serve(
        service_name="meterdata.v1.IngestService",
        register=lambda server: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server),
        host=settings.grpc_listen_host,
        port=settings.ingest_port,
        grace_seconds=settings.grpc_shutdown_grace_seconds,
        settings=settings,
        readiness=lambda: database_reachable(engine),
    )
