"""`freshlake parity`: compare fresh_examples (stream) with examples (batch), report differences."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


HELP = "compare fresh_examples with the batch examples of the same logs; exit 1 on any difference"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days",
        nargs="+",
        type=date.fromisoformat,
        help="dt partitions (default: all of examples)",
    )
    parser.add_argument(
        "--until",
        type=_utc,
        help="compare impressions whose window closed before this (default: the earlier of the "
        "joiner's watermark and the batch build's actions_until)",
    )
    parser.add_argument("--max-examples", type=int, default=20, help="differing values to show")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark
    from freshlake.streaming.parity import compare

    config = args.config
    lake = open_lake(config, get_spark(config))
    report = compare(lake, config, args.days, args.until, args.max_examples)
    print(report.as_json())
    return 1 if report.differences else 0


if __name__ == "__main__":
    from freshlake.cli import run_module

    sys.exit(run_module("freshlake.streaming.parity_cli"))
