"""Ingest runs: pulls from the upstream and streamed batches, each batch one transaction.

A batch's readings, its rejections and the run's counters commit together, so a crash leaves no
half batch and the counters always describe what is stored; rerunning completes the work, and
readings already stored count as unchanged.

Each run keeps a database session of its own for its whole life, holding two kinds of advisory
locks: the run's (a `running` run whose lock is free lost its process, and is marked failed by the
next run or service start) and, during a pull, the meter's (a second pull of the same meter waits
for the first, then continues from the watermark the first left, so nothing is fetched twice into
one table state; the wait is noted on the run). A pull fetches a meter's whole range before writing
it, oldest first, so the watermark (the newest stored reading) only ever advances over a range that
arrived complete: a pull cut short by a timeout or a crash is resumed by the next one.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ingest_service import repository
from ingest_service.repository import Counts
from ingest_service.upstream import SourceKind, UpstreamClient, UpstreamError, UpstreamUnavailable, excerpt
from ingest_service.validation import (
    BatchResult,
    ColumnBlock,
    Rejection,
    ValidReading,
    drop_cross_block_duplicates,
    parse_muid,
    validate_records,
)
from meterdata.logs import fields
from meterdata.settings import Settings
from meterdata.tenancy import DEFAULT_TENANT

log = logging.getLogger(__name__)

QUARTER_HOUR = timedelta(minutes=15)
BODY_KEPT = 1_000_000  # bytes of an unusable upstream body kept in rejected_readings

Progress = Callable[[str, int], None]
ORPHANED = "interrupted: the ingest process serving this run ended before it finished; run it again"


class ForeignMeter(Exception):
    """The meter belongs to another tenant: a pull for this tenant writes nothing to it."""


class MeterBusy(Exception):
    """Another pull held the meter longer than this pull would wait."""


@dataclass
class Fetched:
    """A meter's pages, validated and kept as compact column blocks until the whole range arrived."""

    blocks: list[ColumnBlock] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    records: int = 0
    source: str | None = None

    def add(self, result: BatchResult, records: int, url: str) -> None:
        self.blocks += result.all_blocks()
        self.rejections += result.rejections
        self.records += records
        self.source = url


def ascending_chunks(blocks: Sequence[ColumnBlock], size: int) -> list[list[ColumnBlock]]:
    """The readings of `blocks` in chunks of about `size`, oldest first, never splitting one instant:
    whatever prefix of the chunks is committed, every reading up to the newest stored one is stored."""
    if not blocks:
        return []
    ts = np.concatenate([b.ts for b in blocks])
    owner = np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)])
    row = np.concatenate([np.arange(len(b)) for b in blocks])
    order = np.argsort(ts, kind="stable")
    ts, owner, row = ts[order], owner[order], row[order]
    cuts = [0]
    while cuts[-1] < len(ts):
        end = min(cuts[-1] + size, len(ts))
        if end < len(ts):  # extend to the last reading of the instant the chunk would split
            end = int(np.searchsorted(ts, ts[end - 1], side="right"))
        cuts.append(end)
    chunks = []
    for begin, end in itertools.pairwise(cuts):
        parts = []
        for i in np.unique(owner[begin:end]):
            picked = row[begin:end][owner[begin:end] == i]
            b = blocks[int(i)]
            parts.append(ColumnBlock(b.muid, b.obis, b.quality, b.measurement, b.ts[picked], b.values[picked]))
        chunks.append(parts)
    return chunks


@dataclass(frozen=True)
class PullPlan:
    muids: list[str]
    base_url: str
    kind: SourceKind
    full: bool = False
    tenant: str = DEFAULT_TENANT  # new meters are registered to it; another tenant's meter is not pulled


def history_start(settings: Settings) -> datetime:
    return datetime.fromisoformat(settings.upstream_history_start).astimezone(UTC)


