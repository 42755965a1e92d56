"""The `stream_metrics` table: written from the metrics rows, and upgraded in place."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema

from freshlake.streaming.metrics import METRICS_SCHEMA, METRICS_TABLE, BatchReport, MetricsRecorder


def test_a_table_without_newer_columns_gets_them(lake, tmp_path):
    old = pa.schema([f for f in to_arrow_schema(METRICS_SCHEMA, timezone="UTC")
                     if f.name != "duplicates_dropped"])  # fmt: skip
    row = {name: None for name in old.names} | {
        "query": "joiner", "batch_id": 0, "rows_written": [], "dt": "2026-01-01"
    }  # fmt: skip
    lake.append_arrow(METRICS_TABLE, pa.Table.from_pylist([row], schema=old), partition_by=["dt"])

    recorder = MetricsRecorder("joiner", tmp_path / "metrics.jsonl", lake)
    committed = datetime(2026, 1, 2, tzinfo=UTC)
    recorder.report(BatchReport(batch_id=1, committed_at=committed, duplicates_dropped=3))
    recorder.drain(SimpleNamespace(recentProgress=[], id="query-id"), final=True)

    rows = lake.read(METRICS_TABLE).orderBy("batch_id").collect()
    assert [(r.batch_id, r.duplicates_dropped) for r in rows] == [(0, None), (1, 3)]


def test_a_batch_replayed_after_a_restart_is_recorded_once(lake, tmp_path):
    committed = datetime(2026, 1, 2, tzinfo=UTC)
    query = SimpleNamespace(recentProgress=[], id="query-id")
    first = MetricsRecorder("joiner", tmp_path / "metrics.jsonl", lake)
    for batch_id in range(3):
        first.report(BatchReport(batch_id=batch_id, committed_at=committed))
    first.drain(query, final=True)

    # After a restart Spark runs batch 2 again (its checkpoint commit was lost); the sink
    # skips it and reports it once more.
    again = MetricsRecorder("joiner", tmp_path / "metrics.jsonl", lake)
    again.report(BatchReport(batch_id=2, committed_at=committed, skipped=True))
    again.report(BatchReport(batch_id=3, committed_at=committed))
    again.drain(query, final=True)
    again.report(BatchReport(batch_id=3, committed_at=committed, skipped=True))
    again.drain(query, final=True)

    rows = lake.read(METRICS_TABLE).orderBy("batch_id").collect()
    assert [r.batch_id for r in rows] == [0, 1, 2, 3]
    assert lake.transaction_version(METRICS_TABLE, "stream_metrics-query-id") == 3
