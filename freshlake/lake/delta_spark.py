"""The `delta-spark` engine: Spark's own Delta writer, where the Delta jars are on the cluster."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, Row, SparkSession

from freshlake.lake.delta_sql import (
    OPTIMIZE_MIN_FILE_SIZE,
    RETENTION_CHECK,
    USER_METADATA,
    add_columns_sql,
    delete_sql,
    merge_update_sql,
    optimize_sql,
    vacuum_sql,
)
from freshlake.lake.engine import (
    CompactionResult,
    DeleteResult,
    LakeEngine,
    WriteMode,
    WriteResult,
    nullable_fields,
)
from freshlake.spark_compat import data_source_available, session_conf


def delta_spark_available(spark: SparkSession) -> bool:
    """True when Spark has Delta Lake's data source (Databricks, `--packages` delta), also
    through Spark Connect."""
    return data_source_available(spark, "delta")


def _replace_where(replace: Mapping[str, Sequence[str]]) -> str:
    clauses = []
    for column, values in replace.items():
        quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
        clauses.append(f"`{column}` IN ({quoted})")
    return " AND ".join(clauses)


def written_counts(commit: Mapping[str, Any]) -> tuple[int, int]:
    """(files, rows) a delta-spark write added, from its commit's `operationMetrics`.

    Delta records them as strings (`numFiles`, `numOutputRows`); callers reconcile their row
    counts against `WriteResult.rows`, so a write must not report 0 for rows it wrote.
    """
    metrics = commit.get("operationMetrics") or {}
    return int(metrics.get("numFiles", 0)), int(metrics.get("numOutputRows", 0))


class DeltaSparkEngine(LakeEngine):
    """Delta tables through `format("delta")`; idempotence via `txnAppId`/`txnVersion`."""

    name = "delta-spark"
    # Spark's Delta writer takes one `txnAppId`/`txnVersion` per write.
    max_app_transactions = 1

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
        if app_transactions:
            if app_id is not None or len(app_transactions) > 1:
                raise ValueError("delta-spark records one app transaction per write")
            ((app_id, app_version),) = app_transactions.items()
        if app_id is not None:
            done = self.transaction_version(uri, app_id)
            if done is not None and app_version is not None and app_version <= done:
                return WriteResult(uri, self.version(uri), skipped=True)
        writer = df.write.format("delta").mode(mode)
        if partition_by and not self.exists(uri):
            writer = writer.partitionBy(*partition_by)
        if mode == "overwrite" and replace_partitions:
            writer = writer.option("replaceWhere", _replace_where(replace_partitions))
        if app_id is not None:
            writer = writer.option("txnAppId", app_id).option("txnVersion", str(app_version))
        if metadata:
            writer = writer.option("userMetadata", json.dumps(dict(metadata), default=str))
        writer.save(uri)
        commit = self.delta_table(uri).history(1)[0]
        files, rows = written_counts(commit)
        return WriteResult(uri, commit.get("version", self.version(uri)), files=files, rows=rows)

    def read(self, uri: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)

    def read_arrow(self, uri: str, version: int | None = None) -> pa.Table:
        return self.read(uri, version).toArrow()

    def delete(
        self, uri: str, condition: str, *, metadata: Mapping[str, Any] | None = None
    ) -> DeleteResult:
        """DELETE FROM; Delta reports the rows removed, not the files it rewrote."""
        with session_conf(self.spark, _user_metadata(metadata)):
            row = self.spark.sql(delete_sql(uri, condition)).first()
        rows = statement_metric(row, "num_affected_rows")
        return DeleteResult(uri, self.version(uri), rows_removed=rows, files_rewritten=None)

    def merge_update(
        self, uri: str, rows: pa.Table, keys: Sequence[str], updates: Mapping[str, str]
    ) -> int:
        """MERGE INTO from the rows as a temporary view."""
        view = f"freshlake_merge_{uuid.uuid4().hex}"
        self.spark.createDataFrame(rows).createOrReplaceTempView(view)
        try:
            row = self.spark.sql(merge_update_sql(uri, view, keys, updates)).first()
        finally:
            self.spark.catalog.dropTempView(view)
        return statement_metric(row, "num_updated_rows") or 0

    def compact(
        self,
        uri: str,
        *,
        target_file_bytes: int,
        min_files: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> CompactionResult:
        """OPTIMIZE the files under `target_file_bytes`; Delta bins every partition with two or
        more of them (`min_files` does not apply) and commits with `dataChange=false`."""
        settings = {OPTIMIZE_MIN_FILE_SIZE: str(target_file_bytes), **_user_metadata(metadata)}
        with session_conf(self.spark, settings):
            row = self.spark.sql(optimize_sql(uri)).first()
        return optimize_result(uri, row, self.version(uri))

    def vacuum(self, uri: str, retention_hours: float) -> None:
        """VACUUM ... RETAIN n HOURS with Delta's minimum-retention check off for the statement;
        Delta does not return the deleted paths."""
        with session_conf(self.spark, {RETENTION_CHECK: "false"}):
            self.spark.sql(vacuum_sql(uri, retention_hours))

    def add_columns(self, uri: str, fields: Sequence[pa.Field]) -> None:
        if columns := nullable_fields(fields):
            self.spark.sql(add_columns_sql(uri, columns))


def _user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """The session setting that puts `metadata` (as JSON) in the next commit's `userMetadata`."""
    return {USER_METADATA: json.dumps(dict(metadata), default=str)} if metadata else {}


def statement_metric(row: Row | None, name: str) -> int | None:
    """A count from the one-row result of a Delta DML statement; None when absent or negative."""
    if row is None or name not in row.asDict():
        return None
    value = row[name]
    return int(value) if value is not None and value >= 0 else None


def optimize_result(uri: str, row: Row | None, version: int | None) -> CompactionResult:
    """A `CompactionResult` from OPTIMIZE's result row (`path`, `metrics` struct)."""
    metrics = row["metrics"].asDict() if row is not None and row["metrics"] is not None else {}

    def count(name: str) -> int | None:
        value = metrics.get(name)
        return int(value) if value is not None else None

    return CompactionResult(
        uri,
        partitions=count("partitionsOptimized"),
        files_before=count("numFilesRemoved"),
        files_after=count("numFilesAdded"),
        rows=None,
        version=version,
    )
