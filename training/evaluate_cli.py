"""`freshlake evaluate`: weighted metrics of a trained model on a snapshot's eval split."""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a model on the eval split: AUC, log loss, normalized entropy, calibration"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder written by `freshlake train`")
    parser.add_argument("--table", default=None, help="default: the table the model trained on")
    parser.add_argument("--version", type=int, default=None, help="default: the model's version")
    parser.add_argument(
        "--negative-rate",
        type=float,
        default=None,
        help="also report predictions corrected by q = p/(p+(1-p)/r) for a model trained "
        "without weights on negatives kept at rate r",
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.training.scoring import evaluate_saved_model

    report = evaluate_saved_model(
        args.config, args.model, args.table, args.version, args.negative_rate
    )
    print(json.dumps(report, indent=2, default=str))
    return 0
