"""`freshlake stream-join`: the online joiner, impressions x actions -> `fresh_examples`."""

from __future__ import annotations

import argparse
import sys

HELP = "join the impressions and actions topics into labeled, sampled fresh_examples (exactly once)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="process what is in the topics now, then stop (trigger availableNow); negatives "
        "whose window closes only with the last events wait for the next run, as Spark moves "
        "the watermark after a restart once every input has new data",
    )
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark
    from freshlake.streaming.join_plan import JOINER_QUERY
    from freshlake.streaming.joiner import start_joiner
    from freshlake.streaming.metrics import MetricsRecorder
    from freshlake.streaming.queries import metrics_log_path, run_until_done

    config = args.config
    spark = get_spark(config)
    lake = open_lake(config, spark)
    recorder = MetricsRecorder(JOINER_QUERY, metrics_log_path(config, JOINER_QUERY), lake)
    query = start_joiner(spark, config, lake, recorder, available_now=args.available_now)
    run_until_done([(query, recorder)], seconds=args.seconds)
    return 0


if __name__ == "__main__":
    from freshlake.cli import run_module

    sys.exit(run_module("freshlake.streaming.join_cli"))
