"""Trainer throughput on CPU: training samples/s of `freshlake train`, one process and 2-process
DDP (gloo) under torchrun, on the same synthetic examples table.

    .venv/bin/python bench/bench_trainer.py [--rows 200000] [--batch-size 1024] [--epochs 1]

The figure is rows consumed / seconds in the training loop (the model card's
`samples_per_second`), so process start-up and the final evaluation are not counted; the
2-process line also prints its ratio to the single process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.config import load_config  # noqa: E402
from freshlake.training.artifact import read_card  # noqa: E402
from freshlake.training.launch import Topology, make_job, run_torchrun  # noqa: E402
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="impressions (all kept)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers per process")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_table(
            f"{tmp}/lake/examples", synthetic_examples(args.rows, seed=1, negative_rate=1.0)
        )
        config = load_config(REPO / "conf" / "local.yaml", {"lake.root": f"{tmp}/lake"})
        training = config.training.model_copy(
            update={
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "num_workers": args.workers,
                "checkpoint_every": 10**9,
            }
        )
        config = config.model_copy(
            update={
                "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
                "training": training,
            }
        )
        print(
            f"{args.rows} rows, batch {args.batch_size}, {args.epochs} epoch(s), "
            f"{args.workers} loader worker(s) per process, CPU"
        )
        baseline = None
        for nproc in args.nproc:
            out = Path(tmp) / f"out{nproc}"
            start = time.perf_counter()
            status = run_torchrun(make_job(config, out), Topology(nproc=nproc))
            wall = time.perf_counter() - start
            if status != 0:
                print(f"nproc={nproc}: torchrun failed with status {status}")
                return 1
            training_card = read_card(out)["training"]
            speed = training_card["samples_per_second"]
            baseline = baseline or speed
            print(
                f"nproc={nproc} ({training_card['backend']}): {speed:>10,.0f} samples/s in the "
                f"loop ({training_card['loop_seconds']} s; {wall:.1f} s wall with start-up "
                f"and eval)  {speed / baseline:.2f}x 1 process"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
