"""What every freshlake streaming query shares: checkpoints, its stable id, triggers, the run loop."""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from freshlake.config import Config
from freshlake.streaming.metrics import MetricsRecorder

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


def _read_text(path: str) -> str:
    if "://" in path:
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode()
    return Path(path).read_text()


def checkpointed_query_id(checkpoint: str) -> str:
    """The query id Spark keeps in the checkpoint: stable across restarts of the same query.

    Idempotent sinks use `<name>/<id>` as Delta application id, so a query restarted from its
    checkpoint skips batches it already committed, while a fresh checkpoint (batch ids from 0
    again) is a new application and writes.
    """
    return json.loads(_read_text(f"{checkpoint}/metadata"))["id"]


def batch_watermark(checkpoint: str, batch_id: int) -> datetime:
    """The event-time watermark micro-batch `batch_id` runs with (UTC).

    Spark writes it to the offset log (`offsets/<batch_id>`, line 2, `batchWatermarkMs`) before
    the batch runs, so a foreachBatch sink can read it, also when a batch is replayed.
    """
    lines = _read_text(f"{checkpoint}/offsets/{batch_id}").splitlines()
    millis = json.loads(lines[1]).get("batchWatermarkMs", 0)
    return datetime.fromtimestamp(millis / 1000, UTC)


# Settings of stateful queries. Changelog checkpointing makes a RocksDB state commit write the
# changed keys instead of a snapshot of every store (Spark still snapshots in the background).
# Join state format 4 indexes each side's rows by event time, so evicting what the watermark
# passed reads only those rows; formats 1-3 scan the whole join state every micro-batch, which
# at 2,000 events/s and a 60 s window (130k rows) cost ~2 s per batch. The format is fixed in a
# checkpoint at its first start.
STREAMING_CONF = {
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.sql.streaming.join.stateFormatVersion": "4",
}


def prepare_session(spark: SparkSession, config: Config) -> None:
    """Shuffle partitions of stateful queries (fixed in the checkpoint at first start)."""
    spark.conf.set("spark.sql.shuffle.partitions", str(config.streaming.shuffle_partitions))
    for key, value in STREAMING_CONF.items():
        spark.conf.set(key, value)


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


def stop_between_batches(query: StreamingQuery, timeout_s: float = 120.0) -> None:
    """Stop `query` once its running micro-batch (if any) has finished, or after `timeout_s`.

    `query.stop()` interrupts a running batch: harmless for correctness (the checkpoint replays
    it and the sinks are idempotent) but noisy, and an interrupted Python foreachBatch call can
    end the stream thread with an error instead of a clean stop.
    """
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.1)
    if query.isActive:
        query.stop()


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
            stop_between_batches(query)
            recorder.drain(query, final=True)
        for query, _ in queries:
            if query.exception() is not None:
                raise RuntimeError(f"query {query.name} failed: {query.exception()}")
