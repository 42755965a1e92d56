"""Compact small files and vacuum removed ones, for every table or the ones named."""

from __future__ import annotations

import argparse
import sys

from freshlake.cli import run_module

HELP = "compact small files and vacuum removed files of the lake's tables (safe while streaming)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tables", nargs="*", help="tables to maintain (default: all)")
    parser.add_argument("--no-compact", action="store_true", help="only vacuum")
    parser.add_argument("--no-vacuum", action="store_true", help="only compact")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.ops.maintenance import compact_table, vacuum_table
    from freshlake.spark import get_spark

    cfg = args.config.maintenance
    lake = open_lake(args.config, get_spark(args.config))
    for table in args.tables or lake.table_names():
        line = f"{table:18s}"
        if not args.no_compact:
            done = compact_table(lake, table, cfg)
            line += f" compacted {done.files_before} files in {done.partitions} partitions"
            line += f" into {done.files_after} (version {done.version})"
        if not args.no_vacuum:
            removed = vacuum_table(lake, table, cfg.vacuum_retention_hours)
            line += f"; vacuumed {'?' if removed is None else len(removed)} files"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.maintain"))
