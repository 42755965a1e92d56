"""Hive-style partition folders (`dt=2026-01-01/region=a%2Fb`) and Delta's partition value strings.

Both writers lay files out this way: Spark's Parquet writer for DataFrames, pyarrow on the driver
for `append_arrow`. The Delta log, not the folder name, is what readers take partition values
from; the driver reads them back from the folders Spark wrote to build its Add actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from urllib.parse import quote, unquote

# The folder name of a NULL partition value (Hive's and Spark's).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def partition_value_string(value: object) -> str | None:
    """How Delta stores a partition value in the log: a string, None for null."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def partition_dir(columns: Sequence[str], values: Sequence[str | None]) -> str:
    """The folder path of one partition: `col=value/...`, values percent-escaped."""
    return "/".join(
        f"{col}={NULL_PARTITION if v is None else quote(v, safe='')}"
        for col, v in zip(columns, values, strict=True)
    )


def partition_values(folders: Sequence[str], columns: Sequence[str]) -> dict[str, str | None]:
    """The partition values that folder names such as `["dt=2026-01-01"]` encode, by column.

    `folders` are the path components between the write's folder and the file, one per
    partition column in order; escapes are undone and the NULL folder gives None.
    """
    if len(folders) != len(columns):
        raise ValueError(f"expected partition folders for {list(columns)}, got {list(folders)}")
    values: dict[str, str | None] = {}
    for folder, column in zip(folders, columns, strict=True):
        name, sep, text = folder.partition("=")
        if not sep or unquote(name) != column:
            raise ValueError(f"folder {folder!r} is not a partition folder of column {column!r}")
        values[column] = None if text == NULL_PARTITION else unquote(text)
    return values
