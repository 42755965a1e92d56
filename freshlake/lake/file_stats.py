"""Delta's per-file statistics (`numRecords`, `nullCount`, `minValues`, `maxValues`).

Built from Parquet footers for the files Spark writes, or batch by batch for the files the
driver writes with pyarrow. Both give the same JSON: null counts of flat columns, bounds of
numeric, date and timestamp columns (timestamps to the millisecond, widened outward). A bound
that cannot be known exactly (a row group without statistics, a NaN) is left out, never guessed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet file written inside a table, described as its Delta Add action needs."""

    path: str  # relative to the table root, not URI-encoded (delta-rs encodes it in the log)
    size: int
    partition_values: dict[str, str | None]
    num_records: int
    stats: str  # Delta stats JSON
    modification_time: int  # epoch milliseconds


def stats_value(value: object, *, round_up: bool = False) -> object:
    """JSON form of a min/max statistic; timestamps are kept to milliseconds, widened outward."""
    if isinstance(value, datetime):
        truncated = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if round_up and truncated != value:
            truncated += timedelta(milliseconds=1)
        return truncated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def stats_json(
    rows: int, nulls: dict[str, int], mins: dict[str, object], maxs: dict[str, object]
) -> str:
    """The stats JSON of a file with `rows` rows."""
    return json.dumps(
        {
            "numRecords": rows,
            "minValues": {k: stats_value(v) for k, v in mins.items()},
            "maxValues": {k: stats_value(v, round_up=True) for k, v in maxs.items()},
            "nullCount": nulls,
        },
        default=str,
    )


def has_bounds(t: pa.DataType) -> bool:
    """Whether Delta stats carry min/max for a column of this type here."""
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
    )


def is_flat(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_map(t))


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


class StatsAccumulator:
    """Stats of a file being written batch by batch with pyarrow."""

    def __init__(self, schema: pa.Schema):
        self.rows = 0
        self.nulls: dict[str, int] = {f.name: 0 for f in schema if is_flat(f.type)}
        self.mins: dict[str, object] = {}
        self.maxs: dict[str, object] = {}
        self.unbounded: set[str] = set()  # columns with a NaN: no safe bounds

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            column = batch.column(name)
            self.nulls[name] += column.null_count
            if not has_bounds(column.type) or column.null_count == len(column):
                continue
            if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
                self.unbounded.add(name)
                continue
            bounds = pc.min_max(column).as_py()
            lo, hi = bounds["min"], bounds["max"]
            if name not in self.mins or lo < self.mins[name]:
                self.mins[name] = lo
            if name not in self.maxs or hi > self.maxs[name]:
                self.maxs[name] = hi

    def to_json(self) -> str:
        def bounded(values: dict[str, object]) -> dict[str, object]:
            return {k: v for k, v in values.items() if k not in self.unbounded}

        return stats_json(self.rows, self.nulls, bounded(self.mins), bounded(self.maxs))


def footer_stats(metadata: pq.FileMetaData, schema: pa.Schema) -> str:
    """The stats JSON of a Parquet file from its footer, for the columns of `schema` it holds."""
    index = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    nulls: dict[str, int] = {}
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for field in schema:
        if not is_flat(field.type) or field.name not in index:
            continue
        chunks = [
            metadata.row_group(g).column(index[field.name]) for g in range(metadata.num_row_groups)
        ]
        stats = [chunk.statistics for chunk in chunks]
        if all(s is not None and s.has_null_count for s in stats):
            nulls[field.name] = sum(s.null_count for s in stats)
        if has_bounds(field.type):
            bounds = _chunk_bounds(chunks)
            if bounds:
                mins[field.name] = min(lo for lo, _ in bounds)
                maxs[field.name] = max(hi for _, hi in bounds)
    return stats_json(metadata.num_rows, nulls, mins, maxs)


def _chunk_bounds(chunks: list[pq.ColumnChunkMetaData]) -> list[tuple[object, object]] | None:
    """(min, max) of every column chunk holding values; None when one of them is unknown."""
    bounds = []
    for chunk in chunks:
        stats = chunk.statistics
        if stats is not None and stats.has_min_max:
            if _is_nan(stats.min) or _is_nan(stats.max):
                return None
            bounds.append((stats.min, stats.max))
        elif stats is None or not stats.has_null_count or stats.null_count < chunk.num_values:
            return None  # values without bounds: nothing safe to say
    return bounds
