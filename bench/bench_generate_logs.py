"""Benchmark `freshlake generate-logs`: time to write N impressions (plus their actions) per format.

Baseline, measured in the same run: pyarrow writing the same number of rows of a trivial
three-column table (Parquet, and CSV as the text-format baseline for JSON lines), so the ratio
shows the generator's own overhead.

    .venv/bin/python bench/bench_generate_logs.py --impressions 10000000 --out /tmp/bench_gen
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from freshlake.config import GenerateConfig
from freshlake.synth import generate_logs


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def trivial_table(rows: int) -> pa.Table:
    """id, timestamp and a double per row: the least work a writer of N rows can do."""
    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "at": pa.array(ids * 1000, pa.timestamp("us", tz="UTC")),
            "value": np.random.default_rng(0).random(rows),
        }
    )


def time_baselines(rows: int, out: Path) -> dict[str, tuple[float, float, int]]:
    """Wall seconds, CPU seconds and bytes for pyarrow writing a trivial `rows`-row table."""
    table = trivial_table(rows)
    results = {}
    for fmt, write in (("parquet", pq.write_table), ("csv", pacsv.write_csv)):
        path = out / f"trivial.{fmt}"
        start, cpu = time.perf_counter(), cpu_seconds()
        write(table, path)
        results[fmt] = (time.perf_counter() - start, cpu_seconds() - cpu, path.stat().st_size)
        path.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--out", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)

    scratch = Path(args.out or tempfile.mkdtemp(prefix="bench_generate_"))
    scratch.mkdir(parents=True, exist_ok=True)
    base = GenerateConfig(impressions=args.impressions, workers=args.workers)
    print(f"generate-logs benchmark: {args.impressions:,} impressions, workers={args.workers}")
    baselines = time_baselines(args.impressions, scratch)
    try:
        for fmt, baseline in (("parquet", "parquet"), ("jsonl", "csv")):
            settings = base.model_copy(update={"formats": [fmt]})
            out = scratch / fmt
            start, cpu = time.perf_counter(), cpu_seconds()
            manifest = generate_logs(settings, out, overwrite=True)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            written = manifest["formats"][fmt]
            records = written["impressions"]["records"] + written["actions"]["records"]
            logs = disk_bytes(out / "impressions") + disk_bytes(out / "actions")
            base_seconds, base_cpu, base_bytes = baselines[baseline]
            print(
                f"{fmt:8s} {seconds:7.1f} s wall ({cpu:.1f} s CPU)  "
                f"{args.impressions / seconds:>10,.0f} impressions/s  "
                f"{records / seconds:>10,.0f} records/s  logs {logs / 1e6:,.0f} MB  "
                f"truth {disk_bytes(out / 'truth') / 1e6:,.0f} MB"
            )
            print(
                f"{'':8s} baseline: pyarrow {baseline} of a trivial {args.impressions:,}-row "
                f"table {base_seconds:.1f} s wall ({base_cpu:.1f} s CPU, "
                f"{base_bytes / 1e6:,.0f} MB); ratio {seconds / base_seconds:.1f}x wall, "
                f"{cpu / base_cpu:.1f}x CPU"
            )
            if not args.keep:
                shutil.rmtree(out)
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
