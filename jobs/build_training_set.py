"""Build the `examples` training set for a time window (docs/design.md section 3).

freshlake build-training-set --end 2026-01-08 --window-days 7
freshlake build-training-set --start 2026-01-01 --end 2026-01-08 --actions-until 2026-01-08T06:00
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from freshlake.cli import run_module

HELP = "build the sampled, weighted `examples` table for a time window from impressions + actions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--end",
        type=date.fromisoformat,
        required=True,
        help="window end date (exclusive), e.g. 2026-01-08",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--start", type=date.fromisoformat, help="window start date (inclusive)")
    group.add_argument(
        "--window-days", type=int, help="window length in days (default: window.days)"
    )
    parser.add_argument(
        "--actions-until",
        type=_utc_datetime,
        help="the action log is complete up to this time (default: its latest action_at)",
    )


def _utc_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run(args: argparse.Namespace) -> int:
    from freshlake.batch.training_set import QualityError, build_training_set
    from freshlake.batch.window import TimeWindow
    from freshlake.lake import open_lake
    from freshlake.runs import JobRun
    from freshlake.spark import get_spark

    config = args.config
    if args.start is not None:
        window = TimeWindow(args.start, args.end)
    else:
        window = TimeWindow.ending(args.end, args.window_days or config.window.days)
    lake = open_lake(config, get_spark(config))
    try:
        with JobRun("build-training-set", config, lake) as run_record:
            report = build_training_set(lake, config, window, run_record, args.actions_until)
    except QualityError as exc:
        print(f"build-training-set failed: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.build_training_set"))
