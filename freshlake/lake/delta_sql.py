"""Spark SQL statements on Delta tables addressed by path (delta.`uri`), for delta-spark.

Pure functions from arguments to statement text, so what the delta-spark engine runs is
checked without the Delta jars. Column names must be plain identifiers (`column_ref`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_type

from freshlake.lake.engine import MERGE_SOURCE, MERGE_TARGET, column_ref, merge_predicate

# Session settings the engine sets around one statement (restored after it).
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
OPTIMIZE_MIN_FILE_SIZE = "spark.databricks.delta.optimize.minFileSize"


def table_ref(uri: str) -> str:
    """The path-based table identifier, backticks in the path doubled."""
    return "delta.`" + uri.replace("`", "``") + "`"


def delete_sql(uri: str, condition: str) -> str:
    return f"DELETE FROM {table_ref(uri)} WHERE {condition}"


def merge_update_sql(
    uri: str, source_view: str, keys: Sequence[str], updates: Mapping[str, str]
) -> str:
    """MERGE INTO the table from a temporary view: update matched rows, insert nothing."""
    if not updates:
        raise ValueError("merge_update needs at least one column to update")
    assignments = ", ".join(f"{column_ref(c)} = {expr}" for c, expr in updates.items())
    return (
        f"MERGE INTO {table_ref(uri)} AS {MERGE_TARGET} "
        f"USING {column_ref(source_view)} AS {MERGE_SOURCE} "
        f"ON {merge_predicate(keys)} "
        f"WHEN MATCHED THEN UPDATE SET {assignments}"
    )


def optimize_sql(uri: str) -> str:
    return f"OPTIMIZE {table_ref(uri)}"


def vacuum_sql(uri: str, retention_hours: float) -> str:
    """VACUUM with the retention rounded up to whole hours, as the delta-rs engine does."""
    if retention_hours < 0:
        raise ValueError("retention_hours must be >= 0")
    return f"VACUUM {table_ref(uri)} RETAIN {math.ceil(retention_hours)} HOURS"


def add_columns_sql(uri: str, fields: Sequence[pa.Field]) -> str:
    """ALTER TABLE ... ADD COLUMNS with each field's Spark SQL type."""
    columns = ", ".join(f"{column_ref(f.name)} {spark_type_sql(f.type)}" for f in fields)
    return f"ALTER TABLE {table_ref(uri)} ADD COLUMNS ({columns})"


def spark_type_sql(arrow_type: pa.DataType) -> str:
    """The Spark SQL type name of an Arrow type (timestamps with a zone as TIMESTAMP)."""
    return from_arrow_type(arrow_type, prefer_timestamp_ntz=False).simpleString()
