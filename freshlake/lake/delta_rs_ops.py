"""The delta-rs engine's file-targeted rewrites: deleting rows and compacting small files.

Both replace only the files concerned in one commit (`DeltaRsEngine.rewrite`), so their cost
follows the rows touched, not the table size, and appends that commit meanwhile do not conflict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from freshlake.lake.engine import CompactionResult, DeleteResult

if TYPE_CHECKING:
    from freshlake.lake.delta_rs import DeltaRsEngine

# Column tagging each row with the name of its data file while a delete finds them.
_FILE_COLUMN = "__freshlake_data_file"


def delete_where(
    engine: DeltaRsEngine, uri: str, condition: str, metadata: Mapping[str, Any] | None
) -> DeleteResult:
    """Rewrite the files holding rows that match `condition` without those rows, in one commit."""
    tagged = engine.read(uri).withColumn(
        _FILE_COLUMN, F.element_at(F.split(F.input_file_name(), "/"), -1)
    )
    matches = F.coalesce(F.expr(condition), F.lit(False))
    per_file = {
        r[_FILE_COLUMN]: r["count"]
        for r in tagged.where(matches).groupBy(_FILE_COLUMN).count().collect()
    }
    if not per_file:
        return DeleteResult(uri, engine.version(uri), rows_removed=0, files_rewritten=0)
    paths = [e.path for e in engine.files(uri) if e.path.rsplit("/", 1)[-1] in per_file]
    keep = tagged.where(F.col(_FILE_COLUMN).isin(list(per_file)) & ~matches).drop(_FILE_COLUMN)
    result = engine.rewrite(uri, paths, keep, metadata=metadata)
    return DeleteResult(
        uri, result.version, rows_removed=sum(per_file.values()), files_rewritten=len(paths)
    )


def compact_small_files(
    engine: DeltaRsEngine,
    uri: str,
    target_file_bytes: int,
    min_files: int,
    metadata: Mapping[str, Any] | None,
) -> CompactionResult:
    """Merge each partition's files under `target_file_bytes` (at least `min_files` of them) into
    one file, committed with `dataChange=false`."""
    small: dict[tuple, list[str]] = defaultdict(list)
    for entry in engine.files(uri):
        if entry.size < target_file_bytes:
            small[tuple(sorted(entry.partition_values.items()))].append(entry.path)
    groups = [paths for paths in small.values() if len(paths) >= min_files]
    if not groups:
        return CompactionResult(uri, 0, 0, 0, 0, engine.version(uri))
    paths = [p for group in groups for p in group]
    partition_by = engine.partition_columns(uri)
    rows = engine.read_files(uri, paths)
    merged = rows.repartition(len(groups), *partition_by) if partition_by else rows.coalesce(1)
    result = engine.rewrite(uri, paths, merged, data_change=False, metadata=metadata)
    return CompactionResult(uri, len(groups), len(paths), result.files, result.rows, result.version)
