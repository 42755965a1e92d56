"""Driver-side Arrow rows written as Parquet files inside a table, described for a Delta commit.

`append_arrow` (a micro-batch's few rows) writes here with pyarrow, without a Spark job: one
file per partition under `<table>/<col>=<value>/part-<uuid>.snappy.parquet`, a new file every
`max_rows_per_file` rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from freshlake.lake.file_stats import StatsAccumulator, WrittenFile
from freshlake.lake.hive_paths import partition_dir, partition_value_string

MAX_ROWS_PER_FILE = 2_000_000


class _OpenFile:
    def __init__(self, fs: pafs.FileSystem, root: str, rel_dir: str, schema: pa.Schema, values):
        self.rel_path = f"{rel_dir}/part-{uuid.uuid4().hex}.snappy.parquet".lstrip("/")
        self.abs_path = f"{root}/{self.rel_path}"
        fs.create_dir(self.abs_path.rsplit("/", 1)[0], recursive=True)
        self.writer = pq.ParquetWriter(self.abs_path, schema, filesystem=fs, compression="snappy")
        self.stats = StatsAccumulator(schema)
        self.values = values

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.stats.add(batch)


def write_arrow_files(
    table_uri: str,
    data: pa.Table,
    partition_by: Sequence[str],
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
) -> list[WrittenFile]:
    """Write `data` as Parquet files under the table, partitioned; describe every file."""
    partition_by = list(partition_by)
    file_schema = pa.schema([f for f in data.schema if f.name not in partition_by])
    fs, root = pafs.FileSystem.from_uri(table_uri)
    open_files: dict[tuple[str | None, ...], _OpenFile] = {}
    done: list[_OpenFile] = []
    for batch in data.to_batches():
        if batch.num_rows == 0:
            continue
        for key, part in _split_by_partition(batch, partition_by):
            rows = part.select(file_schema.names).cast(file_schema)
            handle = open_files.get(key)
            if handle is None:
                handle = _OpenFile(fs, root, partition_dir(partition_by, key), file_schema, key)
                open_files[key] = handle
            handle.write(rows)
            if handle.stats.rows >= max_rows_per_file:
                handle.writer.close()
                done.append(open_files.pop(key))
    for handle in open_files.values():
        handle.writer.close()
        done.append(handle)
    return _describe(fs, done, partition_by)


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
) -> list[WrittenFile]:
    now_ms = int(time.time() * 1000)
    infos = fs.get_file_info([f.abs_path for f in files])
    return [
        WrittenFile(
            path=f.rel_path,
            size=info.size,
            partition_values=dict(zip(partition_by, f.values, strict=True)),
            num_records=f.stats.rows,
            stats=f.stats.to_json(),
            modification_time=now_ms,
        )
        for f, info in zip(files, infos, strict=True)
    ]
