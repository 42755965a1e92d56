"""`freshlake demo`: the whole loop on the embedded default, step by step, then a summary.

Each step is the very command a user would type, run in this process (one Spark session), so the
demo doubles as a walkthrough: generate logs -> ingest -> item stats -> build the training set ->
train with torchrun DDP -> start the local broker and stream live impressions and actions
(`freshlake produce` in its own process, as a serving system's logger) through the online joiner
-> continue training the model on the fresh examples -> monitors -> report, then every table with
its row count and Delta version and the joiner's freshness.

The streaming phase compresses time so windows close within the demo: logged action delays are
divided by `--compression` and the attribution window is `3600 / compression` seconds (and the
watermark delay 5 s) for the joiner only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

HELP = "run the pipeline on the embedded default and print the tables it wrote"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work-dir", default="out/demo", help="generated logs and model (out/demo)"
    )
    parser.add_argument("--impressions", type=int, default=200_000, help="impressions to generate")
    parser.add_argument("--no-train", action="store_true", help="stop after the training set")
    parser.add_argument(
        "--stream-seconds", type=float, default=90.0, help="how long the joiner runs (90)"
    )
    parser.add_argument(
        "--stream-impressions", type=int, default=20_000, help="impressions replayed live (20000)"
    )
    parser.add_argument("--stream-rate", type=float, default=500.0, help="events/s (500)")
    parser.add_argument(
        "--compression", type=float, default=120.0, help="divides action delays when streaming"
    )


# The monitor exits 3 when an alert fires: worth showing, not a failed demo.
ALERT_EXIT = 3


def _step(title: str, argv: list[str]) -> float:
    from freshlake.cli import main

    print(f"\n=== {title}\n$ freshlake {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    allowed = {0, ALERT_EXIT} if argv[0] == "monitor" else {0}
    if code not in allowed:
        raise SystemExit(f"demo step failed ({code}): freshlake {' '.join(argv)}")
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark

    config = args.config
    work = Path(args.work_dir)
    common = ["--config", args.config_path] if args.config_path else []
    for override in args.overrides:
        common += ["--set", override]
    end = (config.generate.start + timedelta(days=config.generate.days)).isoformat()
    days = str(config.generate.days)
    steps = [
        (
            "generate synthetic logs",
            [
                "generate-logs",
                "--out",
                str(work / "logs"),
                "--impressions",
                str(args.impressions),
                "--overwrite",
                *common,
            ],
        ),
        (
            "ingest them into Delta (bad records to quarantine)",
            ["ingest", "--logs", str(work / "logs"), *common],
        ),
        (
            "per-item statistics over the window",
            ["item-stats", "--end", end, "--window-days", days, *common],
        ),
        (
            "build the sampled, weighted training set",
            ["build-training-set", "--end", end, "--window-days", days, *common],
        ),
    ]
    if not args.no_train:
        model, fresh_model = work / "model", work / "model-fresh"
        steps.append(
            (
                "train the CTR model with torchrun DDP (2 CPU processes)",
                ["train", "--out", str(model), "--nproc", "2", "--epochs", "3", *common],
            )
        )
    timings = {title: _step(title, argv) for title, argv in steps}
    if not args.no_train:
        timings["stream live events through the online joiner"] = _stream(args, work, common)
        models = ["--model", str(model)]
        for title, argv in (
            (
                "continue training on the fresh examples (warm start)",
                [
                    "train",
                    "--table",
                    "fresh_examples",
                    "--warm-start",
                    str(model),
                    "--out",
                    str(fresh_model),
                    "--nproc",
                    "2",
                    "--epochs",
                    "1",
                    *common,
                ],
            ),
            (
                "both models on the batch eval rows (prediction difference, metrics)",
                ["compare-models", str(model), str(fresh_model), *common],
            ),
            ("data-quality monitors (exit 3 when an alert fires)", ["monitor", *models, *common]),
            ("HTML report", ["report", "--out", str(work / "report.html"), *models, *common]),
        ):
            timings[title] = _step(title, argv)

    spark = get_spark(config)
    lake = open_lake(config, spark)
    print(f"\n=== summary: lake at {lake.root}")
    print(f"{'table':18s} {'rows':>12s} {'version':>8s}")
    for name in lake.table_names():
        print(f"{name:18s} {lake.read(name).count():12,d} {lake.version(name):8d}")
    if lake.exists("stream_metrics"):
        _print_freshness(lake)
    for title, seconds in timings.items():
        print(f"{seconds:7.1f} s  {title}")
    if not args.no_train:
        print(f"\nreport: {(work / 'report.html').resolve()}")
        print(f"models: {model.resolve()} (batch), {fresh_model.resolve()} (fresh)")
    print(
        "\nquery it, e.g.:\n"
        '  freshlake sql "SELECT dt, count(*) rows, sum(weight) est_impressions, '
        'sum(label * weight) / sum(weight) ctr FROM examples GROUP BY dt ORDER BY dt"'
    )
    return 0


def _stream(args: argparse.Namespace, work: Path, common: list[str]) -> float:
    """Broker up, the producer replaying live in its own process, the joiner for a while."""
    from freshlake.streaming.producer import ensure_topics

    config = args.config
    window = max(10, round(3600 / args.compression))
    # The local broker keeps its topics in memory and starts empty, so offsets a checkpoint of
    # an earlier demo holds are gone: the joiner starts from a new checkpoint each time.
    checkpoints = work / "checkpoints"
    shutil.rmtree(checkpoints, ignore_errors=True)
    joiner_settings = [
        "--set",
        f"labels.attribution_window_seconds={window}",
        "--set",
        "streaming.watermark_delay_seconds=5",
        "--set",
        f"streaming.checkpoint_root={checkpoints.resolve()}",
    ]
    start = time.perf_counter()
    _step("start the local Kafka-protocol broker", ["broker", "start", *common])
    ensure_topics(config.kafka, config.kafka.topics.values())
    produce = [
        "produce",
        "--logs",
        str(work / "logs"),
        "--timing",
        "live",
        "--limit",
        str(args.stream_impressions),
        "--rate",
        str(args.stream_rate),
        "--compression",
        str(args.compression),
        *common,
    ]
    print(f"\n=== the serving system's logger, in its own process\n$ freshlake {' '.join(produce)}")
    producer = subprocess.Popen([sys.executable, "-m", "freshlake.cli", *produce])
    try:
        _step(
            f"join them into fresh_examples for {args.stream_seconds:.0f} s "
            f"({window} s attribution window)",
            ["stream-join", "--seconds", str(args.stream_seconds), *joiner_settings, *common],
        )
    finally:
        if producer.poll() is None:
            producer.terminate()
        producer.wait(60)
        _step("stop the broker", ["broker", "stop", *common])
    return time.perf_counter() - start


def _print_freshness(lake) -> None:
    from pyspark.sql import functions as F

    from freshlake.streaming.metrics import quantile

    joiner = lake.read("stream_metrics").where("query = 'joiner'")
    latest = joiner.orderBy(F.col("committed_at").desc()).select("query_id").first()
    if latest is None:
        return
    rows = joiner.where(F.col("query_id") == latest.query_id).collect()  # this demo's run
    busy = [r for r in rows if r.input_rows]
    positives = sum(r.positives or 0 for r in rows)
    p50 = quantile([r.latency_p50_s for r in busy if r.latency_p50_s is not None], 0.5)
    durations = [r.batch_duration_s for r in busy if r.batch_duration_s is not None]
    print(
        f"\njoiner: {len(rows)} micro-batches, {sum(r.input_rows or 0 for r in rows):,d} events, "
        f"{positives:,d} positives; median batch {quantile(durations, 0.5) or 0:.1f} s, "
        f"median per-batch p50 click -> committed example {p50 or 0:.1f} s"
    )
    newest = lake.read("fresh_examples").agg(F.max("served_at")).first()[0]
    print(f"newest fresh example served at {newest}")
