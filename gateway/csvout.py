"""Streamed CSV bodies: a header row, then rows as the backend pages arrive."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from fastapi.responses import StreamingResponse

log = logging.getLogger("gateway.csv")


def _line(row: Iterable[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode()


def csv_response(header: list[str], rows: AsyncIterator[list[list[Any]]], filename: str) -> StreamingResponse:
    """`rows` yields batches of rows (one per backend page). A backend failing after the first batch
    can only cut the body short: the status line is gone by then, so it is logged."""

    async def body() -> AsyncIterator[bytes]:
        yield _line(header)
        try:
            async for batch in rows:
                yield b"".join(_line(row) for row in batch)
        except Exception:
            log.exception("CSV stream cut short", extra={"fields": {"file": filename}})
            raise

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def unit_column(name: str, unit: str) -> str:
    """`value_kWh`: the unit travels in the column name."""
    return f"{name}_{unit}" if unit else name


async def paged_rows(
    first: Any, next_page: Callable[[str], Awaitable[Any]], to_rows: Callable[[Any], list[list[Any]]]
) -> AsyncIterator[list[list[Any]]]:
    """The rows of `first` and of every page after it: `next_page(token)` fetches the page a
    `next_page_token` points to, until a page has none."""
    page = first
    while True:
        yield to_rows(page)
        if not page.next_page_token:
            return
        page = await next_page(page.next_page_token)
