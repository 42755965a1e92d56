"""Soak benchmark: the online joiner at a steady rate for a long run; is everything flat?

Replays generated logs live (as bench_streaming.py: re-stamped with the send time, action delays
divided by --compression) into a local broker at --rate events/s for --minutes from a separate
producer process, while the joiner runs with a --trigger seconds trigger. The logs are generated
up front as one file per --segment-seconds of traffic; the producer loads the next segment while
the current one plays, so memory stays bounded and the traffic has no gaps. Every
--sample-seconds it samples the Python driver's RSS, the JVM's RSS and heap in use (driver and
executor: one JVM in local mode), the Python workers' RSS (the executor's data-source and UDF
workers), the broker's RSS and CPU, the join state rows (Spark's progress) and the 1-minute load average. It prints per --window-minutes window the
p50/p99 of (commit time of a positive's example - its click's action_at), and, after
--warmup-minutes, each figure's least-squares slope per hour, absolute and relative to its mean.

    .venv/bin/python bench/bench_soak.py --rate 1000 --minutes 30
"""

from __future__ import annotations

import argparse
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_streaming import REPO, free_port  # noqa: E402

from freshlake.config import BrokerConfig, GenerateConfig, build_config, load_config  # noqa: E402
from freshlake.streaming.broker import LocalBroker  # noqa: E402
from freshlake.streaming.daemon import descendants  # noqa: E402
from freshlake.streaming.metrics import quantile, read_metrics_log  # noqa: E402
from freshlake.streaming.queries import metrics_log_path, stop_between_batches  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# Figures sampled over time: their window means and slopes are reported.
RESOURCES = (
    "driver_python_rss_mb", "jvm_rss_mb", "jvm_heap_used_mb", "python_workers_rss_mb",
    "state_rows", "broker_rss_mb", "broker_cpu_pct",
)  # fmt: skip
WINDOW_MEANS = (*RESOURCES, "jvm_cpu_pct", "load_1m")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- the producer process ------------------------------------------------------------------------


def produce_segments(config_file: Path, segments: list[Path], rate: float, compression: float):
    """Replay each segment folder live, back to back: segment k+1 starts when segment k's last
    impression is due (its actions' tail overlaps the next segment), loaded while k plays."""
    from freshlake.config import load_config as load
    from freshlake.streaming.producer import EventLogger
    from freshlake.streaming.replay import load_logs, replay

    kafka = load(config_file).kafka
    players: list[threading.Thread] = []
    due = None
    for folder in segments:
        impressions, actions = load_logs(folder)
        due = due if due is not None else time.monotonic()
        time.sleep(max(0.0, due - time.monotonic()))
        logger = EventLogger(kafka)
        player = threading.Thread(
            target=replay,
            args=(logger, impressions, actions, rate, "live", compression),
            daemon=True,
        )
        player.start()
        players.append(player)
        due += (len(impressions) + len(actions)) / rate
        del impressions, actions
    for player in players:
        player.join()


# --- sampling ------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(RSS bytes, CPU seconds) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3): utime is field 14, stime 15, rss (pages) 24.
    return int(fields[21]) * PAGE, (int(fields[11]) + int(fields[12])) / TICKS


class Sampler:
    """Resource samples of the driver, JVM, Python workers and broker processes."""

    def __init__(self, spark, broker: LocalBroker):
        self.jvm = spark._jvm  # noqa: SLF001 - the session's own gateway
        self.jvm_pid = int(self.jvm.java.lang.ProcessHandle.current().pid())
        self.broker = broker
        self.last_cpu: dict[str, tuple[float, float]] = {}

    def _cpu_percent(self, name: str, cpu_s: float, now: float) -> float | None:
        previous = self.last_cpu.get(name)
        self.last_cpu[name] = (now, cpu_s)
        if previous is None or now <= previous[0]:
            return None
        return round(100 * (cpu_s - previous[1]) / (now - previous[0]), 1)

    def sample(self, started: float, state_rows: int | None) -> dict:
        now = time.monotonic()
        row: dict = {"minute": round((now - started) / 60, 3), "state_rows": state_rows}
        row["load_1m"] = os.getloadavg()[0]
        driver = _stat(os.getpid())
        row["driver_python_rss_mb"] = driver[0] / 2**20 if driver else None
        jvm = _stat(self.jvm_pid)
        if jvm:
            row["jvm_rss_mb"] = jvm[0] / 2**20
            row["jvm_cpu_pct"] = self._cpu_percent("jvm", jvm[1], now)
        runtime = self.jvm.java.lang.Runtime.getRuntime()
        row["jvm_heap_used_mb"] = (runtime.totalMemory() - runtime.freeMemory()) / 2**20
        workers = [s for p in descendants(self.jvm_pid) if (s := _stat(p))]
        row["python_workers"] = len(workers)
        row["python_workers_rss_mb"] = sum(s[0] for s in workers) / 2**20
        pid = self.broker.pid()
        stat = _stat(pid) if pid else None
        if stat:
            row["broker_rss_mb"] = stat[0] / 2**20
            row["broker_cpu_pct"] = self._cpu_percent("broker", stat[1], now)
        return row


