"""Ingest runs: pulls from the upstream and streamed batches, each batch one transaction.

A batch's readings, its rejections and the run's counters commit together, so a crash leaves no
half batch and the counters always describe what is stored; rerunning completes the work, and
readings already stored count as unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from ingest_service import repository
from ingest_service.repository import Counts
from ingest_service.upstream import SourceKind, UpstreamClient, UpstreamError, UpstreamUnavailable, excerpt
from ingest_service.validation import (
    BatchResult,
    Rejection,
    ValidReading,
    drop_cross_block_duplicates,
    parse_muid,
    validate_records,
)
from meterdata.logs import fields
from meterdata.settings import Settings

log = logging.getLogger(__name__)

QUARTER_HOUR = timedelta(minutes=15)
BODY_KEPT = 1_000_000  # bytes of an unusable upstream body kept in rejected_readings

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class PullPlan:
    muids: list[str]
    base_url: str
    kind: SourceKind
    full: bool = False


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

    # -- runs -----------------------------------------------------------------------------------------
    def start_run(self, kind: str, source: str, muids: Sequence[str]) -> int:
        with self.engine.begin() as connection:
            return repository.create_run(connection, kind, source, muids)

    def finish_run(self, run_id: int, errors: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            repository.finish_run(connection, run_id, "failed" if errors else "succeeded", "; ".join(errors))

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
                        self._pull_meter(run_id, client, muid, plan.full, progress)
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

    def _pull_meter(
        self, run_id: int, client: UpstreamClient, muid: str, full: bool, progress: Progress | None
    ) -> None:
        with self.engine.begin() as connection:
            repository.register_meters(connection, [muid])
        start, stop = self._window(muid, full)
        position = 0
        for page in client.pages(muid, start, stop):
            result = validate_records(page.records, self.settings.value_ceiling_kwh, muid, offset=position)
            self._write_in_batches(run_id, result, len(page.records), page.url)
            position += len(page.records)
            if progress is not None:
                progress(muid, position)
        log.info("meter pulled", extra=fields(run=run_id, muid=muid, records=position))

    def _write_in_batches(self, run_id: int, result: BatchResult, received: int, source: str) -> None:
        size = self.settings.ingest_batch_size
        readings = result.readings
        chunks = [readings[i : i + size] for i in range(0, len(readings), size)] or [[]]
        for index, chunk in enumerate(chunks):
            first = index == 0
            batch = BatchResult(chunk, result.rejections if first else [])
            self.write_batch(run_id, batch, received if first else 0, source if first else None)

    def _keep_unusable_body(self, run_id: int, muid: str, error: UpstreamError) -> None:
        """An answer that was not a usable payload is still kept, with the reason, not dropped."""
        if isinstance(error, UpstreamUnavailable) and not error.body:
            return
        raw = error.body[:BODY_KEPT].decode("utf-8", errors="replace") or excerpt(error.body)
        rejection = Rejection(-1, raw, "body", str(error), muid)
        self.write_batch(run_id, BatchResult([], [rejection]), 0)

    # -- streams --------------------------------------------------------------------------------------
    def known_meters(self, muids: Iterable[str]) -> set[str]:
        with self.engine.connect() as connection:
            return repository.known_meters(connection, sorted(set(muids)))

    def register_meters(self, muids: Iterable[str]) -> None:
        with self.engine.begin() as connection:
            repository.register_meters(connection, sorted(set(muids)))


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
