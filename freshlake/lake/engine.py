"""The engine interface both Delta writers implement, and what a write returns."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import DataFrame, SparkSession

from freshlake.lake.hive_paths import partition_value_string

WriteMode = Literal["append", "overwrite"]

# Aliases of the two sides of `merge_update`: its update expressions name columns `t.x`, `s.x`.
MERGE_TARGET = "t"
MERGE_SOURCE = "s"


class SchemaMismatchError(ValueError):
    """A write whose columns or types do not match the existing table."""


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one write: the table version it created (or found, when skipped)."""

    table: str
    version: int | None
    files: int = 0
    rows: int = 0
    # True when (app_id, app_version) was already committed: the write did nothing.
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileEntry:
    """One data file of a table version, as the Delta log describes it."""

    path: str  # relative to the table root, as in the log
    size: int
    partition_values: dict[str, str | None]
    num_records: int | None = None


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of deleting rows: the version created, rows removed and files rewritten."""

    table: str
    version: int | None
    rows_removed: int | None  # None where the engine does not say
    files_rewritten: int | None = None  # None where the engine does not say


@dataclass(frozen=True)
class CompactionResult:
    """What compaction did to a table (None where the engine does not say)."""

    table: str
    partitions: int | None
    files_before: int | None
    files_after: int | None
    rows: int | None
    version: int | None


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a table, from its Delta log."""

    version: int
    committed_at: datetime  # UTC
    operation: str | None
    # What the writer attached: delta-rs custom metadata, or delta-spark's `userMetadata` JSON.
    metadata: dict[str, Any] = field(default_factory=dict)


