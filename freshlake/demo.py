"""`freshlake demo`: the whole loop on the embedded default, step by step, then a summary.

Each step is the very command a user would type, run in this process (one Spark session), so the
demo doubles as a walkthrough: generate logs -> ingest -> item stats -> build the training set ->
train with torchrun DDP -> qualify, sign, register and promote it (the champion) -> start the
local broker and stream live impressions and actions (`freshlake produce` in its own process, as
a serving system's logger) through the online joiner -> continue training the model on the first
third of the fresh examples -> qualify it against the champion, sign and register it (the
challenger) -> the canary scores it beside the champion on the fresh examples that arrived after
it, and promotes or rolls it back -> monitors -> report, then every table with its row count and
Delta version and the joiner's freshness. The release steps use a registry of their own in the
work folder (`<work-dir>/mlflow.db`, `<work-dir>/mlartifacts`), new for every demo.

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
        "--no-release", action="store_true", help="skip qualify, sign, register, promote, canary"
    )
    parser.add_argument(
        "--stream-seconds", type=float, default=150.0, help="how long the joiner runs (150)"
    )
    parser.add_argument(
        "--stream-impressions", type=int, default=20_000, help="impressions replayed live (20000)"
    )
    # Slow enough that the traffic lasts well beyond the attribution window: the joiner's
    # watermark stops with the last event, so only what was served a window before it matures,
    # and the canary needs matured rows served after the fresh model's snapshot.
    parser.add_argument("--stream-rate", type=float, default=150.0, help="events/s (150)")
    parser.add_argument(
        "--compression", type=float, default=120.0, help="divides action delays when streaming"
    )


# The monitor exits 3 when an alert fires: worth showing, not a failed demo.
ALERT_EXIT = 3


# Qualify exits 3 for a model that is not qualified, the canary for a rolled-back challenger.
VERDICT_EXIT = 3


def _step(title: str, argv: list[str]) -> float:
    return _run(title, argv)[0]


def _run(title: str, argv: list[str], verdict: bool = False) -> tuple[float, int]:
    """Run one command; (seconds, exit code). `verdict`: exit 3 is an outcome, not a failure."""
    from freshlake.cli import main

    print(f"\n=== {title}\n$ freshlake {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    allowed = {0, ALERT_EXIT} if argv[0] == "monitor" or verdict else {0}
    if code not in allowed:
        raise SystemExit(f"demo step failed ({code}): freshlake {' '.join(argv)}")
    return time.perf_counter() - start, code


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark

    config = args.config
    work = Path(args.work_dir)
    common = ["--config", args.config_path] if args.config_path else []
    for override in args.overrides:
        common += ["--set", override]
    release = not (args.no_train or args.no_release)
    if release:
        common += _fresh_registry(work)
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
                ["train", "--out", str(model), "--nproc", "2", *common],
            )
        )
    timings = {title: _step(title, argv) for title, argv in steps}
    champion = release and _release_champion(model, common, timings)
    if not args.no_train:
        timings["stream live events through the online joiner"] = _stream(args, work, common)
        models = ["--model", str(model)]
        # The fresh model learns from the joiner's commits up to the one holding a third of its
        # negatives; the canary judges it on what matured after.
        pinned = _fresh_training_version(config)
        for title, argv in (
            (
                f"continue training on the fresh examples up to version {pinned} (warm start)",
                [
                    "train",
                    "--table",
                    "fresh_examples",
                    "--version",
                    str(pinned),
                    "--warm-start",
                    str(model),
                    "--out",
                    str(fresh_model),
                    "--nproc",
                    "2",
                    "--epochs",
                    "1",
                    # The joiner's window and watermark delay: which fresh rows have matured
                    # (training.delayed_feedback).
                    "--set",
                    f"labels.attribution_window_seconds={max(10, round(3600 / args.compression))}",
                    "--set",
                    "streaming.watermark_delay_seconds=5",
                    *common,
                ],
            ),
            (
                "both models on the batch eval rows (prediction difference, metrics)",
                ["compare-models", str(model), str(fresh_model), *common],
            ),
        ):
            timings[title] = _step(title, argv)
        if champion:
            _release_challenger(args, fresh_model, common, timings)
        for title, argv in (
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


def _fresh_registry(work: Path) -> list[str]:
    """Settings of a new, empty MLflow registry in the work folder (the demo's own)."""
    db, artifacts = (work / "mlflow.db").resolve(), (work / "mlartifacts").resolve()
    db.unlink(missing_ok=True)
    shutil.rmtree(artifacts, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    return [
        "--set",
        f"release.tracking_uri=sqlite:///{db}",
        "--set",
        f"release.artifact_root={artifacts.as_uri()}",
    ]


def _release_champion(model: Path, common: list[str], timings: dict[str, float]) -> bool:
    """Qualify, sign, register and promote the batch model; False when it did not qualify."""
    title = "qualify the batch model on the eval rows (exit 3 when not qualified)"
    timings[title], code = _run(title, ["qualify", str(model), *common], verdict=True)
    if code != 0:
        print("the batch model did not qualify: it is not signed or released", flush=True)
        return False
    for title, argv in (
        ("sign it (weights, model card, qualification report)", ["sign", str(model)]),
        ("register it in MLflow (lineage tags, alias challenger)", ["register", str(model)]),
        ("promote it: the champion", ["promote", "--reason", "first qualified model"]),
    ):
        timings[title] = _step(title, [*argv, *common])
    return True


def _release_challenger(
    args: argparse.Namespace, fresh: Path, common: list[str], timings: dict[str, float]
) -> None:
    """Qualify the fresh model against the champion; if it qualifies, sign, register and
    canary it: promoted when its log loss holds on the newer fresh rows, else rolled back."""
    title = "qualify the fresh model against the champion (exit 3 when not qualified)"
    timings[title], code = _run(title, ["qualify", str(fresh), *common], verdict=True)
    if code != 0:
        print("the fresh model did not qualify: the champion stays", flush=True)
        return
    for title, argv in (
        ("sign the fresh model", ["sign", str(fresh)]),
        ("register it: the challenger", ["register", str(fresh)]),
    ):
        timings[title] = _step(title, [*argv, *common])
    window = max(10, round(3600 / args.compression))  # the joiner's attribution window
    title = "canary: challenger beside the champion on newer matured rows (exit 3 when rolled back)"
    canary = [
        "canary",
        "--promote",
        "--set",
        f"labels.attribution_window_seconds={window}",
        "--set",
        "release.canary_min_rows=200",
        *common,
    ]
    timings[title] = _run(title, canary, verdict=True)[0]


def _fresh_training_version(config) -> int:
    """The first `fresh_examples` version holding a third of the negatives the joiner wrote.

    The joiner writes a click at once and a negative only once its attribution window has
    closed, so its first commits may hold clicks only: nothing a fresh model could learn from
    without bias (`training.delayed_feedback`); the traffic after the version, once matured, is
    the canary's. Rows are only appended, so the negatives grow with the version and a binary
    search finds it.
    """
    from pyspark.sql import functions as F

    from freshlake import contract
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark

    lake = open_lake(config, get_spark(config))
    latest = lake.version(contract.FRESH_EXAMPLES)
    if latest is None:
        raise SystemExit("the joiner wrote no fresh_examples")
    click = contract.label_column("click")

    def negatives(version: int) -> int:
        return lake.read(contract.FRESH_EXAMPLES, version).where(F.col(click) == 0).count()

    target = (negatives(latest) + 2) // 3
    if target == 0:
        return max(latest // 2, 1)
    low, high = 0, latest
    while low < high:
        middle = (low + high) // 2
        if negatives(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return low


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
