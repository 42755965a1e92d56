"""Bronze ingest: Kafka topics -> the `impressions` / `actions` Delta tables, exactly once.

Each micro-batch is validated with the batch ingest's own functions (`features.validation`,
contract 2): valid records go to the kind's table, rejected ones to `quarantine` with their
topic, partition, offset and raw payload, and the stream keeps running. Every write is an
idempotent Delta transaction (application id `<query name>/<query id>`, version = batch id), so
a batch replayed after a crash writes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from freshlake import contract
from freshlake.config import Config
from freshlake.features.validation import (
    CONTRACTS,
    REASON,
    check_records,
    quarantine_rows,
    run_clock,
    valid_rows,
)
from freshlake.lake import Lake
from freshlake.streaming.metrics import BatchReport, MetricsRecorder
from freshlake.streaming.queries import (
    checkpoint_dir,
    checkpointed_query_id,
    prepare_session,
    start_query,
)
from freshlake.streaming.source import read_kafka_stream

log = logging.getLogger(__name__)

QUARANTINE_TABLE = contract.QUARANTINE


def bronze_query_name(kind: str) -> str:
    return f"bronze-{kind}"


def raw_records(stream: DataFrame) -> DataFrame:
    """Kafka records as validation input: `value` as text plus the Kafka coordinates."""
    return stream.select(
        F.col("value").cast("string").alias("value"), "topic", "partition", "offset"
    )


def bronze_sink(
    config: Config, lake: Lake, kind: str, name: str, recorder: MetricsRecorder | None = None
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function writing one micro-batch of `kind` records."""
    contract = CONTRACTS[kind]
    checkpoint = checkpoint_dir(config, name)

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        app_id = f"{name}/{checkpointed_query_id(checkpoint)}"
        run_id = f"{name}-{batch_id}"
        now = datetime.now(UTC)  # one clock per batch: both outputs agree on time checks
        clock = run_clock(now)
        checked = check_records(batch, contract, config, clock).persist()
        try:
            counts = dict(checked.groupBy(F.col(REASON).isNull()).count().collect())
            outputs = {
                kind: (valid_rows(checked, contract, run_id), counts.get(True, 0)),
                QUARANTINE_TABLE: (
                    quarantine_rows(checked, contract, run_id, clock),
                    counts.get(False, 0),
                ),
            }
            written = {}
            for table, (rows, count) in outputs.items():
                if count:  # an empty batch is not worth a table version
                    _write(lake, table, rows, app_id, batch_id)
                written[table] = count
        finally:
            checked.unpersist()
        if recorder is not None:
            recorder.report(
                BatchReport(
                    batch_id=batch_id,
                    committed_at=datetime.now(UTC),
                    rows_written=written,
                )
            )
        if written[QUARANTINE_TABLE]:
            log.warning(
                "%s batch %d: %d records quarantined", name, batch_id, written[QUARANTINE_TABLE]
            )

    return write_batch


def _write(lake: Lake, table: str, rows: DataFrame, app_id: str, batch_id: int) -> None:
    """Write one batch's rows to `table` as an idempotent transaction (app id, batch id).

    Both kinds' queries write `quarantine`: when both create it at once (the first poison
    message of each), the commit that loses the race is retried once as an append; the app
    transaction makes the retry write nothing twice.
    """
    existed = lake.exists(table)
    try:
        lake.write(table, rows, partition_by=["dt"], app_id=app_id, app_version=batch_id)
    except Exception:
        if existed or not lake.exists(table):
            raise
        log.warning("%s was created by another query meanwhile; appending instead", table)
        lake.write(table, rows, partition_by=["dt"], app_id=app_id, app_version=batch_id)


def start_bronze_ingest(
    spark: SparkSession,
    config: Config,
    lake: Lake,
    kind: str,
    recorder: MetricsRecorder | None = None,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the bronze query of `kind` (impressions | actions) from its Kafka topic."""
    if kind not in CONTRACTS:
        raise ValueError(f"kind must be one of {sorted(CONTRACTS)}, not {kind!r}")
    prepare_session(spark, config)
    name = bronze_query_name(kind)
    stream = raw_records(read_kafka_stream(spark, config, config.kafka.topics[kind]))
    sink = bronze_sink(config, lake, kind, name, recorder)
    return start_query(stream, name, config, sink, available_now=available_now)
