"""Delayed-feedback handling measured on one constructed stream: a fresh model trained with each
`training.delayed_feedback` mode, warm-started from the batch model and from scratch, evaluated
on the complete eval day.

    .venv/bin/python bench/bench_delayed_feedback.py [--impressions 400000] [--seed 5]

The stream is `training/synthetic.py` `delayed_feedback_stream`: a logistic truth over four
3-hour days; day 3 is `fresh_examples` as the joiner has written it at the end of its traffic
(one-hour window: the last hour holds only the clicks that have arrived), the others the batch
`examples`. The README's table was printed by this script.
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

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.config import load_config  # noqa: E402
from freshlake.training.launch import make_job  # noqa: E402
from freshlake.training.scoring import evaluate_saved_model  # noqa: E402
from freshlake.training.synthetic import (  # noqa: E402
    SYNTHETIC_SPEC,
    delayed_feedback_stream,
    write_synthetic_table,
)
from freshlake.training.trainer import train  # noqa: E402

MODES = ("none", "matured_only", "importance")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        root = f"{tmp}/lake"
        examples, fresh, _ = delayed_feedback_stream(args.impressions, seed=args.seed)
        write_synthetic_table(f"{root}/examples", examples)
        write_synthetic_table(f"{root}/fresh_examples", fresh)

        def config(**training):
            c = load_config(None, {"lake.root": root})
            return c.model_copy(
                update={
                    "features": c.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
                    "training": c.training.model_copy(update={"num_workers": 0, **training}),
                }
            )

        def fit(c, out, warm_start=None) -> str:
            with contextlib.redirect_stderr(io.StringIO()):
                train(make_job(c, out, warm_start=warm_start))
            m = evaluate_saved_model(c, out, table="examples")["metrics"]["model"]
            return f"{m['auc']:.3f} / {m['normalized_entropy']:.3f} / {m['calibration']:.3f}"

        base = f"{tmp}/base"
        print(f"batch model (AUC / NE / calibration): {fit(config(), base)}")
        print(f"{'fresh model':14s} " + " ".join(f"{m:>24s}" for m in MODES))
        for start in ("warm start", "from scratch"):
            cells = []
            for mode in MODES:
                c = config(table="fresh_examples", delayed_feedback=mode)
                warm = base if start == "warm start" else None
                cells.append(fit(c, f"{tmp}/{mode}-{start[0]}", warm))
            print(f"{start:14s} " + " ".join(f"{c:>24s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
