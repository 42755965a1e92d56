"""Data-quality monitors over the lake; exit code 3 when any alert fires (for schedulers)."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from freshlake.cli import run_module

HELP = "data-quality monitors (source shares, volume/CTR, skew, label coverage, freshness)"

ALERT_EXIT_CODE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--date", type=date.fromisoformat, default=None, help="day to check (default: newest)"
    )
    parser.add_argument("--model", default=None, help="model folder whose age to check")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.monitor import MONITOR_TABLE, format_results, run_monitors, write_results
    from freshlake.runs import JobRun
    from freshlake.spark import get_spark

    config = args.config
    lake = open_lake(config, get_spark(config))
    with JobRun("monitor", config, lake) as run:
        with run.timed("checks"):
            results = run_monitors(lake, config, args.date, args.model)
        alerts = [r for r in results if r.alert]
        run.count(checks=len(results), alerts=len(alerts))
        run.details["alerts"] = [f"{r.name} {r.subject}: {r.detail}" for r in alerts]
        version = write_results(lake, results, run.run_id, run.started_at)
        if version is not None:
            run.output_versions[MONITOR_TABLE] = version
    print(format_results(results))
    print(f"\n{len(alerts)} alert(s) of {len(results)} checks; written to {MONITOR_TABLE}")
    return ALERT_EXIT_CODE if alerts else 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.monitor"))
