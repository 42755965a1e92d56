"""Ingest throughput (records/s) beside a plain Spark read + Parquet write of the same files.

    .venv/bin/python bench/bench_ingest.py --impressions 10000000 --format jsonl

Generates the logs with `freshlake.synth` into --logs (default /tmp/freshlake-bench-<N>-<fmt>)
when they are not there yet, and reuses them on later runs; `--lines-per-file N` runs on a copy
cut into files of N lines (Parquet: N rows; made once, beside the logs), as log shippers write
many small files. All measurements run in one process on one Spark session, after an untimed
warm-up (the baseline on one file) so that none pays for the JVM's first jobs:
1. baseline: `spark.read` of every impression and action file (JSONL with an explicit schema,
   or Parquet) and `df.write.parquet` of the same rows, no validation, no Delta;
2. freshlake: `ingest_files` into a fresh lake (parse, validate, quarantine, one Delta commit
   per table, job record);
3. floor (JSONL), last, so the JIT has already compiled the parse: the same lines parsed as
   validation parses them, into a string map whose nested objects are parsed once more, cast
   to the baseline's types and written as Parquet: what seeing every key of every record
   costs with Spark's own parsers before any check runs.
Prints records, wall seconds, records/s and Spark CPU seconds (JVM + Python workers, steadier
than wall time on a shared machine) for each, the ratios freshlake / baseline, and the ingest's
JVM CPU by thread (tasks, JIT compilers, GC, the driver's planning and code generation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_build_training_set import tree_cpu_seconds  # noqa: E402
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


def split_logs(out: Path, lines_per_file: int, fmt: str) -> Path:
    """A copy of the logs in `out` cut into files of `lines_per_file` lines, or Parquet files
    of at most that many rows (made once)."""
    split = out.with_name(f"{out.name}-split{lines_per_file}")
    if (split / MANIFEST).exists():
        return split
    shutil.rmtree(split, ignore_errors=True)
    for kind in KINDS:
        (split / kind).mkdir(parents=True)
        if fmt == "parquet":
            _split_parquet(out / kind, split / kind, lines_per_file)
            continue
        part, lines, target = 0, 0, None
        for source in sorted((out / kind).glob("*.jsonl")):
            with source.open("rb") as records:
                for line in records:
                    if target is None or lines == lines_per_file:
                        if target is not None:
                            target.close()
                        target = (split / kind / f"part-{part:06d}.jsonl").open("wb")
                        part, lines = part + 1, 0
                    target.write(line)
                    lines += 1
        if target is not None:
            target.close()
    shutil.copy(out / MANIFEST, split / MANIFEST)
    return split


def _split_parquet(source: Path, target: Path, rows_per_file: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = 0
    for path in sorted(source.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_file):
            pq.write_table(pa.Table.from_batches([batch]), target / f"part-{part:06d}.parquet")
            part += 1


def baseline(spark, out: Path, fmt: str, scratch: Path, files_per_kind: int | None = None) -> int:
    """Plain Spark: read every log file and write the same rows as Parquet; the rows written."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from freshlake.synth.schemas import ACTIONS_SCHEMA, IMPRESSIONS_SCHEMA

    schemas = {"impressions": IMPRESSIONS_SCHEMA, "actions": ACTIONS_SCHEMA}
    rows = 0
    for kind in KINDS:
        files = sorted(str(p) for p in (out / kind).glob(f"*.{fmt}"))[:files_per_kind]
        if fmt == "jsonl":
            df = spark.read.schema(from_arrow_schema(schemas[kind])).json(files)
        else:
            df = spark.read.parquet(*files)
        df.write.mode("overwrite").parquet(str(scratch / kind))
        rows += spark.read.parquet(str(scratch / kind)).count()
    return rows


