"""Parquet logs written with nanosecond timestamps (pandas' default) ingest like any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from freshlake.ingest.files import ingest_files
from freshlake.ingest.sources import NANOS_AS_LONG, nanosecond_timestamp_columns

# 2026-01-02T03:04:05.678901234Z: nanoseconds below the contract's microseconds.
SERVED_NS = 1_767_323_045_678_901_234


def test_nanosecond_timestamps_are_read_as_microsecond_timestamps(spark, config, lake, tmp_path):
    nanos = pa.timestamp("ns", tz="UTC")
    table = pa.table(
        {
            "impression_id": ["ns-1", "ns-2"],
            "user_id": ["u", "u"],
            "item_id": ["item-1", "item-2"],
            "served_at": pa.array([SERVED_NS, SERVED_NS + 1_000], nanos),
            "logged_at": pa.array([SERVED_NS, None], pa.timestamp("ns")),
        }
    )
    path = tmp_path / "impressions.parquet"
    pq.write_table(table, path)
    assert sorted(nanosecond_timestamp_columns(f"file:{path}")) == ["logged_at", "served_at"]

    summary = ingest_files(config, spark, {"impressions": [str(path)]})

    (outcome,) = summary.outcomes
    assert (outcome.records, outcome.valid, outcome.quarantined) == (2, 2, {})
    stored = {r.impression_id: r for r in lake.read("impressions").collect()}
    expected = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert stored["ns-1"].served_at.astimezone(UTC) == expected
    assert stored["ns-2"].served_at.astimezone(UTC) == expected.replace(microsecond=678902)
    assert stored["ns-1"].extra == {"logged_at": "2026-01-02T03:04:05.678901Z"}
    assert spark.conf.get(NANOS_AS_LONG, None) in (None, "false"), "the setting is restored"


def test_microsecond_files_have_no_nanosecond_columns(tmp_path):
    path = tmp_path / "micros.parquet"
    pq.write_table(pa.table({"t": pa.array([0], pa.timestamp("us"))}), path)
    assert nanosecond_timestamp_columns(str(path)) == []
    assert nanosecond_timestamp_columns(str(tmp_path / "missing.parquet")) == []
