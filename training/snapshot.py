"""A Delta table pinned at one version, as the list of data files its log references.

Readers never list folders: files removed by an overwrite stay on disk until vacuum, so the
Delta log is the only truth about which files make up a version (docs/design.md section 5.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import unquote

from deltalake import DeltaTable

from freshlake import contract


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a snapshot, with its partition values and row count from the log."""

    uri: str
    partition_values: Mapping[str, Any] = field(default_factory=dict)
    num_rows: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """The files of table `uri` at `version`, sorted by URI (the same order in every process)."""

    uri: str
    version: int
    files: tuple[DataFile, ...]
    partition_columns: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows or 0 for f in self.files)

    def only(self, files: Sequence[DataFile]) -> Snapshot:
        """The same snapshot restricted to `files`."""
        return Snapshot(self.uri, self.version, tuple(files), self.partition_columns, self.columns)

    def between_dates(
        self, start: date | None, end: date | None, column: str = contract.DT
    ) -> Snapshot:
        """Keep files whose `column` partition value is in `[start, end)` (partition pruning)."""
        if start is None and end is None:
            return self
        if column not in self.partition_columns:
            raise ValueError(f"{self.uri} is not partitioned by {column!r}; cannot filter dates")

        def inside(f: DataFile) -> bool:
            value = _as_date(f.partition_values.get(column))
            if value is None:
                return False
            return (start is None or value >= start) and (end is None or value < end)

        return self.only([f for f in self.files if inside(f)])


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _file_uri(table_uri: str, path: str) -> str:
    if "://" in path:
        return path
    return f"{table_uri.rstrip('/')}/{unquote(path)}"


def _files(table: DeltaTable) -> list[DataFile]:
    actions = table.get_add_actions(flatten=True)
    names = set(actions.column_names)
    paths = actions.column("path").to_pylist()
    counts = (
        actions.column("num_records").to_pylist() if "num_records" in names else [None] * len(paths)
    )
    partition_columns = table.metadata().partition_columns
    values = {
        name: actions.column(f"partition.{name}").to_pylist()
        for name in partition_columns
        if f"partition.{name}" in names
    }
    files = [
        DataFile(
            uri=_file_uri(table.table_uri, path),
            partition_values={name: column[i] for name, column in values.items()},
            num_rows=counts[i],
        )
        for i, path in enumerate(paths)
    ]
    return sorted(files, key=lambda f: f.uri)


def open_snapshot(
    uri: str, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> Snapshot:
    """The table at `version` (latest when None), read from its Delta log."""
    table = DeltaTable(uri, version=version, storage_options=dict(storage_options or {}) or None)
    columns = tuple(f.name for f in table.schema().fields)
    return Snapshot(
        uri=uri,
        version=table.version(),
        files=tuple(_files(table)),
        partition_columns=tuple(table.metadata().partition_columns),
        columns=columns,
    )


def added_since(snapshot: Snapshot, since_version: int, storage_options=None) -> Snapshot:
    """The files of `snapshot` that were not in the table at `since_version`.

    For continual training on rows appended since a model was trained (e.g. `fresh_examples`).
    Files rewritten by compaction or overwrite also count as added: their rows are read again.
    """
    if since_version > snapshot.version:
        raise ValueError(f"since version {since_version} is after snapshot {snapshot.version}")
    before = {f.uri for f in open_snapshot(snapshot.uri, since_version, storage_options).files}
    return snapshot.only([f for f in snapshot.files if f.uri not in before])


def table_uri(root: str, table: str) -> str:
    """Where table `table` lives under lake root `root` (as `freshlake.lake.Lake.uri`, no Spark)."""
    from pathlib import Path

    base = root if "://" in root else str(Path(root).resolve())
    return f"{base.rstrip('/')}/{table}"
