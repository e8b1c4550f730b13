"""Response and request models: the OpenAPI contract, each with a description and an example.

Routes build plain dicts (cheap for 10,000 readings) and the contract tests validate real answers
against these models, so the document and the wire format cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from gateway.params import IMPORT_MUID, IMPORT_OBIS

EXPORT_MUID = "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"


def _example(example: dict) -> ConfigDict:  # type: ignore[type-arg]
    return ConfigDict(json_schema_extra={"examples": [example]})


CHANNEL_EXAMPLE = {
    "obis": IMPORT_OBIS,
    "obis_notation": "1-0:1.29.0*255",
    "name": "Active energy import (+A) per period",
    "direction": "import",
    "unit": "kWh",
    "first_reading": "2023-02-01T01:00:00+01:00",
    "last_reading": "2023-03-01T00:45:00+01:00",
    "reading_count": 2688,
}
METER_EXAMPLE = {
    "muid": IMPORT_MUID,
    "tenant": "default",
    "first_reading": "2023-02-01T01:00:00+01:00",
    "last_reading": "2023-03-01T00:45:00+01:00",
    "reading_count": 2688,
    "channels": [CHANNEL_EXAMPLE],
}
BUCKET_EXAMPLE = {
    "start": "2023-02-02T00:00:00+01:00",
    "end": "2023-02-03T00:00:00+01:00",
    "value": 4.0253,
    "count": 96,
    "expected": 96,
}
RUN_EXAMPLE = {
    "id": 1,
    "kind": "pull",
    "status": "succeeded",
    "source": "https://exnaton-public-s3-bucket20230329123331528000000001.s3.eu-central-1.amazonaws.com",
    "muids": [IMPORT_MUID, EXPORT_MUID],
    "started_at": "2023-03-01T09:00:00.120000+01:00",
    "finished_at": "2023-03-01T09:00:01.480000+01:00",
    "received": 5376,
    "inserted": 5376,
    "updated": 0,
    "unchanged": 0,
    "rejected": 0,
    "error": "",
}


class InvalidParam(BaseModel):
    name: str = Field(description="The query, path or body parameter at fault.")
    reason: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An error (RFC 9457 problem details), served as `application/problem+json`."""

    model_config = _example(
        {
            "type": "about:blank",
            "title": "Invalid parameter",
            "status": 400,
            "detail": "tz: unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Zurich' or 'UTC'",
            "instance": f"/api/v1/meters/{IMPORT_MUID}/series",
            "invalid_params": [{"name": "tz", "reason": "unknown time zone 'Mars/Olympus'"}],
        }
    )
    type: str = Field(description="Always `about:blank`: `status` and `title` say what happened.")
    title: str = Field(description="Short summary of the status.")
    status: int = Field(description="The HTTP status code, repeated.")
    detail: str = Field(
        description="Human-readable explanation, starting with the parameter's name when one is at fault."
    )
    instance: str = Field(description="The request path.")
    invalid_params: list[InvalidParam] | None = Field(None, description="The parameters at fault (400, 404).")
    code: str | None = Field(None, description="The backend's gRPC status name, when a backend answered the error.")
    backend: str | None = Field(None, description="The backend service involved (`query`, `ingest`, `analytics`).")


class Channel(BaseModel):
    model_config = _example(CHANNEL_EXAMPLE)
    obis: str = Field(description="OBIS code in hex, as delivered by the meter.")
    obis_notation: str = Field(description="The same code in IEC 62056-61 notation.")
    name: str = Field(description="What the channel measures.")
    direction: Literal["import", "export"] | None = Field(
        description="`import`: energy drawn from the grid (+A); `export`: energy fed into the grid (-A)."
    )
    unit: str = Field(description="Unit of each reading, `kWh` per quarter-hour for energy channels.")
    first_reading: datetime | None = Field(description="Start of the first quarter-hour with a reading.")
    last_reading: datetime | None = Field(
        description="Start of the last quarter-hour with a reading (its period ends 15 minutes later)."
    )
    reading_count: int = Field(description="Number of readings stored.")


class Meter(BaseModel):
    model_config = _example(METER_EXAMPLE)
    muid: str = Field(description="Meter UUID.")
    tenant: str = Field(description="Owner of the meter.")
    first_reading: datetime | None = Field(description="Earliest reading over all channels.")
    last_reading: datetime | None = Field(description="Start of the latest quarter-hour read over all channels.")
    reading_count: int = Field(description="Readings over all channels.")
    channels: list[Channel] = Field(description="The meter's channels, one per OBIS code.")


class MeterDetail(Meter):
    model_config = _example({**METER_EXAMPLE, "time_zone": "Europe/Zurich"})
    time_zone: str = Field(description="The zone the times are rendered in.")


class MeterList(BaseModel):
    model_config = _example({"time_zone": "Europe/Zurich", "meters": [METER_EXAMPLE], "next_page_token": None})
    time_zone: str = Field(description="The zone the times are rendered in.")
    meters: list[Meter] = Field(description="Meters ordered by `muid`.")
    next_page_token: str | None = Field(description="Pass as `page_token` for the next page; null on the last page.")


