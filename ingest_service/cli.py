"""Operator commands of the ingest service: serve, pull (with progress), schedule, mirror.

`pull_through_service` is what `make run` uses: it picks the source (the public upstream, or the
bundled snapshot over the local mirror when the upstream cannot be reached), says which, and asks
the running ingest service to pull.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest_service.mirror import Mirror
from ingest_service.upstream import reachable
from meterdata.grpc_client import sync_channel
from meterdata.logs import configure_logging
from meterdata.settings import Settings, get_settings
from meterdata.tenancy import DEFAULT_TENANT, check_tenant
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc

console = Console(highlight=False, soft_wrap=True)  # soft_wrap: long lines stay whole in logs and pipes

COUNT_FIELDS = ("received", "inserted", "updated", "unchanged", "rejected")
TENANT_HELP = "tenant the pulled meters belong to (default: default); another tenant's meter is not written"


def tenant_name(value: str) -> str:
    try:
        return check_tenant(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


EXPECTED_RECORDS_PER_FILE = 2688  # the published files: only a hint for the progress bar


def choose_source(settings: Settings, base_url: str | None, stack: ExitStack) -> tuple[str, str]:
    """(base URL, sentence saying which source is used and why)."""
    if base_url:
        return base_url, f"source: {base_url} (given)"
    probe = f"{settings.upstream_base_url.rstrip('/')}/challenge/{settings.upstream_muids[0]}.json"
    ok, why = reachable(probe, timeout=settings.upstream_connect_timeout_seconds)
    if ok:
        return settings.upstream_base_url, f"source: {settings.upstream_base_url} (public upstream)"
    if not settings.upstream_fallback_to_mirror:
        return settings.upstream_base_url, f"source: {settings.upstream_base_url} (unreachable: {why}; fallback off)"
    mirror = stack.enter_context(Mirror())
    return mirror.url, (
        f"source: bundled snapshot served over HTTP at {mirror.url} (sha256 verified), "
        f"because the public upstream is unreachable ({why})"
    )


def summary_table(run: ingest_pb2.IngestRun) -> Table:
    status = ingest_pb2.IngestRunStatus.Name(run.status).removeprefix("INGEST_RUN_STATUS_").lower()
    table = Table(title=f"ingest run {run.id}: {status}", title_justify="left")
    for name in COUNT_FIELDS:
        table.add_column(name, justify="right")
    table.add_row(*(f"{getattr(run, name):,}" for name in COUNT_FIELDS))
    return table


def print_run(run: ingest_pb2.IngestRun) -> None:
    console.print(summary_table(run))
    if run.error:
        console.print(f"[red]errors:[/red] {run.error}")
    if run.rejected:
        console.print(f"{run.rejected} rejected records are kept with their reasons: GET /api/v1/ingest/runs/{run.id}")


def pull_through_service(
    settings: Settings, address: str, base_url: str | None = None, tenant: str = DEFAULT_TENANT
) -> ingest_pb2.IngestRun:
    """Ask the running ingest service to pull from `base_url` (default: the source `choose_source` picks),
    for `tenant` (the published meters belong to the default tenant)."""
    stack = ExitStack()
    if base_url is None:
        base_url, sentence = choose_source(settings, None, stack)
        console.print(sentence)
    source = base_url
    with stack, sync_channel(address, settings, tenant) as channel:
        started = time.perf_counter()
        run = ingest_pb2_grpc.IngestServiceStub(channel).PullMeters(
            ingest_pb2.PullMetersRequest(source_url=source, wait=True), timeout=300
        )
        seconds = time.perf_counter() - started
    print_run(run)
    console.print(
        f"pulled {run.received:,} records in {seconds:.2f} s ({run.received / max(seconds, 1e-9):,.0f} records/s)"
    )
    return run


def pull_locally(
    settings: Settings,
    muids: list[str],
    base_url: str | None,
    kind: str | None,
    full: bool,
    tenant: str = DEFAULT_TENANT,
) -> int:
    """`pull`: run a pull in this process against the database, with a progress bar per meter."""
    from ingest_service.ingest import Ingestor, PullPlan, validate_requested_muids
    from meterdata.db import make_engine, require_current_schema
    from meterdata.runner import resolve_database_url

    muids = validate_requested_muids(muids) or list(settings.upstream_muids)
    database_url, description = resolve_database_url(settings)
    console.print(f"database: {description}")
    engine = make_engine(database_url)
    require_current_schema(engine)
    ingestor = Ingestor(engine, settings)
    with ExitStack() as stack:
        source, sentence = choose_source(settings, base_url, stack)
        console.print(sentence)
        plan = PullPlan(muids, source, kind or settings.upstream_kind, full, tenant)  # type: ignore[arg-type]
        run_id = ingestor.start_run("pull", source, muids, tenant)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            tasks = {muid: progress.add_task(muid, total=EXPECTED_RECORDS_PER_FILE) for muid in muids}

            def advance(muid: str, records: int) -> None:
                task = tasks[muid]
                total = max(progress.tasks[task].total or 0, records)
                progress.update(task, completed=records, total=total)

            errors = ingestor.pull(run_id, plan, advance)
    from ingest_service import repository
    from ingest_service.server import run_message

    with engine.connect() as connection:
        print_run(run_message(repository.get_run(connection, run_id)))  # type: ignore[arg-type]
    return 1 if errors else 0


def schedule(
    settings: Settings, every_seconds: float, base_url: str | None, once: bool = False, tenant: str = DEFAULT_TENANT
) -> int:
    """Ask the ingest service to pull every `every_seconds`; a failed pull is reported and retried next time."""
    with sync_channel(settings.ingest_address, settings, tenant) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while True:
            succeeded = False
            try:
                run = stub.PullMeters(ingest_pb2.PullMetersRequest(source_url=base_url or "", wait=True), timeout=600)
                print_run(run)
                succeeded = run.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED
            except grpc.RpcError as error:
                console.print(f"[red]pull failed:[/red] {error.code().name}: {error.details()}")  # type: ignore[attr-defined]
            if once:
                return 0 if succeeded else 1  # a CronJob must see a failed pull as failed
            time.sleep(every_seconds)


def serve_mirror(port: int, host: str) -> int:
    with Mirror(host, port) as mirror:
        console.print(
            f"serving the bundled snapshot at {mirror.url}/challenge/<muid>.json and {mirror.url}/meterdata/measurement"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest_service",
        description="The meterdata ingest service: the only writer of readings.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gRPC IngestService (port INGEST_PORT, default 50051)")

    pull = commands.add_parser(
        "pull",
        help="pull meters from the upstream into the database now, in this process, with a progress bar",
        description="Pull readings from the upstream meter API into PostgreSQL (DATABASE_URL, or the embedded "
        "server). Idempotent: readings already stored count as unchanged; changed values are kept as revisions.",
    )
    pull.add_argument(
        "--muid", action="append", default=[], help="meter UUID; repeat for several (default: UPSTREAM_MUIDS)"
    )
    pull.add_argument("--source", metavar="URL", help="upstream base URL (default: UPSTREAM_BASE_URL, or the bundled "
                      "snapshot over a local mirror when that cannot be reached)")  # fmt: skip
    pull.add_argument("--kind", choices=("static", "api"), help="static: {URL}/challenge/{muid}.json; api: "
                      "{URL}/meterdata/measurement?muid=..&limit=..&start=..&stop=.. (default: UPSTREAM_KIND)")  # fmt: skip
    pull.add_argument("--full", action="store_true", help="ignore the per-meter watermark and fetch the whole history")
    pull.add_argument("--tenant", default=DEFAULT_TENANT, type=tenant_name, help=TENANT_HELP)

    sched = commands.add_parser("schedule", help="ask the running ingest service (INGEST_ADDRESS) to pull periodically")
    sched.add_argument(
        "--every", type=float, default=900, metavar="SECONDS", help="seconds between pulls (default 900)"
    )
    sched.add_argument("--source", metavar="URL", help="upstream base URL (default: the service's UPSTREAM_BASE_URL)")
    sched.add_argument("--once", action="store_true", help="pull once and exit")
    sched.add_argument("--tenant", default=DEFAULT_TENANT, type=tenant_name, help=TENANT_HELP)

    mirror = commands.add_parser("mirror", help="serve the bundled snapshot as a local upstream over HTTP")
    mirror.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    mirror.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")

    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        from ingest_service import server

        asyncio.run(server.main(settings))
        return 0
    if args.command == "pull":
        return pull_locally(settings, args.muid, args.source, args.kind, args.full, args.tenant)
    if args.command == "schedule":
        return schedule(settings, args.every, args.source, args.once, args.tenant)
    return serve_mirror(args.port, args.host)


if __name__ == "__main__":
    sys.exit(main())
