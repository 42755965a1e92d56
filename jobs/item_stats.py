"""Compute per-item impressions and clicks over a trailing window into the `item_stats` table.

freshlake item-stats --end 2026-01-08 --window-days 7
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from freshlake.cli import run_module

HELP = "per-item impressions and clicks over a trailing window, written to the item_stats table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--end", type=date.fromisoformat, required=True, help="window end date (exclusive)"
    )
    parser.add_argument(
        "--window-days",
        type=int,
        default=None,
        help="window length in days (default: sampling.rare_item.window_days)",
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.batch.item_stats import write_item_stats
    from freshlake.batch.window import TimeWindow
    from freshlake.lake import open_lake
    from freshlake.runs import JobRun
    from freshlake.spark import get_spark

    config = args.config
    days = args.window_days or config.sampling.rare_item.window_days
    window = TimeWindow.ending(args.end, days)
    lake = open_lake(config, get_spark(config))
    with JobRun("item-stats", config, lake) as run_record:
        with run_record.timed("item_stats"):
            result = write_item_stats(lake, config, window, run_record.run_id)
        run_record.input_versions.update(result.input_versions)
        if result.version is not None:
            run_record.output_versions["item_stats"] = result.version
        run_record.count(items=result.items, impressions=result.impressions, clicks=result.clicks)
        run_record.details["window"] = str(window)
    print(
        f"item_stats {window}: {result.items:,} items, {result.impressions:,} impressions, "
        f"{result.clicks:,} clicks (item_stats version {result.version})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.item_stats"))
