"""Delayed-feedback handling measured on one constructed stream: a fresh model trained with each
`training.delayed_feedback` mode, warm-started from the batch model and from scratch, evaluated
on the complete eval day.

    .venv/bin/python bench/bench_delayed_feedback.py [--impressions 400000] [--seeds 5 6 7]

The stream is `training/synthetic.py` `delayed_feedback_stream`: a logistic truth over four
3-hour days; day 3 is `fresh_examples` as the joiner has written it at the end of its traffic
(one-hour window: the last hour holds only the clicks that have arrived), the others the batch
`examples`. Each cell: AUC / NE / calibration [its 95% interval over the eval rows], then the
model's predicted clicks over the truth's expected clicks on the same rows (`true_ctr`: no label
noise); the mean over seeds, and each seed's calibration when there are several. The README's
table was printed by this script.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.config import load_config  # noqa: E402
from freshlake.training.artifact import load_model, read_card  # noqa: E402
from freshlake.training.evaluate import predict_split  # noqa: E402
from freshlake.training.launch import make_job  # noqa: E402
from freshlake.training.metrics import evaluate_predictions  # noqa: E402
from freshlake.training.scoring import card_layout  # noqa: E402
from freshlake.training.snapshot import open_snapshot  # noqa: E402
from freshlake.training.synthetic import (  # noqa: E402
    SYNTHETIC_SPEC,
    delayed_feedback_stream,
    write_synthetic_table,
)
from freshlake.training.trainer import train  # noqa: E402
from freshlake.training.units import plan_units  # noqa: E402

MODES = ("none", "matured_only", "importance")
ROWS = ("batch model", "warm start", "from scratch")


def measure(seed: int, impressions: int, tmp: str) -> dict[tuple[str, str], dict[str, float]]:
    """Every model of one stream: (row, mode) -> metrics on the complete eval day."""
    root = f"{tmp}/lake-{seed}"
    examples, fresh, _ = delayed_feedback_stream(impressions, seed=seed)
    write_synthetic_table(f"{root}/examples", examples)
    write_synthetic_table(f"{root}/fresh_examples", fresh)
    eval_units = plan_units(open_snapshot(f"{root}/examples", None))

    def config(**training):
        c = load_config(None, {"lake.root": root})
        return c.model_copy(
            update={
                "features": c.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
                "training": c.training.model_copy(update={"num_workers": 0, **training}),
            }
        )

    def fit(c, out, warm_start=None) -> dict[str, float]:
        with contextlib.redirect_stderr(io.StringIO()):
            train(make_job(c, out, warm_start=warm_start))
        layout = card_layout(read_card(out))
        rows = predict_split(load_model(out), eval_units, layout, "eval", extras=("true_ctr",))
        metrics = evaluate_predictions(rows.label, rows.pred, rows.weight)
        truth = rows.extras["true_ctr"]
        metrics["vs_truth"] = float((rows.weight * rows.pred).sum() / (rows.weight * truth).sum())
        return metrics

    base = f"{tmp}/base-{seed}"
    out = {("batch model", "-"): fit(config(), base)}
    for row in ROWS[1:]:
        for mode in MODES:
            c = config(table="fresh_examples", delayed_feedback=mode)
            warm = base if row == "warm start" else None
            out[(row, mode)] = fit(c, f"{tmp}/{mode}-{row[0]}-{seed}", warm)
    return out


def cell(runs: list[dict[str, float]]) -> str:
    """AUC / NE / calibration [interval] / vs truth: one run, or the mean and range of several."""
    mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    text = (
        f"{mean['auc']:.3f} / {mean['normalized_entropy']:.3f} / {mean['calibration']:.3f} "
        f"[{mean['calibration_ci_low']:.2f}, {mean['calibration_ci_high']:.2f}] / "
        f"{mean['vs_truth']:.3f}"
    )
    if len(runs) > 1:
        text += " (calibration by seed: " + ", ".join(f"{r['calibration']:.3f}" for r in runs) + ")"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=400_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(seed, args.impressions, tmp) for seed in args.seeds]
    print(
        f"seeds {args.seeds}; each cell: AUC / NE / calibration [95% interval] / "
        "predicted over the truth's expected clicks"
    )
    print(f"{'batch model':14s} {cell([r[('batch model', '-')] for r in runs])}")
    for row in ROWS[1:]:
        for mode in MODES:
            print(f"{row:14s} {mode:13s} {cell([r[(row, mode)] for r in runs])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
