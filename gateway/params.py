"""HTTP query parameters: their documentation (description + example), parsing of times and zones.

Shared by every route so that `start`, `end` and `tz` mean the same everywhere and the OpenAPI
document carries a description and an example for each of them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Path, Query

from gateway.problems import InvalidParameter

# Integer parameters travel in protobuf int32/int64 fields: bounding them here makes a huge value a 400
# naming the parameter instead of an overflow while the request is built.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

IMPORT_MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"
IMPORT_OBIS = "0100011D00FF"

TIME_RULES = (
    "ISO 8601: a date (`2023-02-01`, local midnight in `tz`), a local date-time (`2023-02-01T06:00`, "
    "read in `tz`) or an instant with offset (`2023-02-01T05:00:00Z`, `2023-02-01T06:00:00+01:00`; "
    "write `+` as `%2B` in a URL, a space in its place is accepted too)."
)

MuidPath = Annotated[
    str,
    Path(description="The meter's UUID (`muid`), as listed by `GET /api/v1/meters`.", examples=[IMPORT_MUID]),
]
Obis = Annotated[
    str | None,
    Query(
        description="The channel's OBIS code, hex (`0100011D00FF`) or notation (`1-0:1.29.0*255`). "
        "May be omitted when the meter has exactly one channel.",
        examples=[IMPORT_OBIS],
    ),
]
Start = Annotated[
    str | None,
    Query(
        description="Inclusive start of the range. " + TIME_RULES + " Default: the meter's first reading "
        "(for series: the start of the bucket that holds it).",
        examples=["2023-02-01"],
    ),
]
End = Annotated[
    str | None,
    Query(
        description="Exclusive end of the range, same forms as `start`; must be after `start`. Default: just "
        "after the meter's last reading (for series: the end of the bucket that holds it).",
        examples=["2023-03-01"],
    ),
]
Tz = Annotated[
    str | None,
    Query(
        description="IANA time zone used to read naive `start`/`end`, to cut local buckets and to render every "
        "time in the answer with its offset. Default: the server's `DEFAULT_TIME_ZONE` (`Europe/Zurich`).",
        examples=["Europe/Zurich"],
    ),
]
PageToken = Annotated[
    str | None,
    Query(
        description="Opaque token from the previous page's `next_page_token`; repeat all other parameters unchanged.",
        examples=["eyJxIjoiMWQ0ZjZlZDg4YTI1YzI0NiIsImFmdGVyIjoiMjAyMy0wMi0wMVQwMDoxNTowMCswMDowMCJ9"],
    ),
]
Format = Annotated[
    Literal["json", "csv"],
    Query(
        description="`json` (default) or `csv`: a streamed `text/csv` body with a header row; value columns "
        "carry the unit in their name (`value_kWh`).",
        examples=["csv"],
    ),
]

_OFFSET_LOST_PLUS = re.compile(r"(.*\d[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)")


def parse_zone(name: str | None, default: str) -> ZoneInfo:
    value = name if name is not None else default
    try:
        if not value or value != value.strip() or value.startswith(("/", ".")):
            raise ValueError(value)
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidParameter(
            "tz", f"unknown time zone {value!r}: use an IANA name such as 'Europe/Zurich' or 'UTC'"
        ) from None


def parse_time(value: str | None, zone: ZoneInfo, parameter: str) -> datetime | None:
    """An instant in UTC; dates are local midnight in `zone`, naive times are local wall-clock times in `zone`.

    A naive time the spring-forward jump skips is read with the offset from before the jump; an
    ambiguous one (the repeated autumn hour) is its first occurrence.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if match := _OFFSET_LOST_PLUS.fullmatch(text):  # '+01:00' arrived as ' 01:00' (unencoded '+')
        text = f"{match.group(1)}+{match.group(2)}"
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            parsed = datetime(day.year, day.month, day.day)
        else:
            parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidParameter(parameter, f"not an ISO 8601 date or date-time: {value!r}") from None


def render(instant: datetime, zone: ZoneInfo) -> str:
    """ISO 8601 with the local offset of `zone`."""
    return instant.astimezone(zone).isoformat()
