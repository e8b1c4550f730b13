"""PostgreSQL binary COPY encoding of reading blocks (and of their hourly rollup rows), built with numpy
in one pass per block.

A block is one channel's readings with the same quality and measurement, so every row has the same
layout and a block becomes a single structured array: no per-row Python work on the write path.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ingest_service.validation import ColumnBlock

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
PG_EPOCH_UNIX_SECONDS = 946_684_800  # 2000-01-01T00:00:00Z, the zero of PostgreSQL's timestamps

# columns, in order: muid uuid, obis text, ts timestamptz, value float8, quality text, measurement text
# [, ingest_run_id int8 when a run id is given]
COLUMNS = "muid, obis, ts, value, quality, measurement"
COLUMNS_WITH_RUN = COLUMNS + ", ingest_run_id"


def encode_block(block: ColumnBlock, run_id: int | None = None) -> bytes:
    columns: list[tuple[str, Any]] = [
        ("bytes", uuid.UUID(block.muid).bytes), ("bytes", block.obis.encode()), (">i8", pg_timestamps(block.ts)),
        (">f8", block.values), ("bytes", block.quality.encode()), ("bytes", block.measurement.encode()),
    ]  # fmt: skip
    if run_id is not None:
        columns.append((">i8", run_id))
    return encode_rows(len(block.ts), columns)


def encode_blocks(blocks: Iterable[ColumnBlock], run_id: int | None = None) -> bytes:
    return b"".join([SIGNATURE, *(encode_block(block, run_id) for block in blocks), TRAILER])


def encode_rows(count: int, columns: Sequence[tuple[str, Any]]) -> bytes:
    """`count` rows of a binary COPY body (no signature or trailer). Each column is (kind, values): kind
    is a big-endian numpy type (`>i4`, `>i8`, `>f8`) with an array or a constant, or `bytes` with one
    constant (a UUID's 16 bytes, an encoded text)."""
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for index, (kind, value) in enumerate(columns):
        fields.append((f"len{index}", ">i4"))
        if kind != "bytes" or value:  # an empty text is a length of 0 and no bytes
            fields.append((f"col{index}", f"S{len(value)}" if kind == "bytes" else kind))
    rows = np.empty(count, dtype=np.dtype(fields))
    rows["fields"] = len(columns)
    for index, (kind, value) in enumerate(columns):
        rows[f"len{index}"] = len(value) if kind == "bytes" else np.dtype(kind).itemsize
        if kind != "bytes" or value:
            rows[f"col{index}"] = value
    return rows.tobytes()


def pg_timestamps(unix_seconds: np.ndarray) -> np.ndarray:
    """Unix seconds as PostgreSQL timestamps: microseconds since 2000-01-01 UTC."""
    return (unix_seconds.astype(np.int64) - PG_EPOCH_UNIX_SECONDS) * 1_000_000


def copy_body(parts: Iterable[bytes]) -> bytes:
    return b"".join([SIGNATURE, *parts, TRAILER])
