"""Write the HTML report (plots from the tables and the newest monitor results)."""

from __future__ import annotations

import argparse
import sys

from freshlake.cli import run_module

HELP = "HTML report: CTR, source shares, strata, calibration, streaming latency, monitors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="report.html", help="HTML file to write (report.html)")
    parser.add_argument("--model", default=None, help="model folder for the calibration curve")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.report import build_report, write_report
    from freshlake.spark import get_spark

    config = args.config
    lake = open_lake(config, get_spark(config))
    path = write_report(args.out, build_report(lake, config, args.model))
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.report"))
