"""`freshlake ingest`: impression/action log files (JSONL, CSV, Parquet) into Delta tables."""

from __future__ import annotations

import argparse
import sys

from freshlake.cli import run_module

HELP = (
    "Validate impression/action files into the impressions/actions Delta tables; rejected "
    "records go to quarantine. Re-ingesting a file is a no-op. Duplicates are kept (the "
    "training-set builder deduplicates)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impressions",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="impression files, globs or directories (local or any URL Spark reads)",
    )
    parser.add_argument(
        "--actions",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="action files, globs or directories",
    )
    parser.add_argument(
        "--logs",
        metavar="DIR",
        help="a generate-logs folder: ingests DIR/impressions and DIR/actions",
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "jsonl", "csv", "parquet"],
        help="input format (default: from each file's extension; .jsonl/.json/.ndjson, .csv, "
        ".parquet, optionally compressed)",
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.ingest.files import ingest_files, logs_layout
    from freshlake.spark import get_spark

    inputs = {"impressions": list(args.impressions), "actions": list(args.actions)}
    if args.logs:
        for kind, paths in logs_layout(args.logs).items():
            inputs[kind] += paths
    if not any(inputs.values()):
        print("freshlake ingest: give --impressions, --actions or --logs", file=sys.stderr)
        return 2
    try:
        summary = ingest_files(args.config, get_spark(args.config), inputs, args.format)
    except (FileNotFoundError, ValueError) as exc:
        print(f"freshlake ingest: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.ingest"))
