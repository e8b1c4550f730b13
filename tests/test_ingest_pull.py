"""Pulls through the real ingest gRPC service, from the real HTTP mirror, into real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine, text

from ingest_service.mirror import Mirror
from meterdata.grpc_client import sync_channel
from meterdata.runner import Topology
from meterdata.v1 import ingest_pb2, ingest_pb2_grpc
from tests.ingest_helpers import PUBLISHED, assert_rollup_exact, raw_facts, stored_facts
from tests.seed import IMPORT_MUID

PAGE_LIMIT = 1000


@pytest.fixture(scope="module")
def ingest(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    env = {"UPSTREAM_BACKOFF_SECONDS": "0.01", "UPSTREAM_RETRIES": "3", "UPSTREAM_PAGE_LIMIT": str(PAGE_LIMIT)}
    topology = Topology.on_free_ports(database_url, tmp_path_factory.mktemp("ingest-logs"), env)
    topology.start(["ingest"])
    with sync_channel(topology.address("ingest"), tenant="default") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)
    topology.stop()


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with Mirror() as server:
        yield server


def pull(
    stub: ingest_pb2_grpc.IngestServiceStub, mirror: Mirror, muids: list[str] | None = None, **kwargs: object
) -> ingest_pb2.IngestRun:
    request = ingest_pb2.PullMetersRequest(muids=muids or [], source_url=mirror.url, wait=True, **kwargs)  # type: ignore[arg-type]
    return stub.PullMeters(request, timeout=60)


def rejections(engine: Engine, run_id: int) -> list[tuple[int, str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT position, field, reason, raw FROM rejected_readings WHERE ingest_run_id = :r ORDER BY position"
            ),
            {"r": run_id},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_published_files_land_exactly_and_a_second_pull_changes_nothing(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    first = pull(ingest, mirror)
    assert first.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED, first.error
    assert (first.received, first.inserted, first.updated, first.unchanged, first.rejected) == (5376, 5376, 0, 0, 0)
    assert mirror.url in first.source
    for muid in PUBLISHED:
        expected, stored = raw_facts(muid), stored_facts(clean_db, muid)
        assert stored["count"] == expected["count"] == 2688
        assert abs(Decimal(repr(stored["sum"])) - expected["sum"]) < Decimal("1e-9")
        assert Decimal(repr(stored["max"])) == expected["max"]
    assert {str(raw_facts(m)["sum"]) for m in PUBLISHED} == {"97.6082", "36.1972500000000004917"}

    assert assert_rollup_exact(clean_db) == 2 * 672
    second = pull(ingest, mirror)
    assert (second.received, second.inserted, second.updated, second.unchanged, second.rejected) == (
        5376,
        0,
        0,
        5376,
        0,
    )
    with clean_db.connect() as connection:
        channels = connection.execute(
            text("SELECT muid::text, obis, reading_count, first_ts, last_ts FROM meter_channels ORDER BY obis")
        ).all()
    assert [(c.muid, c.obis, c.reading_count) for c in channels] == [
        (PUBLISHED[0], "0100011D00FF", 2688),
        (PUBLISHED[1], "0100021D00FF", 2688),
    ]
    assert channels[0].first_ts == datetime(2023, 2, 1, tzinfo=UTC)
    assert channels[0].last_ts == datetime(2023, 2, 28, 23, 45, tzinfo=UTC)


def test_changed_value_upstream_is_one_update_with_the_old_value_kept(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    pull(ingest, mirror, [IMPORT_MUID])
    payload = json.loads(mirror.files[IMPORT_MUID])
    target = payload["data"][100]
    old_value = target["0100011D00FF"]
    target["0100011D00FF"] = 0.5
    mirror.set_file(IMPORT_MUID, json.dumps(payload).encode())

    run = pull(ingest, mirror, [IMPORT_MUID])
    assert (run.received, run.inserted, run.updated, run.unchanged) == (2688, 0, 1, 2687)
    with clean_db.connect() as connection:
        revision = connection.execute(
            text("SELECT ts, old_value, new_value, ingest_run_id FROM reading_revisions")
        ).one()
        current = connection.execute(
            text("SELECT value FROM readings WHERE ts = :ts AND muid = :m"), {"ts": revision.ts, "m": IMPORT_MUID}
        ).scalar()
    assert revision.ts == datetime.fromisoformat(target["timestamp"].replace("Z", "+00:00"))
    assert assert_rollup_exact(clean_db) == 672  # 28 days x 24 hours, the revised hour recomputed
    assert (revision.old_value, revision.new_value, revision.ingest_run_id, current) == (old_value, 0.5, run.id, 0.5)


def test_api_pull_pages_by_limit_and_resumes_from_the_watermark(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    first = pull(ingest, mirror, [IMPORT_MUID], source_kind=ingest_pb2.SOURCE_KIND_API)
    assert (first.received, first.inserted) == (2688, 2688)
    api_requests = [r for r in mirror.requests if r.startswith("/meterdata/measurement")]
    assert len(api_requests) == -(-2688 // PAGE_LIMIT)  # 3 pages of at most 1000
    assert stored_facts(clean_db, IMPORT_MUID)["count"] == 2688

    mirror.requests.clear()
    second = pull(ingest, mirror, [IMPORT_MUID], source_kind=ingest_pb2.SOURCE_KIND_API)
    assert (second.received, second.inserted) == (0, 0)
    assert len(mirror.requests) == 1 and "start=2023-03-01T00%3A00%3A00Z" in mirror.requests[0]

    full = pull(ingest, mirror, [IMPORT_MUID], source_kind=ingest_pb2.SOURCE_KIND_API, full=True)
    assert (full.received, full.unchanged) == (2688, 2688)


BAD_MUID = "00000000-0000-4000-8000-00000000b0d1"


def record(ts: str, value: object, muid: str = BAD_MUID, key: str = "0100011D00FF") -> dict:
    return {"measurement": "energy", "timestamp": ts, "tags": {"muid": muid, "quality": "measured"}, key: value}


def test_each_bad_record_is_kept_with_its_reason_and_the_rest_lands(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    good = [record(f"2023-03-01T{h:02d}:00:00.000Z", 0.25) for h in range(10)]
    bad = [
        (record("2023-03-02T00:00:00Z", 0.1, muid="not-a-uuid"), "tags.muid", "not a UUID"),
        (record("2023-03-02T00:07:00Z", 0.1), "timestamp", "15-minute grid"),
        (record("2023-03-02T00:15:00", 0.1), "timestamp", "no time zone"),
        (record("2023-03-02T00:30:00Z", float("nan")), "0100011D00FF", "finite"),
        (record("2023-03-02T00:45:00Z", -0.2), "0100011D00FF", ">= 0"),
        (record("2023-03-02T01:00:00Z", "0.5"), "0100011D00FF", "must be a number"),
        (record("2023-03-02T01:15:00Z", 0.1, key="0100991D00FF"), "0100991D00FF", "unknown OBIS"),
        (record("2023-03-01T03:00:00.000Z", 0.3), "timestamp", "duplicate of the record at position 3"),
        (record("2023-03-02T01:30:00Z", 5000.0), "0100011D00FF", "plausible maximum"),
    ]
    mirror.set_file(BAD_MUID, json.dumps({"data": good + [b for b, _, _ in bad]}).encode())
    run = pull(ingest, mirror, [BAD_MUID])
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED
    assert (run.received, run.inserted, run.rejected) == (19, 10, 9)
    stored = rejections(clean_db, run.id)
    assert [s[0] for s in stored] == list(range(10, 19))
    for (position, field, reason, raw), (bad_record, want_field, want_reason) in zip(stored, bad, strict=True):
        assert field == want_field, (position, reason)
        assert want_reason in reason, (position, reason)
        assert json.loads(raw)["timestamp"] == bad_record["timestamp"]  # the raw record is kept
    assert stored_facts(clean_db, BAD_MUID)["sum"] == pytest.approx(2.5)
    listed = ingest.ListRejectedReadings(
        ingest_pb2.ListRejectedReadingsRequest(ingest_run_id=run.id, page_size=5), timeout=5
    )
    assert len(listed.rejected) == 5 and listed.next_page_token


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'[{"measurement":"energy"}]', "application/json", 'body must be {"data": [...]}, got a JSON list'),
        (b"<html><body>Service maintenance</body></html>", "text/html", "body is not valid JSON"),
        (b'{"data":[{"measurement":"energy","timestamp":"2023-', "application/json", "body is not valid JSON"),
    ],
    ids=["bare-list", "html", "truncated"],
)
def test_unusable_bodies_fail_the_meter_clearly_and_are_kept(
    ingest, mirror, clean_db, body, content_type, message
) -> None:  # type: ignore[no-untyped-def]
    mirror.inject(f"/challenge/{BAD_MUID}", 200, body, content_type)
    mirror.set_file(BAD_MUID, b'{"data":[]}')
    run = pull(ingest, mirror, [BAD_MUID, IMPORT_MUID])
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_FAILED
    assert message in run.error and BAD_MUID in run.error
    assert run.inserted == 2688  # the other meter still landed
    [(position, field, reason, raw)] = rejections(clean_db, run.id)
    assert (position, field, raw.encode()) == (-1, "body", body)
    assert message in reason


def test_http_500_is_retried_and_404_is_not(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    mirror.inject(f"/challenge/{IMPORT_MUID}", 500, b"internal error", times=2)
    run = pull(ingest, mirror, [IMPORT_MUID])
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_SUCCEEDED and run.inserted == 2688
    assert len(mirror.requests) == 3

    mirror.requests.clear()
    missing = str(uuid.UUID(int=7))
    run = pull(ingest, mirror, [missing])
    assert run.status == ingest_pb2.INGEST_RUN_STATUS_FAILED
    assert "HTTP 404" in run.error
    assert len(mirror.requests) == 1  # no retry storm on a client error


def test_bad_requests_are_invalid_argument_naming_the_field(ingest) -> None:  # type: ignore[no-untyped-def]
    from meterdata.grpc_client import field_violations

    cases = [
        (lambda: ingest.PullMeters(ingest_pb2.PullMetersRequest(muids=["nope"]), timeout=5), "muids[0]"),
        (lambda: ingest.PullMeters(ingest_pb2.PullMetersRequest(source_url="ftp://x"), timeout=5), "source_url"),
        (lambda: ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=0), timeout=5), "id"),
        (
            lambda: ingest.ListIngestRuns(ingest_pb2.ListIngestRunsRequest(page_token="garbage!"), timeout=5),
            "page_token",
        ),
        (lambda: ingest.ListIngestRuns(ingest_pb2.ListIngestRunsRequest(page_size=100000), timeout=5), "page_size"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value)[0][0] == field
        assert caught.value.details().startswith(field)
    with pytest.raises(grpc.RpcError) as caught:
        ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=10**9), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_runs_are_listed_newest_first_with_pages(ingest, mirror, clean_db) -> None:  # type: ignore[no-untyped-def]
    ids = [pull(ingest, mirror, [IMPORT_MUID]).id for _ in range(3)]
    page = ingest.ListIngestRuns(ingest_pb2.ListIngestRunsRequest(page_size=2), timeout=5)
    assert [r.id for r in page.runs] == ids[::-1][:2]
    rest = ingest.ListIngestRuns(
        ingest_pb2.ListIngestRunsRequest(page_size=2, page_token=page.next_page_token), timeout=5
    )
    assert [r.id for r in rest.runs] == ids[:1] and not rest.next_page_token
    assert ingest.GetIngestRun(ingest_pb2.GetIngestRunRequest(id=ids[0]), timeout=5).received == 2688


def test_operator_cli_pulls_with_a_summary(database_url, mirror, clean_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from meterdata import PROJECT_ROOT

    env = dict(os.environ, DATABASE_URL=database_url, COLUMNS="120")
    result = subprocess.run(
        [sys.executable, "-m", "ingest_service", "pull", "--source", mirror.url, "--muid", IMPORT_MUID],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"source: {mirror.url} (given)" in result.stdout
    assert "2,688" in result.stdout and "succeeded" in result.stdout
    assert stored_facts(clean_db, IMPORT_MUID)["count"] == 2688
