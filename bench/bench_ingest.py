"""Ingest throughput (records/s) beside a plain Spark read + Parquet write of the same files.

    .venv/bin/python bench/bench_ingest.py --impressions 10000000 --format parquet

Generates the logs with `freshlake.synth` into --logs (default /tmp/freshlake-bench-<N>-<fmt>)
when they are not there yet. Both measurements run in one process on one Spark session:
1. baseline: `spark.read` of every impression and action file (JSONL with an explicit schema,
   or Parquet) and `df.write.parquet` of the same rows, no validation, no Delta;
2. freshlake: `ingest_files` into a fresh lake (parse, validate, quarantine, Delta commits,
   job record).
Prints records, seconds, records/s for each and the ratio freshlake / baseline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from freshlake.config import GenerateConfig, load_config  # noqa: E402
from freshlake.spark import get_spark  # noqa: E402
from freshlake.synth import MANIFEST, generate_logs  # noqa: E402

KINDS = ("impressions", "actions")


def ensure_logs(out: Path, impressions: int, fmt: str, seed: int) -> dict:
    """The manifest of logs in `out`, generating them first when missing."""
    if not (out / MANIFEST).exists():
        started = time.perf_counter()
        settings = GenerateConfig(impressions=impressions, seed=seed, formats=[fmt], workers=0)
        generate_logs(settings, out, overwrite=True)
        print(
            f"generated {impressions:,} impressions ({fmt}) in {time.perf_counter() - started:.0f} s"
        )
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest["settings"]["impressions"] != impressions or fmt not in manifest["formats"]:
        raise SystemExit(f"{out} holds other logs; pass another --logs or delete it")
    return manifest


def baseline(spark, out: Path, fmt: str, scratch: Path) -> tuple[int, float]:
    """Plain Spark: read every log file and write the same rows as Parquet."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from freshlake.synth.schemas import ACTIONS_SCHEMA, IMPRESSIONS_SCHEMA

    schemas = {"impressions": IMPRESSIONS_SCHEMA, "actions": ACTIONS_SCHEMA}
    rows = 0
    started = time.perf_counter()
    for kind in KINDS:
        files = sorted(str(p) for p in (out / kind).glob(f"*.{fmt}"))
        if fmt == "jsonl":
            df = spark.read.schema(from_arrow_schema(schemas[kind])).json(files)
        else:
            df = spark.read.parquet(*files)
        df.write.mode("overwrite").parquet(str(scratch / kind))
        rows += spark.read.parquet(str(scratch / kind)).count()
    return rows, time.perf_counter() - started


def freshlake_ingest(spark, out: Path, fmt: str, lake_root: Path) -> tuple[int, float, object]:
    from freshlake.ingest.files import ingest_files

    config = load_config(overrides={"lake.root": str(lake_root)})
    inputs = {kind: [str(out / kind)] for kind in KINDS}
    started = time.perf_counter()
    summary = ingest_files(config, spark, inputs, fmt)
    seconds = time.perf_counter() - started
    return sum(summary.records(k) for k in KINDS), seconds, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    parser.add_argument("--logs", type=Path, help="log folder (generated when missing)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/freshlake-bench-ingest"))
    args = parser.parse_args()
    out = args.logs or Path(f"/tmp/freshlake-bench-{args.impressions}-{args.format}")
    manifest = ensure_logs(out, args.impressions, args.format, args.seed)["formats"][args.format]

    shutil.rmtree(args.scratch, ignore_errors=True)
    spark = get_spark(load_config())
    base_rows, base_s = baseline(spark, out, args.format, args.scratch / "baseline")
    rows, seconds, summary = freshlake_ingest(spark, out, args.format, args.scratch / "lake")

    expected = sum(manifest[k]["records"] for k in KINDS)
    assert rows == expected, f"ingest read {rows} records, the manifest says {expected}"
    for kind in KINDS:
        assert summary.valid(kind) == manifest[kind]["valid"], kind
    print("\n".join(summary.lines()))
    print(
        f"input: {out} ({args.format}), {rows:,} records ({manifest['impressions']['records']:,} impressions)"
    )
    print(
        f"baseline  spark read + parquet write: {base_rows:>12,} rows {base_s:8.1f} s {base_rows / base_s:>10,.0f} rows/s"
    )
    print(
        f"freshlake ingest (validate + delta):  {rows:>12,} rows {seconds:8.1f} s {rows / seconds:>10,.0f} rows/s"
    )
    print(f"ratio freshlake / baseline: {(rows / seconds) / (base_rows / base_s):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
