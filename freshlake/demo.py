"""`freshlake demo`: the batch pipeline on the embedded default, step by step, then a summary.

Each step is the very command a user would type, run in this process (one Spark session), so the
demo doubles as a walkthrough: generate logs -> ingest -> item stats -> build the training set ->
train with torchrun DDP, then every table with its row count and Delta version.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path

HELP = "run the pipeline on the embedded default and print the tables it wrote"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work-dir", default="out/demo", help="generated logs and model (out/demo)"
    )
    parser.add_argument("--impressions", type=int, default=200_000, help="impressions to generate")
    parser.add_argument("--no-train", action="store_true", help="stop after the training set")


# The monitor exits 3 when an alert fires: worth showing, not a failed demo.
ALERT_EXIT = 3


def _step(title: str, argv: list[str]) -> float:
    from freshlake.cli import main

    print(f"\n=== {title}\n$ freshlake {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    allowed = {0, ALERT_EXIT} if argv[0] == "monitor" else {0}
    if code not in allowed:
        raise SystemExit(f"demo step failed ({code}): freshlake {' '.join(argv)}")
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark

    config = args.config
    work = Path(args.work_dir)
    common = ["--config", args.config_path] if args.config_path else []
    for override in args.overrides:
        common += ["--set", override]
    end = (config.generate.start + timedelta(days=config.generate.days)).isoformat()
    days = str(config.generate.days)
    steps = [
        (
            "generate synthetic logs",
            [
                "generate-logs",
                "--out",
                str(work / "logs"),
                "--impressions",
                str(args.impressions),
                "--overwrite",
                *common,
            ],
        ),
        (
            "ingest them into Delta (bad records to quarantine)",
            ["ingest", "--logs", str(work / "logs"), *common],
        ),
        (
            "per-item statistics over the window",
            ["item-stats", "--end", end, "--window-days", days, *common],
        ),
        (
            "build the sampled, weighted training set",
            ["build-training-set", "--end", end, "--window-days", days, *common],
        ),
    ]
    if not args.no_train:
        steps.append(
            (
                "train the CTR model with torchrun DDP (2 CPU processes)",
                ["train", "--out", str(work / "model"), "--nproc", "2", "--epochs", "3", *common],
            )
        )
        model = ["--model", str(work / "model")]
        steps += [
            ("data-quality monitors (exit 3 when an alert fires)", ["monitor", *model, *common]),
            ("HTML report", ["report", "--out", str(work / "report.html"), *model, *common]),
        ]
    timings = {title: _step(title, argv) for title, argv in steps}

    spark = get_spark(config)
    lake = open_lake(config, spark)
    print(f"\n=== summary: lake at {lake.root}")
    print(f"{'table':18s} {'rows':>12s} {'version':>8s}")
    for name in lake.table_names():
        print(f"{name:18s} {lake.read(name).count():12,d} {lake.version(name):8d}")
    for title, seconds in timings.items():
        print(f"{seconds:7.1f} s  {title}")
    if not args.no_train:
        print(f"\nreport: {(work / 'report.html').resolve()}")
    print(
        "\nquery it, e.g.:\n"
        '  freshlake sql "SELECT dt, count(*) rows, sum(weight) est_impressions, '
        'sum(label * weight) / sum(weight) ctr FROM examples GROUP BY dt ORDER BY dt"'
    )
    return 0