# --- analysis ------------------------------------------------------------------------------------


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minute, value) points, per hour."""
    points = [(x, y) for x, y in points if y is not None]
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if not var:
        return None
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def trend(points: list[tuple[float, float]]) -> dict:
    """Mean, slope per hour and the slope relative to the mean (% per hour) of the points."""
    values = [y for _, y in points if y is not None]
    mean = sum(values) / len(values) if values else None
    slope = slope_per_hour(points)
    relative = 100 * slope / mean if slope is not None and mean else None
    return {
        "mean": _round(mean),
        "slope_per_h": _round(slope),
        "slope_pct_of_mean_per_h": _round(relative),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def click_latencies(metrics: list[dict], started_epoch: float) -> list[tuple[float, float]]:
    """(minute of the click since the start, seconds to its committed example) per positive."""
    out = []
    for row in metrics:
        committed = datetime.fromisoformat(row["committed_at"]).timestamp()
        for latency in row["latencies_s"]:
            out.append(((committed - latency - started_epoch) / 60, latency))
    return out


def windows(
    latencies: list[tuple[float, float]], samples: list[dict], minutes: float, width: float
) -> list[dict]:
    """Latency percentiles and mean resources per window of `width` minutes."""
    rows = []
    start = 0.0
    while start < minutes:
        end = start + width
        lat = [v for m, v in latencies if start <= m < end]
        inside = [s for s in samples if start <= s["minute"] < end]

        def mean(key: str, inside=inside) -> float | None:
            values = [s[key] for s in inside if s.get(key) is not None]
            return _round(sum(values) / len(values)) if values else None

        rows.append(
            {
                "window_min": f"{start:g}-{end:g}",
                "positives": len(lat),
                "latency_p50_s": _round(quantile(lat, 0.5)),
                "latency_p99_s": _round(quantile(lat, 0.99)),
                **{key: mean(key) for key in WINDOW_MEANS},
            }
        )
        start = end
    return rows


def per_minute_percentiles(latencies: list[tuple[float, float]], q: float) -> list[tuple]:
    by_minute: dict[int, list[float]] = {}
    for minute, value in latencies:
        by_minute.setdefault(int(minute), []).append(value)
    return [(m + 0.5, quantile(v, q)) for m, v in sorted(by_minute.items())]


# --- the run -------------------------------------------------------------------------------------


def generate_segments(work: Path, rate: float, seconds: float, segment_s: float) -> list[Path]:
    """Logs for `seconds` of traffic as one folder per segment (a chunk file each)."""
    from freshlake.synth import generate_logs

    files = max(1, round(seconds / segment_s))
    settings = GenerateConfig(
        impressions=int(rate * seconds * 1.05),
        days=1,
        files_per_day=files,
        seed=3,
        workers=2,
    )
    logs = work / "logs"
    generate_logs(settings, logs, window_seconds=3600)
    segments = []
    for index, part in enumerate(sorted((logs / "impressions").glob("part-*"))):
        folder = work / "segments" / f"{index:03d}"
        for kind in ("impressions", "actions"):
            (folder / kind).mkdir(parents=True)
            source = logs / kind / part.name
            if source.exists():
                (folder / kind / part.name).symlink_to(source)
        segments.append(folder)
    return segments


def report(work: Path) -> dict:
    """The soak's figures from its work folder (run.json, samples.jsonl, the metrics log)."""
    run = json.loads((work / "run.json").read_text())
    samples = [json.loads(line) for line in (work / "samples.jsonl").read_text().splitlines()]
    metrics = read_metrics_log(run["metrics_log"])
    minutes, warmup = run["ran_minutes"], run["warmup_minutes"]
    latencies = click_latencies(metrics, run["started_epoch"])
    steady = [s for s in samples if s["minute"] >= warmup]
    steady_lat = [(m, v) for m, v in latencies if warmup <= m < minutes]
    trends = {
        "latency_p50_s (per minute)": trend(per_minute_percentiles(steady_lat, 0.5)),
        "latency_p99_s (per minute)": trend(per_minute_percentiles(steady_lat, 0.99)),
        **{
            key: trend([(s["minute"], s.get(key)) for s in steady])
            for key in RESOURCES
            if any(s.get(key) is not None for s in steady)
        },
    }
    events = sum(r["input_rows"] or 0 for r in metrics)
    result = {
        "rate": run["rate"],
        "minutes_planned": run["minutes"],
        "minutes_ran": round(minutes, 2),
        "failure": run["failure"],
        "trigger_s": run["trigger"],
        "events_processed": events,
        "processed_events_per_s": round(events / (minutes * 60)),
        "batches": len(metrics),
        "batch_duration_p50_s": _round(quantile([r["batch_duration_s"] for r in metrics], 0.5)),
        "positives": len(latencies),
        "mean_load_1m": _round(sum(s["load_1m"] for s in samples) / len(samples)),
        "windows": windows(latencies, samples, minutes, run["window_minutes"]),
        f"trends_after_{warmup:g}_min": trends,
    }
    print(json.dumps(result, indent=2))
    (work / "result.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s (default 1000)")
    parser.add_argument("--minutes", type=float, default=30.0, help="run length (default 30)")
    parser.add_argument("--trigger", type=float, default=2.0, help="trigger interval s (default 2)")
    parser.add_argument("--compression", type=float, default=60.0, help="action delay divisor")
    parser.add_argument("--window", type=int, default=60, help="attribution window s (default 60)")
    parser.add_argument("--segment-seconds", type=float, default=150.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument("--produce", nargs="+", help=argparse.SUPPRESS)  # the producer process
    parser.add_argument("--report", help="print the figures of an earlier run's --work folder")
    args = parser.parse_args()
    if args.report:
        report(Path(args.report))
        return 0
    if args.produce:
        config_file, *segments = args.produce
        produce_segments(
            Path(config_file), [Path(s) for s in segments], args.rate, args.compression
        )
        return 0

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    broker_config = BrokerConfig(port=free_port(), state_dir=str(work / "broker"))
    broker = LocalBroker(broker_config)
    broker.start()
    producer = None
    try:
        tree = load_config().model_dump(mode="json")
        tree["lake"]["root"] = str(work / "lake")
        tree["kafka"]["bootstrap_servers"] = broker.bootstrap_servers
        tree["broker"] = broker_config.model_dump(mode="json")
        tree["labels"]["attribution_window_seconds"] = args.window
        tree["quality"]["imputation"] = {"hour": 12}
        tree["streaming"].update(
            {
                "trigger_seconds": args.trigger,
                "watermark_delay_seconds": 10,
                "checkpoint_root": None,
            }
        )
        config = build_config(tree)
        config_file = work / "soak.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))

        print(f"generating {args.minutes} min of logs at {args.rate:.0f} events/s", flush=True)
        segments = generate_segments(work, args.rate, args.minutes * 60, args.segment_seconds)

        from freshlake.lake import open_lake
        from freshlake.spark import get_spark
        from freshlake.streaming.join_plan import JOINER_QUERY
        from freshlake.streaming.joiner import start_joiner
        from freshlake.streaming.metrics import MetricsRecorder
        from freshlake.streaming.producer import ensure_topics

        ensure_topics(config.kafka, config.kafka.topics.values())
        spark = get_spark(config)
        lake = open_lake(config, spark)
        metrics_log = metrics_log_path(config, JOINER_QUERY)
        recorder = MetricsRecorder(JOINER_QUERY, metrics_log, lake)
        query = start_joiner(spark, config, lake, recorder)
        sampler = Sampler(spark, broker)

        command = [sys.executable, __file__, "--rate", str(args.rate), "--compression",
                   str(args.compression), "--produce", str(config_file), *map(str, segments)]  # fmt: skip
        producer = subprocess.Popen(command, cwd=REPO)
        started, started_epoch = time.monotonic(), time.time()
        (work / "run.json").write_text(json.dumps({**vars(args), "started_epoch": started_epoch}))
        state_rows = None
        next_sample = started
        failure = None
        print(f"soak: {args.minutes} min at {args.rate:.0f} events/s; samples in {work}")
        while time.monotonic() - started < args.minutes * 60:
            try:
                query.awaitTermination(1.0)
            except Exception as exc:  # the query failed: awaitTermination raises its error
                failure = f"the joiner failed: {str(exc).splitlines()[0]}"
                break
            for row in recorder.drain(query):
                state_rows = row["state_rows"] if row["state_rows"] is not None else state_rows
            if not query.isActive:
                failure = f"the joiner stopped: {str(query.exception()).splitlines()[0]}"
                break
            if producer.poll() not in (None, 0):
                failure = f"the producer failed ({producer.returncode})"
                break
            if time.monotonic() >= next_sample:
                sample = sampler.sample(started, state_rows)
                with open(work / "samples.jsonl", "a") as out:
                    out.write(json.dumps(sample) + "\n")
                next_sample += args.sample_seconds
        minutes = (time.monotonic() - started) / 60
        producer.terminate()
        producer.wait(30)
        if query.isActive:
            stop_between_batches(query)
        with contextlib.suppress(Exception):  # a failed query's last reports
            recorder.drain(query, final=True)
        (work / "run.json").write_text(
            json.dumps(
                {**vars(args), "started_epoch": started_epoch, "ran_minutes": minutes,
                 "failure": failure, "metrics_log": str(metrics_log)}
            )
        )  # fmt: skip
        report(work)
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
