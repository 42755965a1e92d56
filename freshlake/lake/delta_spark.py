"""The `delta-spark` engine: Spark's own Delta writer, where the Delta jars are on the cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from freshlake.lake.engine import LakeEngine, WriteMode, WriteResult
from freshlake.spark import jvm_class_available

DELTA_CLASS = "io.delta.tables.DeltaTable"


def delta_spark_available(spark: SparkSession) -> bool:
    """True when Spark's JVM can load the Delta Lake classes (Databricks, `--packages` delta)."""
    return jvm_class_available(spark, DELTA_CLASS)


def _replace_where(replace: Mapping[str, Sequence[str]]) -> str:
    clauses = []
    for column, values in replace.items():
        quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
        clauses.append(f"`{column}` IN ({quoted})")
    return " AND ".join(clauses)


class DeltaSparkEngine(LakeEngine):
    """Delta tables through `format("delta")`; idempotence via `txnAppId`/`txnVersion`."""

    name = "delta-spark"

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
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
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
            import json

            writer = writer.option("userMetadata", json.dumps(dict(metadata), default=str))
        writer.save(uri)
        return WriteResult(uri, self.version(uri))

    def read(self, uri: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)
