"""Loader throughput beside a raw pyarrow read of the same files (the ceiling), one run.

    .venv/bin/python bench/bench_loader.py [--rows 1000000] [--batch-size 4096] [--repeat 5]

Every loader reads the same snapshot columns (the layout's 10: features, label, weight) and
delivers torch batches, shuffled; the raw read only decodes the same row groups into Arrow.
Measured, each `--repeat` times in turns (best wall time and its CPU time are printed):

- raw pyarrow: `read_row_group` of every work unit (pyarrow's own threads);
- the default loader in both shuffle modes (`training.shuffle`: blocks, the default, and rows),
  with 0 workers (decode in the consuming thread, reads a block ahead in a thread) and 2 workers
  (2 shards, read ahead in one thread, decoded by `loader_threads(2)` threads: 0 on 2 cores,
  where the consuming thread decodes; printed in the header);
- torch's DataLoader over the same dataset with 2 worker processes, for reference;
- a no-op training step fed as the trainer feeds it (`train_dataset` / `epoch_batches`: train
  split only, `training.num_workers`, `batch.to(device)`): the batches/s and rows/s it receives;
- Petastorm in its own environment, when `.venv-petastorm` exists (`make test-petastorm`).

CPU time counts every thread of the process; on a shared machine it is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.training.batch import FeatureLayout  # noqa: E402
from freshlake.training.snapshot import open_snapshot  # noqa: E402
from freshlake.training.synthetic import SYNTHETIC_SPEC  # noqa: E402

PETASTORM_VENV = REPO / ".venv-petastorm"
PETASTORM_PYTHON = PETASTORM_VENV / "bin" / "python"


def timed(count_rows: Callable[[], int]) -> dict[str, float]:
    """Rows, wall and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    rows = count_rows()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rows": rows, "seconds": round(wall, 4), "cpu_seconds": round(cpu, 4)}


def raw_pyarrow(uri: str, layout: FeatureLayout) -> int:
    from freshlake.training.units import open_file, plan_units

    columns = layout.columns()
    return sum(
        open_file(u.uri).read_row_group(u.row_group, columns=columns).num_rows
        for u in plan_units(open_snapshot(uri))
    )


def dataset(uri: str, layout: FeatureLayout, batch_size: int, shuffle: str = "blocks"):
    from freshlake.training.dataset import DeltaExamples
    from freshlake.training.units import plan_units

    units = plan_units(open_snapshot(uri))
    return DeltaExamples(
        units, layout, batch_size=batch_size, shuffle=shuffle, shuffle_buffer=65_536
    )


def default_loader(
    uri: str, layout: FeatureLayout, batch_size: int, workers: int, shuffle: str
) -> int:
    return sum(len(b) for b in dataset(uri, layout, batch_size, shuffle).batches(workers))


def dataloader_processes(uri: str, layout: FeatureLayout, batch_size: int, workers: int) -> int:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset(uri, layout, batch_size), batch_size=None, num_workers=workers)
    return sum(len(b) for b in loader)


def noop_training(
    uri: str, layout: FeatureLayout, batch_size: int, shuffle: str, steps: list[int]
) -> int:
    """Rows a training loop that does nothing with its batches receives, fed by the trainer's
    own loader set-up; appends the number of steps to `steps`."""
    from freshlake.config import Config
    from freshlake.training.checkpoint import TrainState
    from freshlake.training.distributed import DistContext
    from freshlake.training.trainer import epoch_batches, train_dataset
    from freshlake.training.units import plan_units

    config = Config()
    config.training.batch_size = batch_size
    config.training.shuffle = shuffle
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=_device(), backend=None)
    snapshot = open_snapshot(uri)
    data = train_dataset(config, plan_units(snapshot), layout, ctx)
    rows = count = 0
    for batch in epoch_batches(config, data, snapshot, TrainState(n_shards=1)):
        batch = batch.to(ctx.device)
        rows, count = rows + len(batch), count + 1
    steps.append(count)
    return rows


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def petastorm_loader(uri: str, layout: FeatureLayout, batch_size: int) -> int:
    from freshlake.training.petastorm_loader import petastorm_batches

    files = [f.uri for f in open_snapshot(uri).files]
    return sum(len(b) for b in petastorm_batches(files, layout, batch_size=batch_size))


