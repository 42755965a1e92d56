"""Compaction of small files and vacuum of removed ones, safe while writers append.

Compaction rewrites, per partition, the files smaller than the target into one file and commits
the swap with `dataChange=false`: appends that commit meanwhile (the streaming joiner) do not
conflict, their app-transaction versions are kept, and streaming readers skip the commit. Vacuum
only deletes files removed from the log longer ago than the retention, never files a running
writer has written but not committed yet.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from freshlake.config import MaintenanceConfig
from freshlake.lake import Lake
from freshlake.lake.delta_rs import DeltaRsEngine


@dataclass(frozen=True)
class CompactionResult:
    """What compaction did to a table (None where the delta-spark engine does not say)."""

    table: str
    partitions: int | None
    files_before: int | None
    files_after: int | None
    rows: int | None
    version: int | None


def compact_table(lake: Lake, table: str, config: MaintenanceConfig) -> CompactionResult:
    """Merge each partition's small files (at least `min_files` of them) into one file."""
    uri = lake.uri(table)
    engine = lake.engine
    if not isinstance(engine, DeltaRsEngine):
        lake.spark.sql(f"OPTIMIZE delta.`{uri}`")
        return CompactionResult(table, None, None, None, None, lake.version(table))
    target = config.target_file_mb * 1024 * 1024
    small: dict[tuple, list[str]] = defaultdict(list)
    for entry in engine.files(uri):
        if entry.size < target:
            small[tuple(sorted(entry.partition_values.items()))].append(entry.path)
    groups = [paths for paths in small.values() if len(paths) >= config.min_files]
    if not groups:
        return CompactionResult(table, 0, 0, 0, 0, lake.version(table))
    paths = [p for group in groups for p in group]
    partition_by = list(lake.delta_table(table).metadata().partition_columns)
    rows = engine.read_files(uri, paths)
    merged = rows.repartition(len(groups), *partition_by) if partition_by else rows.coalesce(1)
    result = engine.rewrite(
        uri, paths, merged, data_change=False, metadata={"freshlake.operation": "compact"}
    )
    return CompactionResult(
        table, len(groups), len(paths), result.files, result.rows, result.version
    )


def vacuum_table(lake: Lake, table: str, retention_hours: float) -> list[str]:
    """Delete files removed from the log more than `retention_hours` ago; return their paths."""
    return lake.delta_table(table).vacuum(
        retention_hours=math.ceil(retention_hours),
        dry_run=False,
        enforce_retention_duration=False,
    )
