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
