"""Benchmark `freshlake build-training-set` beside a plain PySpark job of the same semantics.

Pipeline: generate N impressions with the project's log generator (Parquet), load them into
the `impressions` / `actions` Delta tables, compute `item_stats`, then time in the same run
- `plain_job`: one short PySpark function with the builder's core semantics (window, dedup by
  the earliest served_at, clicks in the attribution window, hash sampling with the rare-item
  boost, weight = 1/p, Parquet partitioned by `dt`), and
- the builder over the same 7-day window (which also screens, counts and reconciles every
  outcome, labels every action type, computes features and commits to Delta),
and print the builder's wall time and Spark CPU time (JVM + Python workers; steadier than wall
time on a shared machine) over the plain job's, the cost per input row (to compare sizes), and
each one's peak JVM resident memory (VmHWM, reset before each) and where the JVM's CPU went
(task threads, garbage collection, JIT compilers, other threads). An untimed warm-up of each job
over the window's first day goes first, so neither timed job pays for the JVM's first compilation
of the Spark code it runs (each still generates and compiles its own plan's code: the window's
literals differ); `--repeat N` times each job N times, alternating, and takes the medians.

    .venv/bin/python bench/bench_build_training_set.py --impressions 10000000 --reuse
    .venv/bin/python bench/bench_build_training_set.py --impressions 30000000 --reuse

`--reuse` keeps the generated logs, Delta tables and item_stats of an earlier run of the same
size (in `--work`, by default one folder per size) and times only the two jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import time
from datetime import timedelta
from pathlib import Path

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from freshlake.batch.item_stats import read_item_counts, write_item_stats
from freshlake.batch.training_set import build_training_set
from freshlake.batch.window import TimeWindow
from freshlake.config import Config, load_config
from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA
from freshlake.ingest.files import ingest_files, logs_layout
from freshlake.lake import open_lake
from freshlake.runs import JobRun
from freshlake.spark import get_spark
from freshlake.synth import generate_logs


def jvm_peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of the driver JVM (local mode: driver and executors), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> None:
    """Start a new VmHWM peak from the current resident size (Linux `clear_refs`)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def plain_job(
    impressions: DataFrame,
    actions: DataFrame,
    item_counts: DataFrame,
    window: TimeWindow,
    config: Config,
    out: str,
) -> None:
    """The builder's core semantics as a plain PySpark job, written as one would by hand."""
    labels, sampling = config.labels, config.sampling
    served = F.col("served_at")
    earliest = Window.partitionBy("impression_id").orderBy("served_at")
    unique = (
        impressions.where((served >= window.start_at) & (served < window.end_at))
        .withColumn("n", F.row_number().over(earliest))
        .where("n = 1")
    )
    clicks = (
        actions.where(F.col("action") == labels.positive_action)
        .groupBy("impression_id")
        .agg(F.collect_list("action_at").alias("clicks"))
    )
    after = F.expr(f"INTERVAL {labels.attribution_window_seconds} SECONDS")
    before = F.expr(f"INTERVAL {labels.clock_skew_seconds} SECONDS")
    clicked = F.exists("clicks", lambda t: t.between(served - before, served + after))
    rare = F.coalesce("impressions", F.lit(0)) < sampling.rare_item.min_impressions
    rate = F.when(F.col("label") == 1, sampling.positive_rate).otherwise(sampling.negative_rate)
    prob = F.least(F.lit(1.0), rate * F.when(rare, sampling.rare_item.boost).otherwise(1.0))
    bits = F.xxhash64(F.lit(sampling.seed), "impression_id").bitwiseAND((1 << 53) - 1)
    (
        unique.join(clicks, "impression_id", "left")
        .withColumn("label", F.coalesce(clicked, F.lit(False)).cast("int"))
        .join(F.broadcast(item_counts.select("item_id", "impressions")), "item_id", "left")
        .withColumn("sample_prob", prob)
        .where(bits / float(1 << 53) < F.col("sample_prob"))
        .withColumn("weight", 1.0 / F.col("sample_prob"))
        .drop("n", "clicks", "impressions")
        .write.mode("overwrite")
        .partitionBy("dt")
        .parquet(out)
    )


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


# JVM threads by what they do, from their names (/proc/<pid>/task/<tid>/comm, 15 characters).
THREAD_KINDS = {
    "tasks": ("Executor task",),
    "gc": ("GC Thread", "G1 ", "VM Thread"),
    "jit": ("C1 CompilerThre", "C2 CompilerThre"),
}


def _thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (kind, CPU seconds) of every live thread of a process."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = next((k for k, p in THREAD_KINDS.items() if name.startswith(p)), "other")
        threads[int(task.name)] = kind, (int(fields[11]) + int(fields[12]))
    ticks = os.sysconf("SC_CLK_TCK")
    return {tid: (kind, cpu / ticks) for tid, (kind, cpu) in threads.items()}