def grid_ceiling(moment: datetime) -> datetime:
    """The first quarter-hour boundary at or after `moment`."""
    seconds = moment.timestamp()
    return datetime.fromtimestamp(-(-seconds // 900) * 900, UTC)


class Ingestor:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        # Each run's own session, holding its locks, comes from an unpooled engine of its own: runs
        # never take the connections the calls are answered with.
        self._lease_engine = create_engine(
            engine.url, poolclass=NullPool, connect_args={"application_name": "meterdata ingest run"}
        )
        self._leases: dict[int, Connection] = {}  # run id -> the run's own session, holding its locks
        self._notes: dict[int, list[str]] = {}
        self._guard = threading.Lock()

    # -- runs -----------------------------------------------------------------------------------------
    def start_run(self, kind: str, source: str, muids: Sequence[str], tenant: str = DEFAULT_TENANT) -> int:
        """A new `running` run, created and locked in one transaction so no one sees it unlocked."""
        self.fail_orphaned_runs()
        connection = self._lease_engine.connect()
        try:
            with connection.begin():
                run_id = repository.create_run(connection, kind, source, muids, tenant)
                repository.lock_run(connection, run_id)
        except BaseException:
            connection.close()
            raise
        with self._guard:
            self._leases[run_id] = connection
        return run_id

    def finish_run(self, run_id: int, errors: Sequence[str]) -> None:
        with self._guard:
            notes = self._notes.pop(run_id, [])
        try:
            with self.engine.begin() as connection:
                status = "failed" if errors else "succeeded"
                repository.finish_run(connection, run_id, status, "; ".join(errors), "; ".join(notes))
        finally:
            self._release(run_id)

    def _release(self, run_id: int) -> None:
        with self._guard:
            connection = self._leases.pop(run_id, None)
        if connection is None:
            return
        try:
            repository.release_locks(connection)
            connection.commit()
        except DBAPIError:
            connection.invalidate()  # the session is gone, and its locks with it
        finally:
            connection.close()

    def fail_orphaned_runs(self) -> list[int]:
        """Mark failed the `running` runs whose process died (no session holds their lock)."""
        with self._guard:
            ours = set(self._leases)
        failed = []
        with self.engine.connect() as connection:
            for run_id in repository.running_run_ids(connection):
                if run_id not in ours and repository.fail_if_orphaned(connection, run_id, ORPHANED):
                    failed.append(run_id)
                connection.commit()
        if failed:
            log.warning("orphaned runs marked failed", extra=fields(runs=failed))
        return failed

    def write_batch(self, run_id: int, batch: BatchResult, received: int, source: str | None = None) -> Counts:
        """One transaction: readings upserted, rejections stored, the run's counters advanced."""
        blocks, duplicates = drop_cross_block_duplicates(batch.all_blocks())
        rejections = batch.rejections + duplicates
        with self.engine.begin() as connection:
            counts = repository.write_blocks(connection, run_id, blocks)
            repository.store_rejections(connection, run_id, rejections)
            counts.received = received
            counts.rejected = len(rejections)
            repository.add_to_run(connection, run_id, counts, source)
        return counts

    # -- pulls ----------------------------------------------------------------------------------------
    def pull(self, run_id: int, plan: PullPlan, progress: Progress | None = None) -> list[str]:
        """Pull every meter of the plan into run `run_id`; returns the per-meter errors (empty: success)."""
        errors: list[str] = []
        try:
            with UpstreamClient(self.settings, plan.base_url, plan.kind) as client:
                for muid in plan.muids:
                    try:
                        self._pull_meter(run_id, client, muid, plan.full, progress, plan.tenant)
                    except ForeignMeter as error:
                        errors.append(f"meter {muid}: {error}")
                    except MeterBusy as error:
                        log.warning("pull skipped a meter", extra=fields(run=run_id, muid=muid, error=str(error)))
                        errors.append(f"meter {muid}: {error}")
                    except UpstreamError as error:
                        log.warning("pull failed", extra=fields(run=run_id, muid=muid, error=str(error)))
                        errors.append(f"meter {muid}: {error}")
                        self._keep_unusable_body(run_id, muid, error)
        except BaseException as error:
            # Whatever stops a pull (a database outage, a bug, shutdown), its run must not stay "running".
            log.exception("pull aborted", extra=fields(run=run_id))
            self.finish_run(run_id, [*errors, f"pull aborted: {type(error).__name__}: {error}"])
            raise
        self.finish_run(run_id, errors)
        return errors

    def _window(self, muid: str, full: bool) -> tuple[datetime, datetime]:
        start = history_start(self.settings)
        if not full:
            with self.engine.connect() as connection:
                mark = repository.watermark(connection, muid)
            if mark is not None:
                start = max(start, mark + QUARTER_HOUR)
        return start, grid_ceiling(datetime.now(UTC))

    def _lock_meter(self, run_id: int, muid: str) -> None:
        """Take the meter's pull lock on the run's session, waiting for another pull if one holds it."""
        connection = self._leases.get(run_id)
        if connection is None:  # a run this ingestor did not start: nothing to hold the lock on
            return
        locked = repository.try_lock_meter(connection, muid)
        connection.commit()
        if locked:
            return
        holders = repository.runs_pulling(connection, muid, run_id)
        connection.commit()
        who = ", ".join(f"pull run {r}" for r in holders) or "another pull"
        wait = self.settings.pull_lock_wait_seconds
        started = time.monotonic()
        try:
            repository.lock_meter(connection, muid, wait)
            connection.commit()
        except DBAPIError as error:
            connection.rollback()
            if getattr(error.orig, "pgcode", None) != "55P03":  # lock_not_available
                raise
            raise MeterBusy(f"skipped: {who} still held the meter after {wait:g} s") from None
        waited = time.monotonic() - started
        log.info("pull waited for the meter", extra=fields(run=run_id, muid=muid, seconds=round(waited, 3)))
        with self._guard:
            self._notes.setdefault(run_id, []).append(f"meter {muid}: waited {waited:.1f} s for {who} to finish it")

    def _unlock_meter(self, run_id: int, muid: str) -> None:
        connection = self._leases.get(run_id)
        if connection is None:
            return
        try:
            repository.unlock_meter(connection, muid)
            connection.commit()
        except DBAPIError:
            connection.invalidate()  # a lost session holds no lock

    def _pull_meter(
        self,
        run_id: int,
        client: UpstreamClient,
        muid: str,
        full: bool,
        progress: Progress | None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        with self.engine.begin() as connection:
            repository.register_meters(connection, [muid], tenant)
            if repository.meter_tenants(connection, [muid]).get(muid) != tenant:
                raise ForeignMeter(f"not a meter of tenant {tenant}; nothing written")
        self._lock_meter(run_id, muid)
        try:
            start, stop = self._window(muid, full)
            fetched = Fetched()
            for page in client.pages(muid, start, stop):
                result = validate_records(page.records, self.settings.value_ceiling_kwh, muid, offset=fetched.records)
                fetched.add(result, len(page.records), page.url)
                if progress is not None:
                    progress(muid, fetched.records)
            self._write_fetched(run_id, fetched)
        finally:
            self._unlock_meter(run_id, muid)
        log.info("meter pulled", extra=fields(run=run_id, muid=muid, records=fetched.records))

    def _write_fetched(self, run_id: int, fetched: Fetched) -> None:
        """Oldest first, a transaction per chunk; each chunk counts what it received (valid readings
        plus refused records), so received = inserted + updated + unchanged + rejected at every commit."""
        chunks = ascending_chunks(fetched.blocks, self.settings.ingest_batch_size) or [[]]
        for index, blocks in enumerate(chunks):
            first = index == 0
            batch = BatchResult([], fetched.rejections if first else [], blocks)
            received = batch.valid_count + len(batch.rejections)
            self.write_batch(run_id, batch, received, fetched.source if first else None)

    def _keep_unusable_body(self, run_id: int, muid: str, error: UpstreamError) -> None:
        """An answer that was not a usable payload is still kept, with the reason, not dropped."""
        if isinstance(error, UpstreamUnavailable) and not error.body:
            return
        raw = error.body[:BODY_KEPT].decode("utf-8", errors="replace") or excerpt(error.body)
        rejection = Rejection(-1, raw, "body", str(error), muid)
        self.write_batch(run_id, BatchResult([], [rejection]), 1)

    # -- streams --------------------------------------------------------------------------------------
    def known_meters(self, muids: Iterable[str], tenant: str = DEFAULT_TENANT) -> set[str]:
        """The meters among `muids` that belong to `tenant` (another tenant's meter is unknown here)."""
        with self.engine.connect() as connection:
            return repository.known_meters(connection, sorted(set(muids)), tenant)

    def register_meters(self, muids: Iterable[str], tenant: str = DEFAULT_TENANT) -> None:
        """Register new meters to `tenant`; meters that exist keep their tenant."""
        with self.engine.begin() as connection:
            repository.register_meters(connection, sorted(set(muids)), tenant)

    def foreign_meters(self, muids: Iterable[str], tenant: str) -> set[str]:
        """The meters among `muids` that exist and belong to another tenant than `tenant`."""
        with self.engine.connect() as connection:
            owners = repository.meter_tenants(connection, sorted(set(muids)))
        return {muid for muid, owner in owners.items() if owner != tenant}


def validate_requested_muids(muids: Iterable[str], field: str = "muids") -> list[str]:
    """Requested meters, normalised; InvalidArgument-worthy text when one is not a UUID."""
    from ingest_service.validation import RecordError
    from meterdata.errors import InvalidArgument

    normalised = []
    for index, muid in enumerate(muids):
        try:
            normalised.append(parse_muid(muid, f"{field}[{index}]"))
        except RecordError as error:
            raise InvalidArgument(error.field, error.reason) from None
    return normalised


__all__ = ["Ingestor", "PullPlan", "ValidReading", "validate_requested_muids"]
