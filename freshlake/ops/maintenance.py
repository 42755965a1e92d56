"""Compaction of small files and vacuum of removed ones, safe while writers append.

Compaction rewrites, per partition, the files smaller than the target into one file and commits
the swap with `dataChange=false`: appends that commit meanwhile (the streaming joiner) do not
conflict, their app-transaction versions are kept, and streaming readers skip the commit. Vacuum
only deletes files removed from the log longer ago than the retention, never files a running
writer has written but not committed yet. Both run on the lake's engine (`Lake.compact`,
`Lake.vacuum`).
"""

from __future__ import annotations

from freshlake.config import MaintenanceConfig
from freshlake.lake import CompactionResult, Lake


def compact_table(lake: Lake, table: str, config: MaintenanceConfig) -> CompactionResult:
    """Merge each partition's small files (at least `min_files` of them) into one file."""
    return lake.compact(
        table,
        target_file_bytes=int(config.target_file_mb * 1024 * 1024),
        min_files=config.min_files,
        metadata={"freshlake.operation": "compact"},
    )


def vacuum_table(lake: Lake, table: str, retention_hours: float) -> list[str] | None:
    """Delete files removed from the log more than `retention_hours` ago; their paths where the
    engine lists them (None on delta-spark)."""
    return lake.vacuum(table, retention_hours)