class LakeEngine(ABC):
    """Reads and writes Delta tables by URI. Log-level metadata goes through delta-rs for both."""

    name: str
    # How many app transactions one commit can record (None: any number).
    max_app_transactions: int | None = None

    def __init__(self, spark: SparkSession, storage_options: Mapping[str, str] | None = None):
        self.spark = spark
        self.storage_options = dict(storage_options or {})

    @abstractmethod
    def write(
        self,
        uri: str,
        df: DataFrame,
        *,
        mode: WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace_partitions: Mapping[str, Sequence[str]] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
        app_transactions: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Write `df` to the table at `uri` in one atomic commit.

        `mode="overwrite"` with `replace_partitions={"dt": [...]}` replaces exactly those
        partitions; without it, the whole table. With `app_id` and `app_version`, a version at or
        below the last one committed for that app id writes nothing (`skipped=True`).
        `app_transactions` ({app_id: app_version}, instead of `app_id`) records several in the
        same commit, at most `max_app_transactions`: the write is skipped when all of them are
        committed already and refused (`ValueError`) when only some are.
        """

    def append_arrow(
        self,
        uri: str,
        data: pa.Table,
        *,
        partition_by: Sequence[str] = (),
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> WriteResult:
        """Append driver-side rows (a micro-batch's output) in one atomic commit.

        Same contract as `write` in append mode; engines that can commit Arrow data without a
        Spark job (delta-rs) override it, the default goes through a Spark DataFrame.
        """
        return self.write(
            uri,
            self.spark.createDataFrame(data),
            partition_by=partition_by,
            app_id=app_id,
            app_version=app_version,
        )

    @abstractmethod
    def read(self, uri: str, version: int | None = None) -> DataFrame:
        """The table as a Spark DataFrame, at `version` or the latest, via the Delta log."""

    @abstractmethod
    def read_arrow(self, uri: str, version: int | None = None) -> pa.Table:
        """The table as driver-side Arrow rows, at `version` or the latest (small tables only)."""

    # -- row-level changes and maintenance ------------------------------------------------------

    @abstractmethod
    def delete(
        self, uri: str, condition: str, *, metadata: Mapping[str, Any] | None = None
    ) -> DeleteResult:
        """Remove the rows matching the Spark SQL `condition` (NULL counts as no) in one commit."""

    @abstractmethod
    def merge_update(
        self, uri: str, rows: pa.Table, keys: Sequence[str], updates: Mapping[str, str]
    ) -> int:
        """Update the table's rows equal to one of `rows` on every key column, in one commit.

        `updates` maps a column to an SQL expression over the table's row (`t.column`) and the
        matching source row (`s.column`). Source rows that match nothing are not inserted.
        Returns the number of table rows updated.
        """

    @abstractmethod
    def compact(
        self,
        uri: str,
        *,
        target_file_bytes: int,
        min_files: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> CompactionResult:
        """Merge each partition's files smaller than `target_file_bytes` (when it has at least
        `min_files` of them) in a `dataChange=false` commit that concurrent appends survive."""

    @abstractmethod
    def vacuum(self, uri: str, retention_hours: float) -> list[str] | None:
        """Delete the files removed from the log more than `retention_hours` ago (any retention,
        0 included); the paths deleted, or None where the engine does not say."""

    @abstractmethod
    def add_columns(self, uri: str, fields: Sequence[pa.Field]) -> None:
        """Add nullable columns to the table's schema; existing rows read them as NULL."""

    # -- log metadata, shared by both engines ---------------------------------------------------

    def delta_table(self, uri: str, version: int | None = None) -> DeltaTable:
        """A delta-rs handle on the table (raises `TableNotFoundError` if it does not exist)."""
        return DeltaTable(uri, version=version, storage_options=self.storage_options or None)

    def files(self, uri: str, version: int | None = None) -> list[FileEntry]:
        """The data files of a version (default: the latest), from the Delta log."""
        adds = pa.table(self.delta_table(uri, version).get_add_actions(flatten=False)).to_pylist()
        return [
            FileEntry(
                path=a["path"],
                size=a["size_bytes"],
                num_records=a.get("num_records"),
                partition_values={
                    k: partition_value_string(v) for k, v in (a.get("partition") or {}).items()
                },
            )
            for a in adds
        ]

    def exists(self, uri: str) -> bool:
        try:
            self.delta_table(uri)
        except TableNotFoundError:
            return False
        return True

    def version(self, uri: str) -> int | None:
        """The latest committed version, or None if the table does not exist."""
        try:
            return self.delta_table(uri).version()
        except TableNotFoundError:
            return None

    def transaction_version(self, uri: str, app_id: str) -> int | None:
        """The last app version committed for `app_id`, or None."""
        try:
            return self.delta_table(uri).transaction_version(app_id)
        except TableNotFoundError:
            return None

    def transaction_versions(self, uri: str, app_ids: Sequence[str]) -> dict[str, int]:
        """The last app version committed for each of `app_ids` that has one (one log read)."""
        try:
            table = self.delta_table(uri)
        except TableNotFoundError:
            return {}
        versions = {app_id: table.transaction_version(app_id) for app_id in app_ids}
        return {app_id: v for app_id, v in versions.items() if v is not None}

    def arrow_schema(self, uri: str) -> pa.Schema:
        return pa.schema(self.delta_table(uri).schema().to_arrow())

    def partition_columns(self, uri: str) -> list[str]:
        return list(self.delta_table(uri).metadata().partition_columns)

    def last_commit(self, uri: str) -> CommitInfo:
        """The table's latest commit."""
        return commit_info(self.delta_table(uri).history(1)[0])


# Fields of a Delta `commitInfo` that engines write; anything else is the writer's own metadata.
_COMMIT_INFO_FIELDS = frozenset(
    {
        "timestamp", "version", "operation", "operationParameters", "operationMetrics",
        "readVersion", "isolationLevel", "isBlindAppend", "engineInfo", "clientVersion",
        "txnId", "inCommitTimestamp", "userId", "userName", "job", "notebook", "clusterId",
        "tags", "userMetadata",
    }
)  # fmt: skip


def commit_info(entry: Mapping[str, Any]) -> CommitInfo:
    """A `CommitInfo` from one entry of the Delta log's history (as delta-rs returns it)."""
    metadata = {k: v for k, v in entry.items() if k not in _COMMIT_INFO_FIELDS}
    user_metadata = entry.get("userMetadata")
    if user_metadata:
        try:
            parsed = json.loads(user_metadata)
        except (TypeError, ValueError):
            parsed = None
        metadata.update(parsed if isinstance(parsed, dict) else {"userMetadata": user_metadata})
    return CommitInfo(
        version=int(entry["version"]),
        committed_at=datetime.fromtimestamp(entry["timestamp"] / 1000, tz=UTC),
        operation=entry.get("operation"),
        metadata=metadata,
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def column_ref(name: str) -> str:
    """A column name quoted for Spark SQL and delta-rs (DataFusion) alike: plain names only."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"column name {name!r} is not a plain identifier")
    return f"`{name}`"


def merge_predicate(keys: Sequence[str]) -> str:
    """The `merge_update` join condition: equal on every key column."""
    if not keys:
        raise ValueError("merge_update needs at least one key column")
    return " AND ".join(
        f"{MERGE_TARGET}.{column_ref(k)} = {MERGE_SOURCE}.{column_ref(k)}" for k in keys
    )


def nullable_fields(fields: Sequence[pa.Field]) -> list[pa.Field]:
    """`fields` for `add_columns`, refused when one is NOT NULL (existing rows have no value)."""
    required = [f.name for f in fields if not f.nullable]
    if required:
        raise ValueError(f"columns added to an existing table must be nullable: {required}")
    return list(fields)


def check_schema(table: str, existing: pa.Schema, incoming: pa.Schema) -> None:
    """Raise `SchemaMismatchError` naming every missing, extra or retyped column."""
    have = {f.name: f.type for f in existing}
    got = {f.name: f.type for f in incoming}
    problems = []
    if missing := sorted(set(have) - set(got)):
        problems.append(f"missing columns {missing}")
    if extra := sorted(set(got) - set(have)):
        problems.append(f"unexpected columns {extra}")
    for name in sorted(set(have) & set(got)):
        if not _same_type(have[name], got[name]):
            problems.append(f"column {name!r} is {got[name]}, table has {have[name]}")
    if problems:
        raise SchemaMismatchError(f"write to {table}: " + "; ".join(problems))


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Types equal up to string/large_string and nullability of nested fields."""

    def norm(t: pa.DataType) -> str:
        return (
            str(t)
            .replace("large_string", "string")
            .replace("string_view", "string")
            .replace("large_list", "list")
            .replace(" not null", "")
        )

    return norm(a) == norm(b)
