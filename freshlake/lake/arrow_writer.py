"""Parquet files written by Spark tasks, described for a driver-side Delta commit.

Each task writes its rows under `<table>/<col>=<value>/part-<uuid>-<n>.snappy.parquet` with
pyarrow and yields one metadata row per file (path relative to the table, size, partition values,
Delta statistics). Only the metadata of successful task attempts reaches the driver, so a
retried or failed attempt leaves at most an unreferenced file, never a half-visible one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql.types import LongType, StringType, StructField, StructType

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
MAX_ROWS_PER_FILE = 2_000_000

FILE_METADATA_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("size", LongType(), False),
        StructField("partition_values", StringType(), False),  # JSON object
        StructField("num_records", LongType(), False),
        StructField("stats", StringType(), False),  # Delta stats JSON
        StructField("modification_time", LongType(), False),
    ]
)


def partition_value_string(value: object) -> str | None:
    """How Delta stores a partition value in the log: a string, None for null."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _partition_dir(columns: Sequence[str], values: Sequence[str | None]) -> str:
    parts = [
        f"{col}={NULL_PARTITION if v is None else quote(v, safe='')}"
        for col, v in zip(columns, values, strict=True)
    ]
    return "/".join(parts)


def _stats_value(value: object, *, round_up: bool = False) -> object:
    """JSON form of a min/max statistic; timestamps are kept to milliseconds, widened outward."""
    if isinstance(value, datetime):
        truncated = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if round_up and truncated != value:
            truncated += timedelta(milliseconds=1)
        return truncated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN has no order
        return None
    return value


def _has_min_max(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
    )


class _StatsAccumulator:
    """Delta file statistics (numRecords, nullCount, minValues, maxValues) built batch by batch."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self.nulls: dict[str, int] = {f.name: 0 for f in schema if _is_flat(f.type)}
        self.mins: dict[str, object] = {}
        self.maxs: dict[str, object] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            column = batch.column(name)
            self.nulls[name] += column.null_count
            if not _has_min_max(column.type) or column.null_count == len(column):
                continue
            bounds = pc.min_max(column).as_py()
            lo, hi = bounds["min"], bounds["max"]
            if lo is not None and (name not in self.mins or lo < self.mins[name]):
                self.mins[name] = lo
            if hi is not None and (name not in self.maxs or hi > self.maxs[name]):
                self.maxs[name] = hi

    def to_json(self) -> str:
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {k: _stats_value(v) for k, v in self.mins.items()},
                "maxValues": {k: _stats_value(v, round_up=True) for k, v in self.maxs.items()},
                "nullCount": self.nulls,
            },
            default=str,
        )


def _is_flat(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_map(t))


class _OpenFile:
    def __init__(self, fs: pafs.FileSystem, root: str, rel_dir: str, schema: pa.Schema, values):
        self.rel_path = f"{rel_dir}/part-{uuid.uuid4().hex}.snappy.parquet".lstrip("/")
        self.abs_path = f"{root}/{self.rel_path}"
        fs.create_dir(self.abs_path.rsplit("/", 1)[0], recursive=True)
        self.writer = pq.ParquetWriter(self.abs_path, schema, filesystem=fs, compression="snappy")
        self.stats = _StatsAccumulator(schema)
        self.values = values

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.stats.add(batch)


def make_task_writer(
    table_uri: str,
    partition_by: Sequence[str],
    file_schema: pa.Schema,
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A `mapInArrow` function writing a task's rows as Parquet files, yielding file metadata."""
    partition_by = list(partition_by)

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs, root = pafs.FileSystem.from_uri(table_uri)
        open_files: dict[tuple[str | None, ...], _OpenFile] = {}
        done: list[_OpenFile] = []
        for batch in batches:
            if batch.num_rows == 0:
                continue
            for key, part in _split_by_partition(batch, partition_by):
                data = part.select(file_schema.names).cast(file_schema)
                handle = open_files.get(key)
                if handle is None:
                    handle = _OpenFile(
                        fs, root, _partition_dir(partition_by, key), file_schema, key
                    )
                    open_files[key] = handle
                handle.write(data)
                if handle.stats.rows >= max_rows_per_file:
                    handle.writer.close()
                    done.append(open_files.pop(key))
        for handle in open_files.values():
            handle.writer.close()
            done.append(handle)
        if done:
            yield _describe(fs, done, partition_by)

    return write_partition


def _split_by_partition(
    batch: pa.RecordBatch, partition_by: list[str]
) -> Iterator[tuple[tuple[str | None, ...], pa.RecordBatch]]:
    """Split a batch into one sub-batch per distinct partition key (vectorised, no row loop)."""
    if not partition_by:
        yield (), batch
        return
    distinct = (
        pa.Table.from_batches([batch.select(partition_by)]).group_by(partition_by).aggregate([])
    )
    if distinct.num_rows == 1:
        row = distinct.to_pylist()[0]
        yield tuple(partition_value_string(row[c]) for c in partition_by), batch
        return
    for row in distinct.to_pylist():
        mask = None
        for col in partition_by:
            column = batch.column(col)
            cond = pc.is_null(column) if row[col] is None else pc.equal(column, row[col])
            cond = pc.fill_null(cond, False)
            mask = cond if mask is None else pc.and_(mask, cond)
        yield tuple(partition_value_string(row[c]) for c in partition_by), batch.filter(mask)


def _describe(
    fs: pafs.FileSystem, files: list[_OpenFile], partition_by: list[str]
) -> pa.RecordBatch:
    now_ms = int(time.time() * 1000)
    infos = fs.get_file_info([f.abs_path for f in files])
    return pa.RecordBatch.from_pydict(
        {
            # delta-rs URI-encodes the relative path itself when it writes the log.
            "path": [f.rel_path for f in files],
            "size": [info.size for info in infos],
            "partition_values": [
                json.dumps(dict(zip(partition_by, f.values, strict=True))) for f in files
            ],
            "num_records": [f.stats.rows for f in files],
            "stats": [f.stats.to_json() for f in files],
            "modification_time": [now_ms] * len(files),
        },
        schema=pa.schema(
            [
                ("path", pa.string(), False),
                ("size", pa.int64(), False),
                ("partition_values", pa.string(), False),
                ("num_records", pa.int64(), False),
                ("stats", pa.string(), False),
                ("modification_time", pa.int64(), False),
            ]
        ),
    )