class Reading(BaseModel):
    model_config = _example({"ts": "2023-02-01T01:00:00+01:00", "value": 0.0195, "quality": "measured"})
    ts: datetime = Field(description="Start of the quarter-hour period.")
    value: float = Field(description="Energy in the period, in the page's `unit`.")
    quality: str = Field(description="Quality flag from the meter, e.g. `measured`.")


class ReadingPage(BaseModel):
    model_config = _example(
        {
            "muid": IMPORT_MUID,
            "obis": IMPORT_OBIS,
            "unit": "kWh",
            "time_zone": "Europe/Zurich",
            "order": "asc",
            "readings": [
                {"ts": "2023-02-01T01:00:00+01:00", "value": 0.0195, "quality": "measured"},
                {"ts": "2023-02-01T01:15:00+01:00", "value": 0.0184, "quality": "measured"},
            ],
            "next_page_token": "eyJxIjoiMWQ0ZjZlZDg4YTI1YzI0NiIsImFmdGVyIjoiMjAyMy0wMi0wMVQwMDoxNTowMCswMDowMCJ9",
        }
    )
    muid: str
    obis: str = Field(description="The channel the readings belong to.")
    unit: str = Field(description="Unit of `value`.")
    time_zone: str = Field(description="The zone `ts` is rendered in.")
    order: Literal["asc", "desc"]
    readings: list[Reading]
    next_page_token: str | None = Field(description="Pass as `page_token` for the next page; null on the last page.")


class Bucket(BaseModel):
    model_config = _example(BUCKET_EXAMPLE)
    start: datetime = Field(description="Inclusive start, local time with offset.")
    end: datetime = Field(description="Exclusive end, local time with offset.")
    value: float | None = Field(description="The aggregate of the readings in the bucket; null when `count` is 0.")
    count: int = Field(description="Readings found in the bucket.")
    expected: int = Field(
        description="Quarter-hours the bucket spans: 96 for a day, 92 or 100 on DST days, fewer for a clipped bucket. "
        "`count < expected` means readings are missing."
    )


class Series(BaseModel):
    model_config = _example(
        {
            "muid": IMPORT_MUID,
            "obis": IMPORT_OBIS,
            "unit": "kWh",
            "interval": "day",
            "aggregation": "sum",
            "time_zone": "Europe/Zurich",
            "start": "2023-02-02T00:00:00+01:00",
            "end": "2023-02-03T00:00:00+01:00",
            "buckets": [BUCKET_EXAMPLE],
        }
    )
    muid: str
    obis: str = Field(description="The channel aggregated.")
    unit: str = Field(description="Unit of `value`: the channel's (`kWh`), or `readings` for `agg=count`.")
    interval: Literal["15min", "hour", "day", "week", "month"]
    aggregation: Literal["sum", "mean", "min", "max", "count"]
    time_zone: str = Field(description="The zone the buckets are cut and rendered in.")
    start: datetime | None = Field(description="Start of the range covered (null when the meter has no readings).")
    end: datetime | None = Field(description="End of the range covered, exclusive.")
    buckets: list[Bucket] = Field(description="Consecutive buckets covering `[start, end)`, empty ones included.")


class IngestRun(BaseModel):
    model_config = _example(RUN_EXAMPLE)
    id: int
    kind: Literal["pull", "stream"] | None = Field(
        description="`pull` from the upstream API, or `stream` from a producer."
    )
    status: Literal["running", "succeeded", "failed"] | None
    source: str = Field(description="URL pulled, or the stream's peer.")
    muids: list[str] = Field(description="Meters of the run.")
    started_at: datetime | None
    finished_at: datetime | None = Field(description="Null while the run is `running`.")
    received: int = Field(description="Records received.")
    inserted: int = Field(description="New readings stored.")
    updated: int = Field(description="Readings whose value changed (the old value is kept as a revision).")
    unchanged: int = Field(description="Readings received again with the same value.")
    rejected: int = Field(description="Records refused, each kept with its reason.")
    error: str = Field(description="Why a `failed` run stopped; empty otherwise.")


class IngestRunDetail(IngestRun):
    model_config = _example({**RUN_EXAMPLE, "time_zone": "Europe/Zurich"})
    time_zone: str = Field(description="The zone the times are rendered in.")


class IngestRunList(BaseModel):
    model_config = _example({"time_zone": "Europe/Zurich", "runs": [RUN_EXAMPLE], "next_page_token": None})
    time_zone: str
    runs: list[IngestRun] = Field(description="Newest first.")
    next_page_token: str | None


class IngestRunRequest(BaseModel):
    model_config = _example({"muids": [IMPORT_MUID], "full": False})
    muids: list[str] = Field(default_factory=list, description="Meters to pull; empty: every configured meter.")
    full: StrictBool = Field(
        False, description="Fetch everything again instead of only what is newer than the last pull."
    )


class Health(BaseModel):
    model_config = _example({"status": "ok"})
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = _example(
        {"status": "ready", "backends": {"query": "serving", "ingest": "serving", "analytics": "serving"}}
    )
    status: Literal["ready", "not ready"]
    backends: dict[str, str] = Field(description="Each backend's gRPC health: `serving`, or why it is not.")
