"""`freshlake sql`: Spark SQL over every lake table by name, rendered as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampNTZType, TimestampType

from freshlake.lake import Lake

OutputFormat = Literal["table", "csv", "json"]
NULL_TEXT = "NULL"


@dataclass(frozen=True)
class QueryResult:
    """The first rows of a query's result, and whether more rows were left out."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def run_query(spark: SparkSession, lake: Lake, sql: str) -> DataFrame:
    """The query's DataFrame, with every table of the lake registered as a view by name."""
    lake.register_views()
    return spark.sql(sql)


def fetch(df: DataFrame, limit: int | None) -> QueryResult:
    """Collect at most `limit` rows (all when None); timestamps as UTC text, not local time."""
    as_text = [
        F.col(f"`{f.name}`").cast("string").alias(f.name)
        if isinstance(f.dataType, TimestampType | TimestampNTZType)
        else F.col(f"`{f.name}`")
        for f in df.schema.fields
    ]
    shown = df.select(*as_text)
    rows = (shown if limit is None else shown.limit(limit + 1)).collect()
    truncated = limit is not None and len(rows) > limit
    return QueryResult(
        columns=list(df.columns),
        rows=[[_plain(v) for v in row] for row in rows[:limit]],
        truncated=truncated,
    )


def _plain(value: Any) -> Any:
    """Python values JSON can hold: structs as dicts, maps/arrays as dicts/lists."""
    if isinstance(value, Row):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _text(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_table(result: QueryResult, max_width: int = 60) -> str:
    """An aligned text table; numbers right-aligned, long cells cut at `max_width`."""

    def cut(text: str) -> str:
        return text if max_width <= 0 or len(text) <= max_width else text[: max_width - 3] + "..."

    cells = [[cut(_text(v, NULL_TEXT)) for v in row] for row in result.rows]
    widths = [
        max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(result.columns)
    ]
    numeric = [
        bool(result.rows)
        and all(isinstance(row[i], int | float) or row[i] is None for row in result.rows)
        for i in range(len(result.columns))
    ]

    def line(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(result.columns), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    count = len(result.rows)
    out.append(
        f"({count} rows shown; more left out, raise --limit or use --limit 0)"
        if result.truncated
        else f"({count} row{'s' if count != 1 else ''})"
    )
    return "\n".join(out)


def render_csv(result: QueryResult) -> str:
    """CSV with a header; NULL is an empty field, nested values JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([_text(v, "") for v in row] for row in result.rows)
    return buffer.getvalue().rstrip("\n")


def render_json(result: QueryResult) -> str:
    """JSON Lines: one object per row."""
    return "\n".join(
        json.dumps(dict(zip(result.columns, row, strict=True)), default=str) for row in result.rows
    )


def render(result: QueryResult, fmt: OutputFormat, max_width: int = 60) -> str:
    """The result in `fmt` (table, csv or json)."""
    if fmt == "csv":
        return render_csv(result)
    if fmt == "json":
        return render_json(result)
    return render_table(result, max_width)
