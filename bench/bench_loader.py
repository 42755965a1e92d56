"""Loader throughput: rows/s of the default Delta loader, of Petastorm (in its own environment,
when .venv-petastorm exists) and of a raw pyarrow read of the same files (the ceiling), one run.

    .venv/bin/python bench/bench_loader.py [--rows 1000000] [--batch-size 4096]

Every loader reads the same snapshot (feature columns, label, weight, split) and the first two
deliver torch batches; the raw read only decodes Parquet into Arrow. Prints one line per loader
and each one's ratio to the raw read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.training.batch import FeatureLayout  # noqa: E402
from freshlake.training.snapshot import open_snapshot  # noqa: E402
from freshlake.training.synthetic import SYNTHETIC_SPEC  # noqa: E402

PETASTORM_PYTHON = REPO / ".venv-petastorm" / "bin" / "python"


def timed(count_rows) -> dict[str, float]:
    start = time.perf_counter()
    rows = count_rows()
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def raw_pyarrow(uri: str, layout: FeatureLayout) -> int:
    from freshlake.training.units import open_file, plan_units

    columns = [*layout.columns(), "split"]
    return sum(
        open_file(u.uri).read_row_group(u.row_group, columns=columns).num_rows
        for u in plan_units(open_snapshot(uri))
    )


def default_loader(uri: str, layout: FeatureLayout, batch_size: int, workers: int) -> int:
    from torch.utils.data import DataLoader

    from freshlake.training.dataset import DeltaExamples
    from freshlake.training.units import plan_units

    dataset = DeltaExamples(
        plan_units(open_snapshot(uri)), layout, batch_size=batch_size, shuffle_buffer=65_536
    )
    return sum(len(b) for b in DataLoader(dataset, batch_size=None, num_workers=workers))


def petastorm_loader(uri: str, layout: FeatureLayout, batch_size: int) -> int:
    from freshlake.training.petastorm_loader import petastorm_batches

    files = [f.uri for f in open_snapshot(uri).files]
    return sum(len(b) for b in petastorm_batches(files, layout, batch_size=batch_size))


def run_petastorm_env(uri: str, batch_size: int) -> dict | str:
    if not PETASTORM_PYTHON.exists():
        return "skipped: no .venv-petastorm (make test-petastorm builds it)"
    cmd = [str(PETASTORM_PYTHON), "-W", "ignore", __file__, "--petastorm-only", uri]
    cmd += ["--batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rows-per-group", type=int, default=65_536)
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

    from freshlake.training.synthetic import synthetic_examples, write_synthetic_table

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"{tmp}/examples"
        table = synthetic_examples(args.rows, seed=1, negative_rate=1.0)
        write_synthetic_table(uri, table, rows_per_group=args.rows_per_group)
        snapshot = open_snapshot(uri)
        layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, snapshot.columns)
        print(
            f"table: {snapshot.num_rows} rows, {len(snapshot.files)} files, "
            f"{len(layout.columns())} columns read, batch {args.batch_size}"
        )
        results = {
            "raw pyarrow (ceiling)": timed(lambda: raw_pyarrow(uri, layout)),
            "default loader, 0 workers": timed(
                lambda: default_loader(uri, layout, args.batch_size, 0)
            ),
            "default loader, 2 workers": timed(
                lambda: default_loader(uri, layout, args.batch_size, 2)
            ),
            "petastorm (own env)": run_petastorm_env(uri, args.batch_size),
        }
    ceiling = results["raw pyarrow (ceiling)"]["rows_per_s"]
    for name, result in results.items():
        if isinstance(result, str):
            print(f"{name:28s} {result}")
            continue
        print(
            f"{name:28s} {result['rows_per_s']:>12,} rows/s  ({result['rows']} rows in "
            f"{result['seconds']} s)  {result['rows_per_s'] / ceiling:.2f}x raw"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
