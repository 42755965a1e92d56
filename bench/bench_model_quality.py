"""Model quality of the reference trainer: eval metrics of 1-epoch runs over a grid of settings
(seed to seed mean and spread), beside the per-item popularity baseline of the same card.

    .venv/bin/python bench/bench_model_quality.py --lake LAKE [--seeds 0,1,2] [SETTINGS_JSON ...]

LAKE holds the `examples` table built as the README shows (generate-logs --impressions 200000
--seed 5, ingest, item-stats, build-training-set over the week). Each SETTINGS_JSON updates the
`training` config, e.g. '{"learning_rate": 0.05}'; the default grid is the one in the README.
Runs are in-process with one process and twice the per-process batch, which is what
`freshlake train --nproc 2` steps on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
from freshlake.training.launch import make_job  # noqa: E402
from freshlake.training.trainer import train  # noqa: E402

GRID = [
    {},
    {"refit_output_bias": False},
    {"learning_rate": 0.01},
    {"learning_rate": 0.05},
    {"batch_size": 512},
    {"batch_size": 128},
    {"embedding_dim": 8},
    {"embedding_dim": 32},
    {"optimizer": "adam", "learning_rate": 0.003},
    {"epochs": 2},
    {"epochs": 3},
]
METRICS = ("auc", "normalized_entropy", "calibration")


def run(lake: str, settings: dict, seed: int, out: str) -> dict:
    config = load_config(REPO / "conf" / "local.yaml", {"lake.root": lake})
    training = {"num_workers": 0, "checkpoint_every": 10**9, "seed": seed, **settings}
    training["batch_size"] = 2 * training.get("batch_size", config.training.batch_size)
    config = config.model_copy(update={"training": config.training.model_copy(update=training)})
    with contextlib.redirect_stderr(io.StringIO()):
        card = train(make_job(config, out))
    return card["metrics"]["eval"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("settings", nargs="*", help="training settings as JSON (default: grid)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        os.environ.pop(name, None)
    grid = [json.loads(s) for s in args.settings] or GRID
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'settings':48s} {'AUC':>15s} {'NE':>15s} {'calibration':>15s}")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, settings in enumerate(grid):
            results = [run(args.lake, settings, s, f"{tmp}/{i}-{s}") for s in seeds]
            baseline = results[0]["popularity_baseline"]
            cells = []
            for metric in METRICS:
                values = np.array([r["model"][metric] for r in results])
                cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
            print(
                f"{json.dumps(settings) or 'defaults':48s} " + " ".join(f"{c:>15s}" for c in cells)
            )
    if baseline:
        row = " ".join(f"{baseline[m]:>15.3f}" for m in METRICS)
        print(f"{'popularity baseline (same cards)':48s} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
