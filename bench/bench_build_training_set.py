"""Benchmark `freshlake build-training-set`: builder throughput beside a plain read + write.

Pipeline: generate N impressions with the project's log generator (Parquet), ingest them into
the `impressions` / `actions` Delta tables, compute `item_stats`, then time
- the builder over the whole 7-day window (input impressions per second), and
- the baseline in the same run: a plain Spark read of both inputs (every column) and a Delta
  write (same engine) of as many impression rows as the builder wrote,
and print the ratios of wall time and of Spark CPU time (JVM + Python workers; steadier than
wall time on a shared machine). Peak memory: the JVM's peak resident set (VmHWM) and the Python driver's.

    .venv/bin/python bench/bench_build_training_set.py --impressions 10000000 --work /tmp/bench_build
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from datetime import timedelta
from pathlib import Path

from pyspark.sql import functions as F

from freshlake.batch.item_stats import write_item_stats
from freshlake.batch.training_set import build_training_set
from freshlake.batch.window import TimeWindow
from freshlake.config import load_config
from freshlake.features.hashing import hash_unit
from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA
from freshlake.ingest.files import ingest_files, logs_layout
from freshlake.lake import open_lake
from freshlake.runs import JobRun
from freshlake.spark import get_spark
from freshlake.synth import generate_logs


def jvm_peak_rss_mb(spark) -> float | None:
    """Peak resident memory of the driver JVM (local mode: driver and executors), in MiB."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_direct(spark, lake, logs_dir: Path, window: TimeWindow) -> None:
    """Generated Parquet straight into the Delta tables (contract schemas), without validation.

    Faster than `freshlake ingest` for big benchmarks. Rows dated outside the window (+/- a day,
    the generator's future/ancient timestamps) are left out, as ingest would quarantine them;
    the other malformed rows reach the builder, which quarantines or counts them.
    """
    for table, schema in (("impressions", IMPRESSION_SCHEMA), ("actions", ACTION_SCHEMA)):
        raw = spark.read.parquet(str(logs_dir / table))
        columns = {
            "features": F.create_map(
                *[
                    part
                    for key in ("device", "hour", "query")
                    for part in (F.lit(key), F.col(f"features.{key}").cast("string"))
                ]
            ),
            "extra": F.lit(None),
            "source_file": F.lit(None),
            "ingest_run_id": F.lit(None),
            "dt": F.to_date(F.col("served_at" if table == "impressions" else "action_at")),
        }
        df = raw.withColumns({k: v for k, v in columns.items() if k in schema.names})
        df = df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
        first, last = window.start - timedelta(days=1), window.end + timedelta(days=1)
        lake.write(table, df.where(F.col("dt").between(first, last)), partition_by=["dt"])


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and its live descendants (Python workers) plus reaped children.

    Unlike wall time, this barely moves when other jobs share the machine's cores.
    """
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields:  # fields[11:15]: utime, stime, cutime, cstime
            ticks += sum(int(f) for f in (fields[11:15] if pid == root else fields[11:13]))
        todo.extend(children.get(pid, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(label: str, fn, jvm_pid: int):
    """Run `fn`; print and return (result, wall seconds, Spark CPU seconds)."""
    start, cpu = time.perf_counter(), tree_cpu_seconds(jvm_pid)
    result = fn()
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds(jvm_pid) - cpu
    print(f"  {label:<28} {seconds:8.1f} s wall {cpu:8.1f} s cpu", flush=True)
    return result, seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--work", default="/tmp/freshlake_bench_build")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the generated logs and tables found in --work"
    )
    parser.add_argument(
        "--load",
        choices=["ingest", "direct"],
        default="direct",
        help="how logs reach Delta: freshlake ingest (validated) or a direct Parquet load",
    )
    args = parser.parse_args()

    work = Path(args.work)
    logs_dir, root = work / "logs", work / "lake"
    config = load_config(
        None,
        {
            "lake.root": str(root),
            "generate.impressions": args.impressions,
            "generate.items": args.items,
            "generate.users": max(20_000, args.impressions // 20),
            "generate.formats": ["parquet"],
        },
    )
    spark = get_spark(config)
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    lake = open_lake(config, spark)
    start = config.generate.start
    window = TimeWindow(start, start + timedelta(days=config.generate.days))
    print(f"build-training-set benchmark: {args.impressions:,} impressions, window {window}")
    print(
        f"  spark.driver.memory {spark.conf.get('spark.driver.memory', 'default')}, master {spark.sparkContext.master}"
    )

    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    if not (logs_dir / "manifest.json").exists():
        shutil.rmtree(logs_dir, ignore_errors=True)
        timed("generate logs (parquet)", lambda: generate_logs(config.generate, logs_dir), jvm)
    if not (lake.exists("impressions") and lake.exists("actions")):
        shutil.rmtree(root, ignore_errors=True)
        if args.load == "ingest":
            timed(
                "ingest to Delta", lambda: ingest_files(config, spark, logs_layout(str(logs_dir)))
            )
        else:
            timed("load to Delta (direct)", lambda: load_direct(spark, lake, logs_dir, window), jvm)
    with JobRun("item-stats", config, lake) as run:
        timed("item_stats", lambda: write_item_stats(lake, config, window, run.run_id), jvm)

    with JobRun("build-training-set", config, lake) as run:
        report, build_s, build_cpu = timed(
            "builder", lambda: build_training_set(lake, config, window, run), jvm
        )
    print(report.render())

    def baseline() -> int:
        impressions, actions = lake.read("impressions"), lake.read("actions")
        actions.write.format("noop").mode("overwrite").save()  # read every column
        share = report.outcomes["written"] / report.input_rows
        same_size = impressions.where(hash_unit(1, F.col("impression_id")) < share)
        return lake.write("baseline_output", same_size, mode="overwrite", partition_by=["dt"]).rows

    base_rows, base_s, base_cpu = timed("baseline read + write", baseline, jvm)
    rows = report.input_rows
    figures = {
        "impressions_in": rows,
        "examples_written": report.outcomes["written"],
        "baseline_rows_written": base_rows,
        "builder_s": round(build_s, 1),
        "baseline_s": round(base_s, 1),
        "builder_rows_per_s": round(rows / build_s),
        "baseline_rows_per_s": round(rows / base_s),
        "builder_over_baseline_time": round(build_s / base_s, 2),
        "builder_cpu_s": round(build_cpu, 1),
        "baseline_cpu_s": round(base_cpu, 1),
        "builder_over_baseline_cpu": round(build_cpu / base_cpu, 2),
        "builder_step_timings_s": report.timings,
        "jvm_peak_rss_mib": jvm_peak_rss_mb(spark),
        "python_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(figures, indent=2))
    print(
        f"builder {figures['builder_rows_per_s']:,} rows/s vs baseline "
        f"{figures['baseline_rows_per_s']:,} rows/s: the builder takes "
        f"{figures['builder_over_baseline_time']}x the wall time and "
        f"{figures['builder_over_baseline_cpu']}x the CPU time of a plain read + write"
    )


if __name__ == "__main__":
    main()
