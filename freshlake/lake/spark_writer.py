"""DataFrames written by Spark's own Parquet writer into a table, described for a Delta commit.

Each write first goes to a folder of its own inside the table, `<table>/write-<UTC time>-<id>/`,
named so that Delta's vacuum sees it (no leading `_` or `.`), where Spark writes its Hive-style
partition folders and part files through its output committer (algorithm 1): only files of
committed task attempts reach the folder, and only once the whole job succeeded; a failed job's
staging is removed by Spark. The folder then holds exactly the files of this write: the driver
reads each file's Parquet footer for its Delta statistics and moves the file up into the table's
own partition folders (`<table>/dt=.../part-*.parquet`, names unique per Spark job), so every
table keeps one layout that Spark's partition discovery reads with `basePath`. Rows never pass
through Python. Side files (`.crc` checksums, empty files) go with the folder; no `_SUCCESS`
marker is written; timestamps are written as TIMESTAMP_MICROS, as Delta readers expect.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from freshlake.lake.arrow_writer import MAX_ROWS_PER_FILE
from freshlake.lake.file_stats import WrittenFile, footer_stats
from freshlake.lake.hive_paths import partition_values

WRITE_FOLDER_PREFIX = "write-"
WRITE_OPTIONS = {
    "compression": "snappy",
    # Task outputs reach the folder only when the job commits (never half a job's files).
    "mapreduce.fileoutputcommitter.algorithm.version": "1",
    "mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
}
TIMESTAMP_TYPE_CONF = "spark.sql.parquet.outputTimestampType"
FOOTER_READERS = 16


def new_write_folder() -> str:
    """A folder name no other write uses, sortable by time."""
    return f"{WRITE_FOLDER_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def write_spark_files(
    df: DataFrame,
    table_uri: str,
    partition_by: list[str],
    schema: pa.Schema,
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
) -> list[WrittenFile]:
    """Write `df` with Spark into the table's partition folders; describe every data file.

    `schema` is the table's Arrow schema (the statistics follow its types). Raises what the
    Spark job raised; nothing is committed here, and the write's folder is gone either way.
    """
    fs, root = pafs.FileSystem.from_uri(table_uri.rstrip("/"))
    folder = new_write_folder()
    df.sparkSession.conf.set(TIMESTAMP_TYPE_CONF, "TIMESTAMP_MICROS")
    writer = df.write.options(**WRITE_OPTIONS).option("maxRecordsPerFile", max_rows_per_file)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    try:
        writer.parquet(f"{table_uri.rstrip('/')}/{folder}")
        return _move_into_table(fs, root, folder, partition_by, schema)
    finally:
        if fs.get_file_info(f"{root}/{folder}").type != pafs.FileType.NotFound:
            fs.delete_dir(f"{root}/{folder}")


def _move_into_table(
    fs: pafs.FileSystem, root: str, folder: str, partition_by: list[str], schema: pa.Schema
) -> list[WrittenFile]:
    """Describe the data files Spark left in `<root>/<folder>` and move them up into the table.

    Hidden side files and files without rows stay behind.
    """
    staging = f"{root}/{folder}"
    data = [
        info
        for info in fs.get_file_info(pafs.FileSelector(staging, recursive=True))
        if info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    ]
    with ThreadPoolExecutor(max_workers=FOOTER_READERS) as pool:
        footers = list(pool.map(lambda i: pq.read_metadata(i.path, filesystem=fs), data))
    described = []
    for info, footer in zip(data, footers, strict=True):
        if footer.num_rows == 0:
            continue
        path = info.path[len(staging) + 1 :]  # dt=.../part-*.parquet
        target = f"{root}/{path}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        fs.move(info.path, target)
        described.append(
            WrittenFile(
                path=path,
                size=info.size,
                partition_values=partition_values(path.split("/")[:-1], partition_by),
                num_records=footer.num_rows,
                stats=footer_stats(footer, schema),
                modification_time=info.mtime_ns // 1_000_000,
            )
        )
    return sorted(described, key=lambda f: f.path)
