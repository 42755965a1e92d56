"""Vectorised JSON-lines rendering of Arrow tables (no per-row Python).

Each field becomes a string column of `"name":value` fragments built with Arrow compute;
null fields are left out of the object. Generated strings never need JSON escaping (ids,
labels and lowercase words; `check_json_safe` checks the sources they are drawn from).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.synth.schemas import EPOCH_MS

MS_PER_DAY = 86_400_000
BATCH_ROWS = 131_072
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def check_json_safe(name: str, values: pa.StringArray) -> None:
    """Raise if any value would need escaping inside a JSON string."""
    if pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        raise ValueError(f"{name} holds text that needs JSON escaping")


@cache
def _clock_strings() -> tuple[pa.StringArray, pa.StringArray]:
    """'HH:MM:SS' for every second of a day, and '.mmmZ' for every millisecond."""
    seconds = pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)])
    millis = pa.array([f".{m:03d}Z" for m in range(1000)])
    return seconds, millis


def iso_utc(epoch_ms: np.ndarray) -> pa.StringArray:
    """ISO-8601 UTC strings with milliseconds, e.g. 2026-01-01T13:05:09.120Z."""
    day, in_day = np.divmod(epoch_ms, MS_PER_DAY)
    days, day_index = np.unique(day, return_inverse=True)
    prefixes = pa.array([f"{np.datetime64(int(d), 'D')}T" for d in days])
    seconds, millis = _clock_strings()
    return pc.binary_join_element_wise(
        pc.take(prefixes, pa.array(day_index)),
        pc.take(seconds, pa.array(in_day // 1000)),
        pc.take(millis, pa.array(in_day % 1000)),
        "",
    )


def _timestamp_text(column: pa.Array, epoch_ms: pa.BooleanArray | None) -> pa.Array:
    """Quoted ISO-8601 text, or epoch milliseconds where `epoch_ms` is set; null stays null."""
    millis = pc.divide(pc.cast(column, pa.int64()), 1000)
    values = millis.fill_null(0).to_numpy()
    text = pc.binary_join_element_wise('"', iso_utc(values), '"', "")
    if epoch_ms is not None:
        text = pc.if_else(epoch_ms, pc.cast(millis, pa.string()), text)
    return pc.if_else(column.is_valid(), text, pa.scalar(None, pa.string()))


def _fragment(name: str, column: pa.Array, epoch_ms: pa.BooleanArray | None) -> pa.Array:
    """`"name":value` per row, null where the value is null (the key is then left out)."""
    kind = column.type
    key = f'"{name}":'
    if pa.types.is_string(kind):
        return pc.binary_join_element_wise(key + '"', column, '"', "")
    if pa.types.is_timestamp(kind):
        return pc.binary_join_element_wise(key, _timestamp_text(column, epoch_ms), "")
    if pa.types.is_struct(kind):
        children = [(kind.field(i).name, column.field(i)) for i in range(kind.num_fields)]
        text = pc.binary_join_element_wise(key + "{", _object_body(children, None), "}", "")
        return (
            text
            if column.null_count == 0
            else pc.if_else(column.is_valid(), text, pa.scalar(None, pa.string()))
        )
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.binary_join_element_wise(key, pc.cast(column, pa.string()), "")
    raise TypeError(f"column {name!r}: no JSON rendering for {kind}")


def _object_body(
    fields: list[tuple[str, pa.Array]], epoch_ms: pa.BooleanArray | None
) -> pa.StringArray:
    fragments = [_fragment(name, column, epoch_ms) for name, column in fields]
    return pc.binary_join_element_wise(*fragments, ",", null_handling="skip")


def render_json_lines(batch: pa.RecordBatch) -> pa.StringArray:
    """One JSON object per row, each ending in a newline; hidden `_` columns steer rendering."""
    epoch_ms = batch.column(EPOCH_MS) if EPOCH_MS in batch.schema.names else None
    fields = [(name, batch.column(name)) for name in batch.schema.names if not name.startswith("_")]
    body = _object_body(fields, epoch_ms)
    return pc.binary_join_element_wise("{", body, "}\n", "")


def batches(table: pa.Table, rows: int = BATCH_ROWS) -> Iterable[pa.RecordBatch]:
    """The table as record batches of at most `rows` rows."""
    return table.combine_chunks().to_batches(max_chunksize=rows)


def utf8_bytes(lines: pa.StringArray) -> memoryview:
    """The concatenated UTF-8 bytes of a string array without nulls (zero-copy)."""
    if lines.null_count:
        raise ValueError("cannot write null lines")
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(data)[bounds[0] : bounds[-1]]


def write_json_lines(path: Path, chunks: Iterable[pa.StringArray]) -> int:
    """Write rendered lines to `path`; returns the number of bytes written."""
    size = 0
    with open(path, "wb") as out:
        for lines in chunks:
            size += out.write(utf8_bytes(lines))
    return size
