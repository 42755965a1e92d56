"""`freshlake ingest-obd`: the Open Bandit Dataset sample as impressions and click actions."""

from __future__ import annotations

import argparse
import sys

from freshlake.cli import run_module

HELP = (
    "Ingest the Open Bandit Dataset CSVs (random|bts x men|women) into the impressions and "
    "actions tables: one impression per row, a click action at served_at + 1 s per clicked row."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from freshlake.ingest import OBD_DIR

    parser.add_argument(
        "--dir",
        default=OBD_DIR,
        help=f"folder holding <policy>_<campaign>.csv files (default: {OBD_DIR})",
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.ingest.obd import ingest_obd
    from freshlake.spark import get_spark

    try:
        summary = ingest_obd(args.config, get_spark(args.config), args.dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"freshlake ingest-obd: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.ingest_obd"))