def map_parse_floor(spark, out: Path, scratch: Path) -> int:
    """The least a check of every record's keys costs with Spark's own parsers: each line parsed
    into a string map (as validation parses it: unknown and repeated names stay visible, which a
    typed read drops), nested objects parsed once more, each field cast to the baseline's type
    and written as Parquet. No checks, no quarantine, no Delta. The rows written."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructType

    from freshlake.synth.schemas import ACTIONS_SCHEMA, IMPRESSIONS_SCHEMA

    schemas = {"impressions": IMPRESSIONS_SCHEMA, "actions": ACTIONS_SCHEMA}
    string_map = "map<string,string>"

    def typed(text, data_type):
        if not isinstance(data_type, StructType):
            return text.try_cast(data_type)
        nested = F.from_json(text, string_map)
        return F.struct(*[typed(nested[f.name], f.dataType).alias(f.name) for f in data_type])

    rows = 0
    for kind in KINDS:
        files = sorted(str(p) for p in (out / kind).glob("*.jsonl"))
        record = F.from_json("value", string_map)
        parsed = spark.read.text(files).select(record.alias("record"))
        fields = from_arrow_schema(schemas[kind]).fields
        columns = [typed(F.col("record")[f.name], f.dataType).alias(f.name) for f in fields]
        parsed.select(*columns).write.mode("overwrite").parquet(str(scratch / kind))
        rows += spark.read.parquet(str(scratch / kind)).count()
    return rows


def freshlake_ingest(spark, out: Path, fmt: str, lake_root: Path):
    """`freshlake ingest` of every log file into a fresh lake; its summary."""
    from freshlake.ingest.files import ingest_files

    config = load_config(overrides={"lake.root": str(lake_root)})
    return ingest_files(config, spark, {kind: [str(out / kind)] for kind in KINDS}, fmt)


def jvm_cpu_by_thread(jvm_pid: int) -> Counter[str]:
    """CPU seconds of the JVM's live threads by kind: tasks, JIT compilers, GC, driver/other."""
    ticks = os.sysconf("SC_CLK_TCK")
    kinds: Counter[str] = Counter()
    for task in Path(f"/proc/{jvm_pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if name.startswith("Executor task"):
            kind = "tasks"
        elif "Compiler" in name:
            kind = "JIT compilers"
        elif name.startswith(("GC", "G1")):
            kind = "GC"
        else:  # the py4j threads that plan queries and generate code, schedulers, ...
            kind = "driver and other"
        kinds[kind] += (int(fields[11]) + int(fields[12])) / ticks
    return kinds


def timed(fn, jvm_pid: int):
    """(result, wall seconds, Spark CPU seconds) of `fn()`."""
    started, cpu = time.perf_counter(), tree_cpu_seconds(jvm_pid)
    result = fn()
    return result, time.perf_counter() - started, tree_cpu_seconds(jvm_pid) - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    parser.add_argument("--logs", type=Path, help="log folder (generated when missing)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/freshlake-bench-ingest"))
    parser.add_argument(
        "--lines-per-file",
        type=int,
        help="cut the logs into files of this many lines or rows (many small files, as log "
        "shippers write them)",
    )
    args = parser.parse_args()
    out = args.logs or Path(f"/tmp/freshlake-bench-{args.impressions}-{args.format}")
    manifest = ensure_logs(out, args.impressions, args.format, args.seed)["formats"][args.format]
    if args.lines_per_file:
        out = split_logs(out, args.lines_per_file, args.format)

    shutil.rmtree(args.scratch, ignore_errors=True)
    spark = get_spark(load_config())
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    baseline(spark, out, args.format, args.scratch / "warm-up", files_per_kind=1)
    base_rows, base_s, base_cpu = timed(
        lambda: baseline(spark, out, args.format, args.scratch / "baseline"), jvm
    )
    threads_before = jvm_cpu_by_thread(jvm)
    summary, seconds, cpu = timed(
        lambda: freshlake_ingest(spark, out, args.format, args.scratch / "lake"), jvm
    )
    threads = jvm_cpu_by_thread(jvm)
    threads.subtract(threads_before)
    floor = None
    if args.format == "jsonl":  # after the ingest: the JIT has compiled its parse for it
        floor = timed(lambda: map_parse_floor(spark, out, args.scratch / "floor"), jvm)
    rows = sum(summary.records(k) for k in KINDS)

    expected = sum(manifest[k]["records"] for k in KINDS)
    assert rows == expected, f"ingest read {rows} records, the manifest says {expected}"
    for kind in KINDS:
        assert summary.valid(kind) == manifest[kind]["valid"], kind
    print("\n".join(summary.lines()))
    files = sum(len(list((out / kind).glob(f"*.{args.format}"))) for kind in KINDS)
    print(
        f"input: {out} ({args.format}), {rows:,} records "
        f"({manifest['impressions']['records']:,} impressions) in {files:,} files"
    )
    measured = [("baseline  spark read + parquet write", base_rows, base_s, base_cpu)]
    if floor is not None:
        measured.append(("floor     string-map parse + write ", *floor))
    measured.append(("freshlake ingest (validate + delta) ", rows, seconds, cpu))
    for label, n, wall, spent in measured:
        print(f"{label}: {n:>12,} rows {wall:8.1f} s {n / wall:>10,.0f} rows/s {spent:8.1f} s cpu")
    print(
        "freshlake ingest JVM CPU by thread: "
        + ", ".join(f"{kind} {spent:.1f} s" for kind, spent in threads.most_common())
    )
    print(
        f"ratio freshlake / baseline: throughput {(rows / seconds) / (base_rows / base_s):.2f}, "
        f"CPU per row {(cpu / rows) / (base_cpu / base_rows):.2f}"
    )
    if floor is not None:
        floor_rows, floor_s, floor_cpu = floor
        print(
            "ratio floor / baseline (the string-map parse alone): throughput "
            f"{(floor_rows / floor_s) / (base_rows / base_s):.2f}, "
            f"CPU per row {(floor_cpu / floor_rows) / (base_cpu / base_rows):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
