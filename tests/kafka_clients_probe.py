"""The demo's streaming phase in one process, for tests/test_kafka_clients_close.py.

`python tests/kafka_clients_probe.py WORK PORT IDLE_S`: broker start, events from `freshlake
produce` in its own process, `freshlake stream-join` for a while, `freshlake broker stop`; then,
with the Spark session still up as for the demo's later steps, waits IDLE_S, runs a Spark job on
the same Python workers, waits IDLE_S again and prints the librdkafka threads still alive in
this process and in the JVM's Python workers as `=== kafka threads: [...]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from freshlake.cli import main  # noqa: E402
from freshlake.config import GenerateConfig, load_config  # noqa: E402
from freshlake.spark import get_spark  # noqa: E402
from freshlake.streaming.daemon import descendants  # noqa: E402
from freshlake.streaming.producer import ensure_topics  # noqa: E402
from freshlake.synth import generate_logs  # noqa: E402


def kafka_threads(pids: list[int]) -> list[str]:
    """`pid:thread` of every librdkafka thread (named rdk:...) of the processes."""
    found = []
    for pid in pids:
        tasks = Path(f"/proc/{pid}/task")
        for task in tasks.iterdir() if tasks.exists() else []:
            try:
                name = (task / "comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("rdk:"):
                found.append(f"{pid}:{name}")
    return found


def run(work: Path, port: int, idle_s: float) -> None:
    overrides = [
        f"broker.port={port}",
        f"broker.state_dir={work / 'broker'}",
        f"kafka.bootstrap_servers=127.0.0.1:{port}",
        f"lake.root={work / 'lake'}",
        "quality.imputation.hour=12",
        "streaming.trigger_seconds=1",
        "labels.attribution_window_seconds=30",
        "streaming.watermark_delay_seconds=5",
    ]
    common = [arg for override in overrides for arg in ("--set", override)]
    config = load_config(None, overrides)
    generate_logs(GenerateConfig(impressions=5000, days=1, seed=1, workers=1), work / "logs")
    assert main(["broker", "start", *common]) == 0
    ensure_topics(config.kafka, config.kafka.topics.values())
    produce = ["produce", "--logs", str(work / "logs"), "--timing", "live", "--rate", "300",
               "--compression", "120", *common]  # fmt: skip
    producer = subprocess.Popen([sys.executable, "-m", "freshlake.cli", *produce])
    assert main(["stream-join", "--seconds", "25", *common]) == 0
    producer.terminate()
    producer.wait(60)
    assert main(["broker", "stop", *common]) == 0
    print("=== broker stopped", file=sys.stderr, flush=True)
    time.sleep(idle_s)
    spark = get_spark(config)  # a later step's job, on the same Python workers
    spark.range(100, numPartitions=2).mapInArrow(lambda batches: batches, "id long").count()
    time.sleep(idle_s)
    jvm = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # noqa: SLF001
    threads = kafka_threads([os.getpid(), *descendants(jvm)])
    print(f"=== kafka threads: {threads}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
