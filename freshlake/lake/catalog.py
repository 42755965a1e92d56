"""`Lake`: the project's tables under `lake.root`, by logical name, on the configured engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from freshlake.config import Config, LakeConfig
from freshlake.lake.delta_rs import DeltaRsEngine
from freshlake.lake.delta_spark import DeltaSparkEngine, delta_spark_available
from freshlake.lake.engine import (
    CommitInfo,
    CompactionResult,
    DeleteResult,
    LakeEngine,
    WriteMode,
    WriteResult,
)


def choose_engine(config: LakeConfig, spark: SparkSession) -> LakeEngine:
    """The engine `lake.engine` names; `auto` is delta-spark when its classes load, else delta-rs."""
    name = config.engine
    if name == "auto":
        name = "delta-spark" if delta_spark_available(spark) else "delta-rs"
    if name == "delta-spark":
        if not delta_spark_available(spark):
            raise RuntimeError(
                "lake.engine=delta-spark but the Delta Lake classes are not on Spark's classpath; "
                "add io.delta:delta-spark_2.13 with --packages, or use lake.engine=delta-rs"
            )
        return DeltaSparkEngine(spark, config.storage_options)
    return DeltaRsEngine(spark, config.storage_options)


class Lake:
    """Tables by logical name (`impressions`, `examples`, ...) under one root."""

    def __init__(self, config: LakeConfig, spark: SparkSession, engine: LakeEngine | None = None):
        self.config = config
        self.spark = spark
        self.engine = engine or choose_engine(config, spark)
        self.root = config.root if "://" in config.root else str(Path(config.root).resolve())

    def __reduce__(self):
        # A Spark Connect foreachBatch function runs pickled in a Python process of the server:
        # there the lake reopens (same root, resolved here) on that process's session.
        return _reopen, (self.config.model_copy(update={"root": self.root}),)

    def uri(self, table: str) -> str:
        """Where a logical table lives."""
        return f"{self.root.rstrip('/')}/{self.config.table_name(table)}"

    def write(
        self,
        table: str,
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
        """Write to a table in one atomic commit (see `LakeEngine.write`)."""
        return self.engine.write(
            self.uri(table),
            df,
            mode=mode,
            partition_by=partition_by,
            replace_partitions=replace_partitions,
            app_id=app_id,
            app_version=app_version,
            app_transactions=app_transactions,
            metadata=metadata,
        )

    def append_arrow(
        self,
        table: str,
        data: pa.Table,
        *,
        partition_by: Sequence[str] = (),
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> WriteResult:
        """Append driver-side Arrow rows in one atomic commit (see `LakeEngine.append_arrow`)."""
        return self.engine.append_arrow(
            self.uri(table), data, partition_by=partition_by, app_id=app_id, app_version=app_version
        )

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """A table at `version` (or latest) through the Delta log."""
        return self.engine.read(self.uri(table), version)

    def exists(self, table: str) -> bool:
        return self.engine.exists(self.uri(table))

    def version(self, table: str) -> int | None:
        return self.engine.version(self.uri(table))

    def transaction_version(self, table: str, app_id: str) -> int | None:
        return self.engine.transaction_version(self.uri(table), app_id)

    def transaction_versions(self, table: str, app_ids: Sequence[str]) -> dict[str, int]:
        """The last committed version of each app id the table has seen."""
        return self.engine.transaction_versions(self.uri(table), app_ids)

    def read_arrow(self, table: str, version: int | None = None) -> pa.Table:
        """A small table's rows on the driver, at `version` or the latest."""
        return self.engine.read_arrow(self.uri(table), version)

    def arrow_schema(self, table: str) -> pa.Schema:
        return self.engine.arrow_schema(self.uri(table))

    def partition_columns(self, table: str) -> list[str]:
        return self.engine.partition_columns(self.uri(table))

    def last_commit(self, table: str) -> CommitInfo:
        """The table's latest commit: version, time, operation, the writer's metadata."""
        return self.engine.last_commit(self.uri(table))

    def delete(
        self, table: str, condition: str, *, metadata: Mapping[str, Any] | None = None
    ) -> DeleteResult:
        """Remove the rows matching a Spark SQL condition, in one commit."""
        return self.engine.delete(self.uri(table), condition, metadata=metadata)

    def merge_update(
        self, table: str, rows: pa.Table, *, keys: Sequence[str], updates: Mapping[str, str]
    ) -> int:
        """Update the rows matching `rows` on `keys`; `updates` maps columns to SQL over `t.`
        (the table's row) and `s.` (the source row). Returns the rows updated."""
        return self.engine.merge_update(self.uri(table), rows, keys, updates)

    def compact(
        self,
        table: str,
        *,
        target_file_bytes: int,
        min_files: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> CompactionResult:
        """Merge small files per partition without a data change (safe beside appends)."""
        return self.engine.compact(
            self.uri(table),
            target_file_bytes=target_file_bytes,
            min_files=min_files,
            metadata=metadata,
        )

    def vacuum(self, table: str, retention_hours: float) -> list[str] | None:
        """Delete files removed more than `retention_hours` ago; their paths where known."""
        return self.engine.vacuum(self.uri(table), retention_hours)

    def add_columns(self, table: str, fields: Sequence[pa.Field]) -> None:
        """Add nullable columns to the table."""
        self.engine.add_columns(self.uri(table), fields)

    def table_names(self) -> list[str]:
        """Physical names of the Delta tables under the root (folders with a `_delta_log`)."""
        if "://" in self.root:
            import pyarrow.fs as pafs

            fs, base = pafs.FileSystem.from_uri(self.root)
            infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            return sorted(
                i.base_name for i in infos if i.is_file is False and self.exists(i.base_name)
            )
        root = Path(self.root)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())

    def register_views(self) -> list[str]:
        """Register every table as a temporary view named after it, for SQL."""
        names = self.table_names()
        for name in names:
            self.engine.read(f"{self.root.rstrip('/')}/{name}").createOrReplaceTempView(name)
        return names


def _reopen(config: LakeConfig) -> Lake:
    return Lake(config, SparkSession.active())


def open_lake(config: Config, spark: SparkSession) -> Lake:
    """The lake the config describes, on the engine it selects."""
    return Lake(config.lake, spark)
