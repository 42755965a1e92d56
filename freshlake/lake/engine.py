"""The engine interface both Delta writers implement, and what a write returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import DataFrame, SparkSession

WriteMode = Literal["append", "overwrite"]


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


class LakeEngine(ABC):
    """Reads and writes Delta tables by URI. Log-level metadata goes through delta-rs for both."""

    name: str

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
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Write `df` to the table at `uri` in one atomic commit.

        `mode="overwrite"` with `replace_partitions={"dt": [...]}` replaces exactly those
        partitions; without it, the whole table. With `app_id` and `app_version`, a version at or
        below the last one committed for that app id writes nothing (`skipped=True`).
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

    # -- log metadata, shared by both engines ---------------------------------------------------

    def delta_table(self, uri: str, version: int | None = None) -> DeltaTable:
        """A delta-rs handle on the table (raises `TableNotFoundError` if it does not exist)."""
        return DeltaTable(uri, version=version, storage_options=self.storage_options or None)

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

    def arrow_schema(self, uri: str) -> pa.Schema:
        return pa.schema(self.delta_table(uri).schema().to_arrow())


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
