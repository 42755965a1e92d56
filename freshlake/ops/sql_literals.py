"""Spark SQL literals for values that come from users (ids), safely quoted."""

from __future__ import annotations

from collections.abc import Iterable


def sql_string(value: str) -> str:
    """A Spark SQL string literal (backslash escapes, the parser's default)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """`column IN (...)` for a non-empty list of strings."""
    return f"`{column}` IN ({', '.join(sql_string(v) for v in values)})"
