"""What every freshlake streaming query shares: checkpoints, its stable id, triggers, the run loop."""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from freshlake.config import Config
from streaming.metrics import MetricsRecorder

log = logging.getLogger(__name__)


def checkpoint_dir(config: Config, name: str) -> str:
    """`<streaming.checkpoint_root>/<name>` (default root `<lake.root>/_checkpoints`)."""
    root = config.streaming.checkpoint_root or f"{config.lake.root.rstrip('/')}/_checkpoints"
    if "://" not in root:
        root = str(Path(root).resolve())
    return f"{root.rstrip('/')}/{name}"


def metrics_log_path(config: Config, name: str) -> str:
    """Where a query's JSON-lines metrics go (`streaming.metrics_log`, or next to its checkpoint)."""
    if config.streaming.metrics_log:
        return config.streaming.metrics_log
    return f"{checkpoint_dir(config, name)}-metrics.jsonl"


def checkpointed_query_id(checkpoint: str) -> str:
    """The query id Spark keeps in the checkpoint: stable across restarts of the same query.

    Idempotent sinks use `<name>/<id>` as Delta application id, so a query restarted from its
    checkpoint skips batches it already committed, while a fresh checkpoint (batch ids from 0
    again) is a new application and writes.
    """
    if "://" in checkpoint:
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(checkpoint)
        with filesystem.open_input_stream(f"{path}/metadata") as stream:
            return json.loads(stream.read().decode())["id"]
    return json.loads(Path(checkpoint, "metadata").read_text())["id"]


def prepare_session(spark: SparkSession, config: Config) -> None:
    """Shuffle partitions of stateful queries (fixed in the checkpoint at first start)."""
    spark.conf.set("spark.sql.shuffle.partitions", str(config.streaming.shuffle_partitions))


def start_query(
    stream: DataFrame,
    name: str,
    config: Config,
    sink: Callable[[DataFrame, int], None],
    available_now: bool = False,
) -> StreamingQuery:
    """Start `stream` into a foreachBatch `sink` with the query's checkpoint and trigger."""
    writer: DataStreamWriter = (
        stream.writeStream.queryName(name)
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint_dir(config, name))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{config.streaming.trigger_seconds} seconds")
    return writer.start()


def run_until_done(
    queries: list[tuple[StreamingQuery, MetricsRecorder]],
    seconds: float | None = None,
    poll_s: float = 2.0,
) -> None:
    """Wait for the queries (all of them, or `seconds`), recording metrics as batches finish.

    SIGTERM and Ctrl-C stop the queries cleanly; the checkpoint resumes them.
    """
    deadline = time.monotonic() + seconds if seconds else None
    stopping = {"now": False}

    def _stop(_signum, _frame):
        stopping["now"] = True

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while any(q.isActive for q, _ in queries) and not stopping["now"]:
            if deadline is not None and time.monotonic() >= deadline:
                break
            for query, recorder in queries:
                query.awaitTermination(poll_s / len(queries))
                recorder.drain(query)
    except KeyboardInterrupt:
        log.info("interrupted: stopping the queries")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for query, recorder in queries:
            if query.isActive:
                query.stop()
            recorder.drain(query, final=True)
        for query, _ in queries:
            if query.exception() is not None:
                raise RuntimeError(f"query {query.name} failed: {query.exception()}")
