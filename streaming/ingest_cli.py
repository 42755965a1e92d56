"""`freshlake stream-ingest`: Kafka topics -> impressions / actions Delta tables (bronze)."""

from __future__ import annotations

import argparse
import sys

HELP = "stream the impressions/actions topics into Delta with validation and quarantine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=["impressions", "actions"],
        default=["impressions", "actions"],
        help="which topics to ingest (default both)",
    )
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="process what is in the topics now, then stop (trigger availableNow)",
    )
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark
    from freshlake.streaming.bronze import bronze_query_name, start_bronze_ingest
    from freshlake.streaming.metrics import MetricsRecorder
    from freshlake.streaming.queries import metrics_log_path, run_until_done

    config = args.config
    spark = get_spark(config)
    lake = open_lake(config, spark)
    queries = []
    for kind in args.kinds:
        name = bronze_query_name(kind)
        recorder = MetricsRecorder(name, metrics_log_path(config, name), lake)
        query = start_bronze_ingest(
            spark, config, lake, kind, recorder, available_now=args.available_now
        )
        queries.append((query, recorder))
    run_until_done(queries, seconds=args.seconds)
    return 0


if __name__ == "__main__":
    from freshlake.cli import run_module

    sys.exit(run_module("freshlake.streaming.ingest_cli"))
