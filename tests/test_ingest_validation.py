"""Record validation as pure logic (no server): every rule names its field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest_service.upstream import UpstreamError, parse_payload
from ingest_service.validation import RecordError, parse_record, validate_records

MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"


def rec(**changes: object) -> dict:
    record = {
        "measurement": "energy",
        "timestamp": "2023-02-28T23:45:00.000Z",
        "tags": {"muid": MUID, "quality": "measured"},
        "0100011D00FF": 0.0117,
    }
    record.update(changes)
    return record


def test_a_published_record_parses_to_utc() -> None:
    [reading] = parse_record(rec(), ceiling=100)
    assert (reading.muid, reading.obis, reading.ts, reading.value) == (
        MUID,
        "0100011D00FF",
        datetime(2023, 2, 28, 23, 45, tzinfo=UTC),
        0.0117,
    )


def test_offsets_are_normalised_and_integers_accepted() -> None:
    [reading] = parse_record(rec(timestamp="2023-03-01T00:45:00+01:00", **{"0100011D00FF": 0}), ceiling=100)
    assert reading.ts == datetime(2023, 2, 28, 23, 45, tzinfo=UTC) and reading.value == 0.0


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ([1, 2], "record"),
        ({"timestamp": "2023-02-28T23:45:00Z", "tags": {}}, "measurement"),
        (rec(tags="x"), "tags"),
        (rec(tags={"quality": "measured"}), "tags.muid"),
        (rec(tags={"muid": MUID, "quality": 3}), "tags.quality"),
        (rec(measurement=None), "measurement"),
        (rec(timestamp=12), "timestamp"),
        (rec(timestamp="yesterday"), "timestamp"),
        (rec(**{"0100011D00FF": True}), "0100011D00FF"),
        (rec(**{"0100011D00FF": float("inf")}), "0100011D00FF"),
        (rec(extra=1), "extra"),
        ({"measurement": "energy", "timestamp": "2023-02-28T23:45:00Z", "tags": {"muid": MUID}}, "value"),
    ],
)
def test_each_rule_names_its_field(record: object, field: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_record(record, ceiling=100)
    assert caught.value.field == field


def test_wrong_meter_in_a_meter_file_is_rejected() -> None:
    with pytest.raises(RecordError, match="does not match the requested meter"):
        parse_record(rec(), ceiling=100, expected_muid="1db7649e-9342-4e04-97c7-f0ebb88ed1f8")


def test_positions_count_from_the_offset() -> None:
    result = validate_records([rec(), rec(timestamp="bad")], ceiling=100, expected_muid=MUID, offset=5000)
    assert len(result.readings) == 1 and result.rejections[0].position == 5001


def test_payload_shape_errors_say_what_arrived() -> None:
    assert parse_payload("u", b'{"data":[]}') == []
    for body, message in [
        (b"{}", "got a JSON object with keys []"),
        (b'"x"', "got a JSON str"),
        (b"\xff", "not valid JSON"),
    ]:
        with pytest.raises(UpstreamError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_payload("u", body)
