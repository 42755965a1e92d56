"""Freshness benchmark: action -> committed positive example latency of the online joiner.

Replays generated logs in `live` timing (re-stamped with the send time, action delays divided
by --compression) into a local broker at --rate events/s from a separate process (`freshlake
produce`, as a serving system's logger would) while the joiner runs with a --trigger seconds
processing-time trigger, then prints sustained events/s, p50/p99 of (commit time of a positive's
example - its click's action_at) for clicks after a --warmup (also over all clicks) and where a
micro-batch spends its time (Spark's progress). Before the measured replay, a short burst of
other logs runs through the joiner so its first data batch, which compiles the plan (15 s
here), is behind it: a joiner runs for days, the figures are its steady state; the first data
batch's duration is reported on its own. The baseline, measured in the same run at the same
rate, is the raw produce -> consume latency through the broker.

    .venv/bin/python bench/bench_streaming.py --rate 2000 --seconds 60 --trigger 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from freshlake.config import (  # noqa: E402
    BrokerConfig,
    GenerateConfig,
    KafkaConfig,
    build_config,
    load_config,
)
from freshlake.streaming.broker import LocalBroker  # noqa: E402
from freshlake.streaming.metrics import quantile, read_metrics_log  # noqa: E402
from freshlake.streaming.offsets import consumer_config  # noqa: E402
from freshlake.streaming.producer import ensure_topics, producer_config  # noqa: E402
from freshlake.streaming.queries import metrics_log_path, stop_between_batches  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_broker_latency(kafka: KafkaConfig, rate: float, seconds: float) -> list[float]:
    """Produce timestamped messages at `rate`/s with the event logger's producer settings and
    consume them: seconds from send to receipt."""
    servers = kafka.bootstrap_servers
    topic = f"latency-{int(time.time())}"
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, 2)])[topic].result()
    consumer = Consumer(consumer_config(servers))
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    latencies: list[float] = []
    total = int(rate * seconds)

    def consume() -> None:
        deadline = time.monotonic() + seconds + 30
        while len(latencies) < total and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    latencies.append(time.time() - float(message.value()))

    reader = threading.Thread(target=consume)
    reader.start()
    producer = Producer(producer_config(kafka))
    start = time.monotonic()
    for i in range(total):
        wait = start + i / rate - time.monotonic()
        if wait > 0.001:
            time.sleep(wait)
        producer.produce(topic, value=repr(time.time()).encode(), partition=i % 2)
        producer.poll(0)
    producer.flush()
    reader.join()
    consumer.close()
    return latencies


def _topic_events(config) -> int:
    """Records in the impressions and actions topics (what the producer delivered)."""
    from freshlake.streaming.offsets import end_offsets, topic_partitions

    consumer = Consumer(consumer_config(config.kafka.bootstrap_servers))
    try:
        pairs = topic_partitions(consumer, config.kafka.topics.values())
        ends = end_offsets(consumer, pairs)
    finally:
        consumer.close()
    return sum(o for parts in ends.values() for o in parts.values())


def _produce(config_file: Path, logs: Path, rate: float, compression: float) -> subprocess.Popen:
    """`freshlake produce` replaying `logs` live at `rate` events/s, in its own process."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "freshlake.streaming.produce_cli", "--config", str(config_file),
            "--logs", str(logs), "--rate", str(rate), "--timing", "live",
            "--compression", str(compression),
        ],
        cwd=REPO,
    )  # fmt: skip


def _warm_up(query, recorder, config_file: Path, logs: Path, rate: float) -> float:
    """Run a short burst through the joiner until a batch after its first data batch finished;
    the first data batch's seconds."""
    producer = _produce(config_file, logs, rate, compression=3600.0)  # every action within ~1 s
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        query.awaitTermination(1.0)
        recorder.drain(query)
        if not query.isActive:
            producer.kill()
            raise RuntimeError(f"the joiner stopped: {query.exception()}")
        busy = [p for p in query.recentProgress if p.get("numInputRows")]
        if (
            busy
            and query.lastProgress["batchId"] > busy[0]["batchId"]
            and producer.poll() is not None
        ):
            return busy[0]["durationMs"]["triggerExecution"] / 1000
    producer.kill()
    raise RuntimeError("the joiner did not finish its warm-up batches within 300 s")


