"""What the delta-spark engine runs, checked without the Delta jars: statement text, the parsing
of Delta's result rows, and session settings scoped to one statement."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql import Row

from freshlake.lake.delta_spark import (
    optimize_result,
    statement_metric,
    written_counts,
)
from freshlake.lake.delta_sql import (
    RETENTION_CHECK,
    USER_METADATA,
    add_columns_sql,
    delete_sql,
    merge_update_sql,
    optimize_sql,
    table_ref,
    vacuum_sql,
)
from freshlake.lake.engine import merge_predicate
from freshlake.spark_compat import session_conf

URI = "s3a://bucket/lake/fresh_examples"


def test_tables_are_addressed_by_path_with_backticks_escaped():
    assert table_ref(URI) == "delta.`s3a://bucket/lake/fresh_examples`"
    assert table_ref("/tmp/odd`name") == "delta.`/tmp/odd``name`"
    assert delete_sql(URI, "`user_id` IN ('u1')") == (
        "DELETE FROM delta.`s3a://bucket/lake/fresh_examples` WHERE `user_id` IN ('u1')"
    )
    assert optimize_sql(URI) == "OPTIMIZE delta.`s3a://bucket/lake/fresh_examples`"


def test_merge_updates_matched_rows_from_the_view_and_inserts_nothing():
    sql = merge_update_sql(
        URI,
        "freshlake_merge_1",
        ["dt", "impression_id"],
        {"label_like": "CASE WHEN s.label_like = 1 THEN 1 ELSE t.label_like END"},
    )
    assert sql == (
        "MERGE INTO delta.`s3a://bucket/lake/fresh_examples` AS t "
        "USING `freshlake_merge_1` AS s "
        "ON t.`dt` = s.`dt` AND t.`impression_id` = s.`impression_id` "
        "WHEN MATCHED THEN UPDATE SET `label_like` = "
        "CASE WHEN s.label_like = 1 THEN 1 ELSE t.label_like END"
    )
    assert "NOT MATCHED" not in sql
    with pytest.raises(ValueError, match="plain identifier"):
        merge_predicate(["dt; DROP TABLE x"])
    with pytest.raises(ValueError, match="at least one key"):
        merge_predicate([])
    with pytest.raises(ValueError, match="at least one column"):
        merge_update_sql(URI, "v", ["dt"], {})


def test_vacuum_rounds_retention_up_to_whole_hours():
    assert vacuum_sql(URI, 0) == f"VACUUM {table_ref(URI)} RETAIN 0 HOURS"
    assert vacuum_sql(URI, 0.5) == f"VACUUM {table_ref(URI)} RETAIN 1 HOURS"
    assert vacuum_sql(URI, 168) == f"VACUUM {table_ref(URI)} RETAIN 168 HOURS"
    with pytest.raises(ValueError):
        vacuum_sql(URI, -1)


def test_added_columns_carry_their_spark_types():
    fields = [
        pa.field("duplicates_dropped", pa.int64()),
        pa.field("watermark", pa.timestamp("us", tz="UTC")),
        pa.field("rows_written", pa.map_(pa.string(), pa.int64())),
    ]
    assert add_columns_sql(URI, fields) == (
        f"ALTER TABLE {table_ref(URI)} ADD COLUMNS (`duplicates_dropped` bigint, "
        "`watermark` timestamp, `rows_written` map<string,bigint>)"
    )


def test_counts_are_read_from_delta_result_rows():
    merged = Row(num_affected_rows=3, num_updated_rows=3, num_deleted_rows=0, num_inserted_rows=0)
    assert statement_metric(merged, "num_updated_rows") == 3
    assert statement_metric(Row(num_affected_rows=-1), "num_affected_rows") is None
    assert statement_metric(Row(path="x"), "num_affected_rows") is None
    assert statement_metric(None, "num_affected_rows") is None
    metrics = Row(numFilesAdded=2, numFilesRemoved=9, partitionsOptimized=2, numBatches=1)
    result = optimize_result(URI, Row(path=URI, metrics=metrics), 12)
    assert (result.partitions, result.files_before, result.files_after) == (2, 9, 2)
    assert (result.rows, result.version) == (None, 12)
    assert optimize_result(URI, None, 3).files_before is None


def test_session_settings_hold_for_the_statement_and_are_restored(spark):
    spark.conf.set(USER_METADATA, "earlier")
    with session_conf(spark, {RETENTION_CHECK: "false", USER_METADATA: '{"a": 1}'}):
        assert spark.conf.get(RETENTION_CHECK) == "false"
        assert spark.conf.get(USER_METADATA) == '{"a": 1}'
    assert spark.conf.get(USER_METADATA) == "earlier"
    assert spark.conf.get(RETENTION_CHECK, None) is None
    spark.conf.unset(USER_METADATA)
    with pytest.raises(RuntimeError), session_conf(spark, {RETENTION_CHECK: "false"}):
        raise RuntimeError("statement failed")
    assert spark.conf.get(RETENTION_CHECK, None) is None


def test_a_write_reports_the_files_and_rows_delta_recorded():
    # The commitInfo of a delta-spark WRITE: Delta keeps its metrics as strings.
    commit = {
        "version": 3,
        "operation": "WRITE",
        "operationMetrics": {"numFiles": "2", "numOutputRows": "300", "numOutputBytes": "9100"},
    }
    assert written_counts(commit) == (2, 300)
    assert written_counts({"operation": "CREATE TABLE"}) == (0, 0)
