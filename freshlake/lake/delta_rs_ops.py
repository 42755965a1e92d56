"""The delta-rs engine's file-targeted rewrites: deleting rows and compacting small files.

Both replace only the files concerned in one commit (`DeltaRsEngine.rewrite`), so their cost
follows the rows touched, not the table size, and appends that commit meanwhile do not conflict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pyspark.sql import functions as F

from freshlake.lake.engine import CompactionResult, DeleteResult

if TYPE_CHECKING:
    from freshlake.lake.delta_rs import DeltaRsEngine

# Column tagging each row with its data file (Spark's URI of it) while a delete finds them.
_FILE_COLUMN = "__freshlake_data_file"


def delete_where(
    engine: DeltaRsEngine, uri: str, condition: str, metadata: Mapping[str, Any] | None
) -> DeleteResult:
    """Rewrite the files holding rows that match `condition` without those rows, in one commit."""
    tagged = engine.read(uri).withColumn(_FILE_COLUMN, F.input_file_name())
    matches = F.coalesce(F.expr(condition), F.lit(False))
    per_file = {
        r[_FILE_COLUMN]: r["count"]
        for r in tagged.where(matches).groupBy(_FILE_COLUMN).count().collect()
    }
    if not per_file:
        return DeleteResult(uri, engine.version(uri), rows_removed=0, files_rewritten=0)
    log_paths = log_paths_of(list(per_file), [e.path for e in engine.files(uri)])
    paths = sorted(set(log_paths.values()))
    keep = tagged.where(F.col(_FILE_COLUMN).isin(list(per_file)) & ~matches).drop(_FILE_COLUMN)
    result = engine.rewrite(uri, paths, keep, metadata=metadata)
    return DeleteResult(
        uri, result.version, rows_removed=sum(per_file.values()), files_rewritten=len(paths)
    )


def log_paths_of(file_uris: Sequence[str], log_paths: Sequence[str]) -> dict[str, str]:
    """The Delta log path of each file Spark read (`input_file_name()`), by file URI.

    Log paths are relative to the table root and URI-encoded; Spark's names are absolute and
    encoded its own way, so both are compared decoded, a log path matching the end of a name.
    Raises when a file is not in the log (its rows would otherwise be neither kept nor removed).
    """
    by_decoded = {unquote(p).lstrip("/"): p for p in log_paths}
    found: dict[str, str] = {}
    for file_uri in file_uris:
        parts = unquote(file_uri).split("/")
        suffixes = ("/".join(parts[i:]) for i in range(len(parts)))  # longest first
        match = next((by_decoded[s] for s in suffixes if s in by_decoded), None)
        if match is None:
            raise ValueError(f"{file_uri} is not a data file of the table's latest version")
        found[file_uri] = match
    return found


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