def _rate(counts: dict[str, tuple[float, int]]) -> int | None:
    """Events/s between the `from` and `to` marks of (monotonic time, records on the topics)."""
    if "from" not in counts or "to" not in counts or counts["to"][0] <= counts["from"][0]:
        return None
    (t0, n0), (t1, n1) = counts["from"], counts["to"]
    return round((n1 - n0) / (t1 - t0))


def _phase_seconds(progress: list[dict]) -> dict[str, float]:
    """Median seconds per micro-batch phase (Spark's durationMs) over batches that had input."""
    busy = [p["durationMs"] for p in progress if p.get("numInputRows")]
    phases = sorted({k for d in busy for k in d})
    return {k: quantile([d.get(k, 0) / 1000 for d in busy], 0.5) for k in phases}


def _print_batches(progress: list[dict]) -> None:
    """One line per micro-batch with input: its phases and each state operator's work."""
    for p in progress:
        if not p.get("numInputRows"):
            continue
        phases = {k: v for k, v in p["durationMs"].items() if v >= 20}
        states = [
            {
                k: s.get(k)
                for k in ("numRowsTotal", "numRowsUpdated", "numRowsRemoved", "allUpdatesTimeMs",
                          "allRemovalsTimeMs", "commitTimeMs")
            }
            for s in p.get("stateOperators", [])
        ]  # fmt: skip
        print(f"batch {p['batchId']}: {p['numInputRows']} rows {phases} state {states}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s (default 2000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="replay duration (default 60)")
    parser.add_argument("--trigger", type=float, default=2.0, help="trigger interval s (default 2)")
    parser.add_argument(
        "--compression", type=float, default=60.0, help="action delay divisor (60: 1 h -> 60 s)"
    )
    parser.add_argument("--window", type=int, default=60, help="attribution window s (default 60)")
    parser.add_argument(
        "--partitions",
        type=int,
        help="shuffle/state partitions (default streaming.shuffle_partitions)",
    )
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="latency percentiles count clicks from this many seconds into the replay on "
        "(the join state is still growing); all clicks are reported too",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print each micro-batch's phases and state metrics"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    broker = LocalBroker(BrokerConfig(port=free_port(), state_dir=str(work / "broker")))
    broker.start()
    try:
        base = load_config()
        tree = base.model_dump(mode="json")
        tree["lake"]["root"] = str(work / "lake")
        tree["kafka"]["bootstrap_servers"] = broker.bootstrap_servers
        tree["labels"]["attribution_window_seconds"] = args.window
        tree["quality"]["imputation"] = {"hour": 12}
        tree["streaming"].update(
            {
                "trigger_seconds": args.trigger,
                "watermark_delay_seconds": 10,
                "shuffle_partitions": args.partitions or tree["streaming"]["shuffle_partitions"],
                "checkpoint_root": None,
            }
        )
        config = build_config(tree)

        print(f"baseline: raw produce -> consume at {args.rate:.0f}/s for {args.baseline_seconds}s")
        baseline = raw_broker_latency(config.kafka, args.rate, args.baseline_seconds)

        impressions_needed = int(args.rate * args.seconds * 1.05)
        from freshlake.synth import generate_logs

        logs, warm_logs = work / "logs", work / "warm-up-logs"
        settings = GenerateConfig(impressions=impressions_needed, days=1, seed=3, workers=1)
        generate_logs(settings, logs, window_seconds=3600)
        warm = GenerateConfig(impressions=int(args.rate * 3), days=1, seed=4, workers=1)
        generate_logs(warm, warm_logs, window_seconds=3600)
        ensure_topics(config.kafka, config.kafka.topics.values())
        config_file = work / "bench.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))

        from freshlake.lake import open_lake
        from freshlake.spark import get_spark
        from freshlake.streaming.join_plan import JOINER_QUERY
        from freshlake.streaming.joiner import start_joiner
        from freshlake.streaming.metrics import MetricsRecorder

        spark = get_spark(config)
        lake = open_lake(config, spark)
        recorder = MetricsRecorder(JOINER_QUERY, metrics_log_path(config, JOINER_QUERY), lake)
        query = start_joiner(spark, config, lake, recorder)
        first_batch_s = _warm_up(query, recorder, config_file, warm_logs, args.rate)
        warm_batches = query.lastProgress["batchId"]
        warm_events = _topic_events(config)

        producer = _produce(config_file, logs, args.rate, args.compression)
        # The replay's tail (clicks long after their impression, orphans) would trickle on for
        # minutes: the run measures --seconds of traffic plus one attribution window.
        started, replay_from = time.monotonic(), time.time()
        measured_from = replay_from + args.warmup
        # The producer's rate while latencies are measured: records on the topics when the
        # measured clicks start (--warmup) and when the replay's --seconds are over.
        counts: dict[str, tuple[float, int]] = {}
        while producer.poll() is None and time.monotonic() - started < args.seconds + args.window:
            for mark, at in (("from", args.warmup), ("to", args.seconds)):
                if mark not in counts and time.monotonic() - started >= at:
                    counts[mark] = (time.monotonic(), _topic_events(config))
            query.awaitTermination(1.0)
            recorder.drain(query)
            if not query.isActive:
                producer.kill()
                raise RuntimeError(f"the joiner stopped: {query.exception()}")
        if producer.poll() is None:
            producer.terminate()
            producer.wait(30)
        elif producer.returncode != 0:
            raise RuntimeError(f"the producer failed ({producer.returncode})")
        produced = _topic_events(config) - warm_events
        time.sleep(args.trigger * 3 + 10)  # the last actions' batches
        recorder.drain(query)
        progress = [p for p in query.recentProgress if p["batchId"] > warm_batches]
        phases = _phase_seconds(progress)
        if args.verbose:
            _print_batches(progress)
        stop_between_batches(query)
        recorder.drain(query, final=True)
        if query.exception():
            raise RuntimeError(str(query.exception()))

        rows = [
            r
            for r in read_metrics_log(metrics_log_path(config, JOINER_QUERY))
            if r["batch_id"] > warm_batches
        ]

        def clicks_after(moment: float) -> list[float]:
            return [
                x
                for r in rows
                for x in r["latencies_s"]
                if datetime.fromisoformat(r["committed_at"]).timestamp() - x >= moment
            ]

        everything, latencies = clicks_after(replay_from), clicks_after(measured_from)
        durations = [r["batch_duration_s"] for r in rows if r["input_rows"]]
        processed = sum(r["input_rows"] or 0 for r in rows)
        busy = sum(d for d in durations if d)
        result = {
            "trigger_s": args.trigger,
            "shuffle_partitions": config.streaming.shuffle_partitions,
            "target_rate": args.rate,
            "produced_events_per_s_while_measured": _rate(counts),
            "events_produced": produced,
            "events_processed": processed,
            "processing_events_per_s_while_busy": round(processed / busy) if busy else None,
            "batches": len(durations),
            "batch_duration_p50_s": quantile(durations, 0.5),
            "batch_phase_p50_s": phases,
            "first_data_batch_s": first_batch_s,
            "positives": len(latencies),
            "latency_p50_s": quantile(latencies, 0.5),
            "latency_p99_s": quantile(latencies, 0.99),
            "latency_max_s": max(latencies) if latencies else None,
            "warmup_s": args.warmup,
            "latency_p50_s_with_warmup": quantile(everything, 0.5),
            "latency_p99_s_with_warmup": quantile(everything, 0.99),
            "baseline_broker_p50_s": quantile(baseline, 0.5),
            "baseline_broker_p99_s": quantile(baseline, 0.99),
        }
        if result["latency_p50_s"] and result["baseline_broker_p50_s"]:
            result["p50_ratio_vs_broker"] = round(
                result["latency_p50_s"] / result["baseline_broker_p50_s"], 1
            )
        print(json.dumps(result, indent=2))
        targets = (result["latency_p50_s"] or 1e9) < 5 and (result["latency_p99_s"] or 1e9) < 15
        print(
            f"target p50 < 5 s and p99 < 15 s at {args.rate:.0f} events/s: "
            f"{'met' if targets else 'NOT met'}"
        )
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
