"""PostgreSQL binary COPY encoding of reading blocks, built with numpy in one pass per block.

A block is one channel's readings with the same quality and measurement, so every row has the same
layout and a block becomes a single structured array: no per-row Python work on the write path.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable

import numpy as np

from ingest_service.validation import ColumnBlock

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
PG_EPOCH_UNIX_SECONDS = 946_684_800  # 2000-01-01T00:00:00Z, the zero of PostgreSQL's timestamps

# columns, in order: muid uuid, obis text, ts timestamptz, value float8, quality text, measurement text
# [, ingest_run_id int8 when a run id is given]
COLUMNS = "muid, obis, ts, value, quality, measurement"
COLUMNS_WITH_RUN = COLUMNS + ", ingest_run_id"


def _row_dtype(obis: bytes, quality: bytes, measurement: bytes, with_run: bool) -> np.dtype:
    fields: list[tuple[str, str]] = [("fields", ">i2"), ("muid_len", ">i4"), ("muid", "S16")]
    for name, data in (("obis", obis),):
        fields += [(f"{name}_len", ">i4"), (name, f"S{len(data)}")]
    fields += [("ts_len", ">i4"), ("ts", ">i8"), ("value_len", ">i4"), ("value", ">f8")]
    for name, data in (("quality", quality), ("measurement", measurement)):
        fields.append((f"{name}_len", ">i4"))
        if data:  # an empty text is a length of 0 and no bytes
            fields.append((name, f"S{len(data)}"))
    if with_run:
        fields += [("run_len", ">i4"), ("run", ">i8")]
    return np.dtype(fields)


def encode_block(block: ColumnBlock, run_id: int | None = None) -> bytes:
    obis, quality, measurement = block.obis.encode(), block.quality.encode(), block.measurement.encode()
    rows = np.empty(len(block.ts), dtype=_row_dtype(obis, quality, measurement, run_id is not None))
    rows["fields"] = 6 if run_id is None else 7
    if run_id is not None:
        rows["run_len"], rows["run"] = 8, run_id
    rows["muid_len"], rows["muid"] = 16, uuid.UUID(block.muid).bytes
    rows["obis_len"], rows["obis"] = len(obis), obis
    rows["ts_len"], rows["ts"] = 8, (block.ts.astype(np.int64) - PG_EPOCH_UNIX_SECONDS) * 1_000_000
    rows["value_len"], rows["value"] = 8, block.values
    for name, data in (("quality", quality), ("measurement", measurement)):
        rows[f"{name}_len"] = len(data)
        if data:
            rows[name] = data
    return rows.tobytes()


def encode_blocks(blocks: Iterable[ColumnBlock], run_id: int | None = None) -> bytes:
    return b"".join([SIGNATURE, *(encode_block(block, run_id) for block in blocks), TRAILER])