def run_petastorm_env(uri: str, batch_size: int) -> dict | str:
    if not (PETASTORM_VENV / ".installed").exists():
        return "skipped: no .venv-petastorm (make test-petastorm builds it)"
    cmd = [str(PETASTORM_PYTHON), "-W", "ignore", __file__, "--petastorm-only", uri]
    cmd += ["--batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "rows_per_s": round(best["rows"] / best["seconds"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rows-per-group", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, in turns")
    parser.add_argument("--petastorm-only", metavar="URI", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.petastorm_only:
        layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, open_snapshot(args.petastorm_only).columns)
        print(
            json.dumps(
                timed(lambda: petastorm_loader(args.petastorm_only, layout, args.batch_size))
            )
        )
        return 0

    import pandas  # noqa: F401  pyarrow imports it on first use; keep that out of the timings

    from freshlake.training.dataset import loader_threads
    from freshlake.training.synthetic import synthetic_examples, write_synthetic_table

    steps: dict[str, list[int]] = {"blocks": [], "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"{tmp}/examples"
        table = synthetic_examples(args.rows, seed=1, negative_rate=1.0)
        write_synthetic_table(uri, table, rows_per_group=args.rows_per_group)
        snapshot = open_snapshot(uri)
        layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, snapshot.columns)
        print(
            f"table: {snapshot.num_rows} rows, {len(snapshot.files)} files, "
            f"{len(layout.columns())} columns read, batch {args.batch_size}, "
            f"best of {args.repeat}; 2 workers: {loader_threads(2)} decoding thread(s) here "
            "(0: the consuming thread decodes, the shards read ahead in one thread)"
        )
        size = args.batch_size
        cases: dict[str, Callable[[], int]] = {
            "raw pyarrow (ceiling)": lambda: raw_pyarrow(uri, layout)
        }
        for mode in ("blocks", "rows"):
            for workers in (0, 2):
                cases[f"loader {mode}, {workers} workers"] = lambda m=mode, w=workers: (
                    default_loader(uri, layout, size, w, m)
                )
        cases["DataLoader, 2 processes"] = lambda: dataloader_processes(uri, layout, size, 2)
        for mode in ("blocks", "rows"):
            cases[f"no-op training step, {mode}"] = lambda m=mode: noop_training(
                uri, layout, size, m, steps[m]
            )
        runs: dict[str, list] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, case in cases.items():
                runs[name].append(timed(case))
        results: dict[str, dict | str] = {name: best_of(r) for name, r in runs.items()}
        results["petastorm (own env)"] = run_petastorm_env(uri, args.batch_size)
    raw = results["raw pyarrow (ceiling)"]
    for name, result in results.items():
        if isinstance(result, str):
            print(f"{name:30s} {result}")
            continue
        rate = result.get("rows_per_s") or round(result["rows"] / result["seconds"])
        print(
            f"{name:30s} {rate:>11,} rows/s  ({result['rows']} rows in {result['seconds']} s, "
            f"CPU {result['cpu_seconds']} s)  {rate / raw['rows_per_s']:.2f}x raw wall, "
            f"{_cpu_per_row(raw) / _cpu_per_row(result):.2f}x raw CPU"
        )
    for mode in ("blocks", "rows"):
        zero, two = results[f"loader {mode}, 0 workers"], results[f"loader {mode}, 2 workers"]
        step = results[f"no-op training step, {mode}"]
        print(
            f"{mode}: 2 workers / 0 workers: {two['rows_per_s'] / zero['rows_per_s']:.2f}x; "
            f"no-op training step receives {steps[mode][-1] / step['seconds']:,.0f} batches/s "
            f"({step['rows_per_s']:,} rows/s of the train split, {steps[mode][-1]} steps)"
        )
    return 0


def _cpu_per_row(result: dict) -> float:
    return result["cpu_seconds"] / result["rows"]


if __name__ == "__main__":
    sys.exit(main())
