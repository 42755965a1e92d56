"""The `delta-rs` engine: Spark writes Parquet, the driver commits the files in one transaction.

No JVM jars are needed. Spark's own Parquet writer writes a DataFrame's files inside the table
(`spark_writer`); the driver builds Add actions from their footers and commits them with
delta-rs. The commit is atomic: a job that fails before it leaves no new table
version (at most unreferenced files, which `vacuum(full=True)` removes). Idempotent writes check
`transaction_version(app_id)` before committing, because delta-rs records app transactions
but does not enforce them (docs/design.md section 7.3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Field, Schema, Transaction
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from freshlake.lake.arrow_writer import write_arrow_files
from freshlake.lake.delta_rs_ops import compact_small_files, delete_where
from freshlake.lake.engine import (
    MERGE_SOURCE,
    MERGE_TARGET,
    CompactionResult,
    DeleteResult,
    FileEntry,
    LakeEngine,
    WriteMode,
    WriteResult,
    check_schema,
    merge_predicate,
    nullable_fields,
)
from freshlake.lake.file_stats import WrittenFile
from freshlake.lake.hive_paths import partition_value_string
from freshlake.lake.spark_writer import write_spark_files


class DeltaRsEngine(LakeEngine):
    """Delta tables written by Spark's Parquet writer and committed by delta-rs on the driver."""

    name = "delta-rs"

    def write(
        self,
        uri: str,
        df: DataFrame,
        *,
        mode: WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace_partitions: Mapping[str, Sequence[str]] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
        app_transactions: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', not {mode!r}")
        table = self._open(uri)
        transactions = _transactions(app_id, app_version, app_transactions)
        if _already_committed(uri, table, transactions):
            return WriteResult(uri, table.version(), skipped=True)
        schema = to_arrow_schema(df.schema, timezone="UTC")
        partition_by = self._partition_by(uri, table, schema, partition_by)
        actions, rows = self._write_files(uri, df, schema, partition_by, data_change=True)
        if mode == "overwrite" and replace_partitions:
            _check_inside(uri, actions, replace_partitions)
        self._commit(
            uri, table, schema, actions, mode, partition_by, replace_partitions,
            _commit_properties(transactions, metadata),
        )  # fmt: skip
        return WriteResult(uri, self.version(uri), files=len(actions), rows=rows)

    def append_arrow(
        self,
        uri: str,
        data: pa.Table,
        *,
        partition_by: Sequence[str] = (),
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> WriteResult:
        """Write the Parquet files on the driver with pyarrow (no Spark job) and commit them."""
        table = self._open(uri)
        transactions = _transactions(app_id, app_version, None)
        if _already_committed(uri, table, transactions):
            return WriteResult(uri, table.version(), skipped=True)
        partition_by = self._partition_by(uri, table, data.schema, partition_by)
        actions = _add_actions(write_arrow_files(_absolute(uri), data, partition_by), True)
        props = _commit_properties(transactions, None)
        self._commit(uri, table, data.schema, actions, "append", partition_by, None, props)
        return WriteResult(uri, self.version(uri), files=len(actions), rows=data.num_rows)

    def _partition_by(
        self, uri: str, table: DeltaTable | None, schema: pa.Schema, partition_by: Sequence[str]
    ) -> list[str]:
        """The table's partition columns (the requested ones for a new table), checked."""
        if table is not None:
            check_schema(uri, pa.schema(table.schema().to_arrow()), schema)
            partition_by = list(table.metadata().partition_columns)
        unknown = [c for c in partition_by if c not in schema.names]
        if unknown:
            raise ValueError(f"partition columns {unknown} are not in the data")
        return list(partition_by)

    def _commit(
        self,
        uri: str,
        table: DeltaTable | None,
        schema: pa.Schema,
        actions: list[AddAction],
        mode: WriteMode,
        partition_by: list[str],
        replace_partitions: Mapping[str, Sequence[str]] | None,
        props: CommitProperties,
    ) -> None:
        delta_schema = Schema.from_arrow(schema)
        if table is None:
            create_table_with_add_actions(
                uri,
                delta_schema,
                actions,
                mode="append",
                partition_by=partition_by or None,
                storage_options=self.storage_options or None,
                commit_properties=props,
            )
        else:
            table.create_write_transaction(
                actions,
                mode,
                delta_schema,
                partition_by=partition_by or None,
                partition_filters=_filters(replace_partitions) if mode == "overwrite" else None,
                commit_properties=props,
            )

    def rewrite(
        self,
        uri: str,
        remove: Sequence[str],
        df: DataFrame | None,
        *,
        data_change: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Replace the files `remove` (log paths) by the rows of `df`, in one commit.

        Used to delete rows (`data_change=True`) and to compact files (`data_change=False`, so
        streaming readers of the table skip the commit). Concurrent appends do not conflict.
        """
        table = self.delta_table(uri)
        schema = pa.schema(table.schema().to_arrow())
        partition_by = list(table.metadata().partition_columns)
        known = {entry.path: entry for entry in self.files(uri)}
        missing = [p for p in remove if p not in known]
        if missing:
            raise ValueError(f"{uri}: files not in the current version: {missing[:3]}")
        actions: list[AddAction | RemoveAction] = []
        rows = 0
        if df is not None:
            check_schema(uri, schema, to_arrow_schema(df.schema, timezone="UTC"))
            actions, rows = self._write_files(uri, df, schema, partition_by, data_change)
        now_ms = int(time.time() * 1000)
        actions += [
            RemoveAction(
                path=unquote(path),  # delta-rs encodes the path it writes, as for adds
                data_change=data_change,
                deletion_timestamp=now_ms,
                size=known[path].size,
                partition_values=known[path].partition_values,
            )
            for path in remove
        ]
        table.create_write_transaction(
            actions,
            "append",
            Schema.from_arrow(schema),
            partition_by=partition_by or None,
            commit_properties=CommitProperties(custom_metadata=dict(metadata or {}) or None),
        )
        return WriteResult(uri, self.version(uri), files=len(actions) - len(remove), rows=rows)

    def _write_files(
        self,
        uri: str,
        df: DataFrame,
        schema: pa.Schema,
        partition_by: list[str],
        data_change: bool,
    ) -> tuple[list[AddAction], int]:
        """Spark writes `df` as Parquet inside the table; the Add actions describing its files."""
        files = write_spark_files(df.select(*schema.names), _absolute(uri), partition_by, schema)
        return _add_actions(files, data_change), sum(f.num_records for f in files)

    def read(self, uri: str, version: int | None = None) -> DataFrame:
        table = self.delta_table(uri, version=version)
        return self._read_paths(uri, table, table.file_uris())

    def read_files(self, uri: str, paths: Sequence[str]) -> DataFrame:
        """Only the given data files (log paths) of the latest version, with partition columns."""
        root = _absolute(uri).rstrip("/")
        files = [f"{root}/{unquote(p)}" for p in paths]  # log paths are URI-encoded
        return self._read_paths(uri, self.delta_table(uri), files)

    def _read_paths(self, uri: str, table: DeltaTable, files: Sequence[str]) -> DataFrame:
        schema = from_arrow_schema(pa.schema(table.schema().to_arrow()), prefer_timestamp_ntz=False)
        if not files:
            return self.spark.createDataFrame([], schema)
        reader = self.spark.read.schema(schema).option("basePath", _absolute(uri))
        return reader.parquet(*files).select(*schema.names)

    def _open(self, uri: str) -> DeltaTable | None:
        return self.delta_table(uri) if self.exists(uri) else None

    # -- reads to the driver, row-level changes, maintenance -----------------------------------

    def read_arrow(self, uri: str, version: int | None = None) -> pa.Table:
        return read_table_arrow(uri, version, self.storage_options)

    def delete(
        self, uri: str, condition: str, *, metadata: Mapping[str, Any] | None = None
    ) -> DeleteResult:
        """Rewrites only the files that hold matching rows (`delta_rs_ops.delete_where`)."""
        return delete_where(self, uri, condition, metadata)

    def merge_update(
        self, uri: str, rows: pa.Table, keys: Sequence[str], updates: Mapping[str, str]
    ) -> int:
        """A delta-rs MERGE on the driver (no Spark job)."""
        metrics = (
            self.delta_table(uri)
            .merge(
                rows,
                predicate=merge_predicate(keys),
                source_alias=MERGE_SOURCE,
                target_alias=MERGE_TARGET,
            )
            .when_matched_update(dict(updates))
            .execute()
        )
        return int(metrics.get("num_target_rows_updated", 0))

    def compact(
        self,
        uri: str,
        *,
        target_file_bytes: int,
        min_files: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> CompactionResult:
        """Spark rewrites the small files (`delta_rs_ops.compact_small_files`)."""
        return compact_small_files(self, uri, target_file_bytes, min_files, metadata)

    def vacuum(self, uri: str, retention_hours: float) -> list[str]:
        """Retention rounded up to whole hours (delta-rs takes an integer)."""
        return self.delta_table(uri).vacuum(
            retention_hours=math.ceil(retention_hours),
            dry_run=False,
            enforce_retention_duration=False,
        )

    def add_columns(self, uri: str, fields: Sequence[pa.Field]) -> None:
        columns = [Field.from_arrow(f) for f in nullable_fields(fields)]
        if columns:
            self.delta_table(uri).alter.add_columns(columns)


def _transactions(
    app_id: str | None, app_version: int | None, app_transactions: Mapping[str, int] | None
) -> dict[str, int]:
    """The app transactions a write records: `app_id` at `app_version`, or `app_transactions`."""
    if (app_id is None) != (app_version is None):
        raise ValueError("app_id and app_version go together")
    if app_id is not None and app_transactions:
        raise ValueError("pass app_id and app_version, or app_transactions, not both")
    return {app_id: app_version} if app_id is not None else dict(app_transactions or {})


def _already_committed(uri: str, table: DeltaTable | None, transactions: Mapping[str, int]) -> bool:
    """True when every app transaction is already in the table (delta-rs does not enforce them).

    A write only some of whose transactions are committed is refused: writing it would repeat
    the rows of those, skipping it would lose the others.
    """
    if table is None or not transactions:
        return False
    done = sorted(
        app_id
        for app_id, version in transactions.items()
        if (last := table.transaction_version(app_id)) is not None and version <= last
    )
    if done and len(done) < len(transactions):
        raise ValueError(
            f"{uri}: {len(done)} of the write's {len(transactions)} app transactions are "
            f"committed already ({done[0]}, ...); write the others without them"
        )
    return bool(done)


def _commit_properties(
    transactions: Mapping[str, int], metadata: Mapping[str, Any] | None
) -> CommitProperties:
    return CommitProperties(
        custom_metadata=dict(metadata or {}) or None,
        app_transactions=[Transaction(a, v) for a, v in transactions.items()] or None,
    )


def _add_actions(files: Sequence[WrittenFile], data_change: bool) -> list[AddAction]:
    """One Add action per written file."""
    return [
        AddAction(
            path=f.path,
            size=f.size,
            partition_values=f.partition_values,
            modification_time=f.modification_time,
            data_change=data_change,
            stats=f.stats,
        )
        for f in files
    ]


def _filters(replace: Mapping[str, Sequence[str]] | None) -> list[tuple[str, str, Any]] | None:
    if not replace:
        return None
    return [(column, "in", [str(v) for v in values]) for column, values in replace.items()]


def _check_inside(uri: str, actions: list[AddAction], replace: Mapping[str, Sequence[str]]) -> None:
    """A partition overwrite must not write rows outside the partitions it replaces."""
    allowed = {col: {str(v) for v in values} for col, values in replace.items()}
    for action in actions:
        for col, values in allowed.items():
            value = action.partition_values.get(col)
            if value not in values:
                raise ValueError(
                    f"overwrite of {uri} replaces {col} in {sorted(values)} "
                    f"but the data has {col}={value}"
                )


def read_table_arrow(
    uri: str, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> pa.Table:
    """A table's rows as Arrow, read through Arrow's own filesystem (no Spark).

    Not delta-rs's Python-backed filesystem (the default of `to_pyarrow_table`): with it, Arrow's
    I/O threads can still call into Python while the interpreter exits, which aborts the process
    (`terminate called without an active exception`, exit 134) in about half of the runs.
    """
    table = DeltaTable(uri, version=version, storage_options=dict(storage_options or {}) or None)
    fs, root = pafs.FileSystem.from_uri(_absolute(uri))
    dataset = table.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(root, fs))
    return dataset.to_table()


def write_arrow_table(
    uri: str,
    data: pa.Table,
    *,
    partition_by: Sequence[str] = (),
    mode: WriteMode = "append",
    max_row_group_size: int | None = None,
) -> int:
    """Write Arrow rows as a Delta table without Spark (fixtures, benchmarks); the new version.

    `max_row_group_size` sets the Parquet row groups, for readers that work in row groups.
    """
    from deltalake import WriterProperties, write_deltalake

    write_deltalake(
        uri,
        data,
        mode=mode,
        partition_by=list(partition_by) or None,
        writer_properties=WriterProperties(max_row_group_size=max_row_group_size)
        if max_row_group_size
        else None,
    )
    return DeltaTable(uri).version()


def _absolute(uri: str) -> str:
    """Local paths made absolute (Spark executors may run elsewhere); URLs unchanged."""
    if "://" in uri:
        return uri
    from pathlib import Path

    return str(Path(uri).resolve())
