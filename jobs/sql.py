"""`freshlake sql "SELECT ..."`: Spark SQL with every lake table registered by name."""

from __future__ import annotations

import argparse
import sys

from freshlake.cli import run_module

HELP = (
    "Run Spark SQL over the lake's tables (each registered by name, read through the Delta "
    "log) and print the result as a table, CSV or JSON lines."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "query", help='the SQL, e.g. "SELECT dt, count(*) FROM impressions GROUP BY dt"'
    )
    parser.add_argument(
        "--format",
        default="table",
        choices=["table", "csv", "json"],
        help="output: aligned table (default), CSV with header, or JSON lines",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=100,
        help="print at most N rows (default 100; 0 = all); a note on stderr says when rows were left out",
    )
    parser.add_argument(
        "--max-width", type=int, default=60, help="cut table cells longer than this (0 = never)"
    )


def run(args: argparse.Namespace) -> int:
    from pyspark.errors import AnalysisException, ParseException

    from freshlake.lake import open_lake
    from freshlake.query import fetch, render, run_query
    from freshlake.spark import get_spark

    spark = get_spark(args.config)
    try:
        df = run_query(spark, open_lake(args.config, spark), args.query)
        result = fetch(df, args.limit if args.limit > 0 else None)
    except (AnalysisException, ParseException) as exc:
        print(f"freshlake sql: {exc}", file=sys.stderr)
        return 2
    print(render(result, args.format, args.max_width))
    if result.truncated and args.format != "table":
        print(f"freshlake sql: output cut at --limit {args.limit} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.sql"))
