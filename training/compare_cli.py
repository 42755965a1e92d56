"""`freshlake compare-models A B`: prediction difference between two models on the same rows."""

from __future__ import annotations

import argparse
import json

HELP = "compare two models on the same eval rows: prediction difference (PD) and metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_a")
    parser.add_argument("model_b")
    parser.add_argument("--table", default=None, help="default: the table model A trained on")
    parser.add_argument("--version", type=int, default=None, help="default: model A's version")


def run(args: argparse.Namespace) -> int:
    from freshlake.training.scoring import compare_saved_models

    report = compare_saved_models(args.config, args.model_a, args.model_b, args.table, args.version)
    print(json.dumps(report, indent=2, default=str))
    return 0