def thread_cpu_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per thread kind between two `_thread_cpu` readings (threads that ended in
    between are missing: their time shows only in the process total)."""
    kinds = dict.fromkeys([*THREAD_KINDS, "other"], 0.0)
    for tid, (kind, cpu) in after.items():
        kinds[kind] += cpu - before.get(tid, (kind, 0.0))[1]
    return {k: round(v, 1) for k, v in kinds.items()}


def timed(label: str, fn, jvm_pid: int):
    """Run `fn`; print and return (result, wall seconds, Spark CPU seconds, peak JVM RSS MiB,
    JVM CPU seconds per thread kind: tasks, gc, jit, other)."""
    reset_peak_rss(jvm_pid)
    threads = _thread_cpu(jvm_pid)
    start, cpu = time.perf_counter(), tree_cpu_seconds(jvm_pid)
    result = fn()
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds(jvm_pid) - cpu
    kinds = thread_cpu_delta(threads, _thread_cpu(jvm_pid))
    peak = jvm_peak_rss_mib(jvm_pid)
    print(
        f"  {label:<28} {seconds:8.1f} s wall {cpu:8.1f} s cpu {peak} MiB peak; JVM threads "
        + ", ".join(f"{k} {v}" for k, v in kinds.items()),
        flush=True,
    )
    return result, seconds, cpu, peak, kinds


def generated_impressions(logs_dir: Path) -> int | None:
    """How many impressions the logs in `logs_dir` were generated with (None: no logs)."""
    manifest = logs_dir / "manifest.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text())["settings"]["impressions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument(
        "--work", help="working folder (default: /tmp/freshlake_bench_build/<impressions>)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the logs, tables and item_stats of an earlier run of this size in --work",
    )
    parser.add_argument(
        "--load",
        choices=["ingest", "direct"],
        default="direct",
        help="how logs reach Delta: freshlake ingest (validated) or a direct Parquet load",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time the plain job and the builder this many times each, alternating (medians)",
    )
    args = parser.parse_args()

    work = Path(args.work or f"/tmp/freshlake_bench_build/{args.impressions}")
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
        f"  spark.driver.memory {spark.conf.get('spark.driver.memory', 'default')}, "
        f"master {spark.sparkContext.master}, work {work}"
    )

    if not args.reuse or generated_impressions(logs_dir) != args.impressions:
        shutil.rmtree(work, ignore_errors=True)
        timed("generate logs (parquet)", lambda: generate_logs(config.generate, logs_dir), jvm)
    if not (lake.exists("impressions") and lake.exists("actions")):
        shutil.rmtree(root, ignore_errors=True)

        def load() -> None:
            if args.load == "ingest":
                ingest_files(config, spark, logs_layout(str(logs_dir)))
            else:
                load_direct(spark, lake, logs_dir, window)

        timed(f"load to Delta ({args.load})", load, jvm)
    stats_window = TimeWindow.ending(window.end, config.sampling.rare_item.window_days)
    if read_item_counts(lake, stats_window) is None:
        with JobRun("item-stats", config, lake) as run:
            timed(
                "item_stats", lambda: write_item_stats(lake, config, stats_window, run.run_id), jvm
            )
    item_counts, _ = read_item_counts(lake, stats_window)

    plain_out = str(work / "plain_output")
    inputs = lake.read("impressions"), lake.read("actions"), item_counts
    first_day = TimeWindow(window.start, window.start + timedelta(days=1))
    # A JVM's first run of Spark code pays for class loading and compilation: not measured,
    # for either job.
    timed(
        "warm-up (plain, first day)",
        lambda: plain_job(*inputs, first_day, config, str(work / "warm_up")),
        jvm,
    )
    with JobRun("build-training-set", config, lake) as run:
        timed(
            "warm-up (builder, first day)",
            lambda: build_training_set(lake, config, first_day, run),
            jvm,
        )
    plain_runs, build_runs = [], []
    for _ in range(args.repeat):
        plain_runs.append(
            timed("plain PySpark job", lambda: plain_job(*inputs, window, config, plain_out), jvm)
        )
        with JobRun("build-training-set", config, lake) as run:
            build_runs.append(
                timed("builder", lambda: build_training_set(lake, config, window, run), jvm)
            )
    report = build_runs[-1][0]
    print(report.render())

    def median(runs: list[tuple], field: int) -> float:
        return statistics.median(r[field] for r in runs)

    rows = report.input_rows
    build_s, build_cpu = median(build_runs, 1), median(build_runs, 2)
    plain_s, plain_cpu = median(plain_runs, 1), median(plain_runs, 2)
    figures = {
        "impressions_in": rows,
        "examples_written": report.outcomes["written"],
        "plain_rows_written": spark.read.parquet(plain_out).count(),
        "runs": args.repeat,
        "builder_s": round(build_s, 1),
        "plain_s": round(plain_s, 1),
        "builder_over_plain_time": round(build_s / plain_s, 2),
        "builder_cpu_s": round(build_cpu, 1),
        "plain_cpu_s": round(plain_cpu, 1),
        "builder_over_plain_cpu": round(build_cpu / plain_cpu, 2),
        "builder_cpu_us_per_row": round(build_cpu / rows * 1e6, 2),
        "plain_cpu_us_per_row": round(plain_cpu / rows * 1e6, 2),
        "builder_wall_us_per_row": round(build_s / rows * 1e6, 2),
        "builder_step_timings_s": report.timings,
        "builder_jvm_thread_cpu_s": build_runs[-1][4],
        "plain_jvm_thread_cpu_s": plain_runs[-1][4],
        "builder_jvm_peak_rss_mib": max(r[3] or 0 for r in build_runs),
        "plain_jvm_peak_rss_mib": max(r[3] or 0 for r in plain_runs),
        "python_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(figures, indent=2))
    print(
        f"builder {rows / build_s:,.0f} impressions/s: "
        f"{figures['builder_over_plain_time']}x the wall time and "
        f"{figures['builder_over_plain_cpu']}x the CPU time of the plain PySpark job "
        f"({figures['builder_cpu_us_per_row']} us CPU per input row; medians of {args.repeat} "
        "run(s) each)"
    )


if __name__ == "__main__":
    main()
