"""The online joiner: impressions x actions from Kafka -> `fresh_examples`, exactly once.

Semantics (docs/design.md sections 3 and 4): one row per kept impression, written as a positive in
the micro-batch where its first attributed click arrives, and as a negative when the watermark
passes the end of its attribution window without one. Three parts:

- `join_plan`: the streaming plan. A stream-stream LEFT OUTER join of impressions with the
  positive action under event-time watermarks, then labels, sampling, weights and features by
  the batch builder's `features/` functions, so sampled-out negatives never leave Spark.
- `join_state`: what the sink remembers between micro-batches (impressions written, secondary
  actions seen), bounded by the watermark.
- `join_sink`: the foreachBatch function. Drops re-sent and repeated rows, sets secondary labels
  (like, conversion) from the actions seen so far, and writes `fresh_examples` and
  `fresh_actions` in idempotent Delta transactions, so a batch replayed after a crash writes
  nothing twice.

This module wires them into one streaming query (`joiner_stream`, `start_joiner`).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.streaming.join_plan import (
    JOINER_QUERY,
    action_stream,
    impression_stream,
    joined_stream,
    latest_item_counts,
    stream_fill_values,
)
from freshlake.streaming.join_sink import JoinerSink
from freshlake.streaming.metrics import MetricsRecorder
from freshlake.streaming.queries import prepare_session, start_query

log = logging.getLogger(__name__)


def joiner_stream(spark: SparkSession, config: Config, lake: Lake) -> DataFrame:
    """The joiner's streaming plan with its static inputs (item counts, imputation values)."""
    boosted = config.sampling.rare_item.boost != 1.0
    item_counts = latest_item_counts(lake) if boosted else None
    if item_counts is None and boosted:
        log.warning("no item_stats table: the rare-item boost is off for this run")
    fill_values = stream_fill_values(lake, config)
    missing = [
        f.name
        for f in config.features.spec
        if f.kind == "numeric" and f.name not in fill_values and f.default is None
    ]
    if missing:
        raise ValueError(
            f"numeric features {missing} have no imputation value for the stream: set "
            "quality.imputation or a spec default, or run build-training-set first"
        )
    return joined_stream(
        impression_stream(spark, config),
        action_stream(spark, config),
        config,
        item_counts,
        fill_values,
    )


def start_joiner(
    spark: SparkSession,
    config: Config,
    lake: Lake,
    recorder: MetricsRecorder | None = None,
    available_now: bool = False,
    name: str = JOINER_QUERY,
) -> StreamingQuery:
    """Start the online joiner query (resumes from its checkpoint)."""
    prepare_session(spark, config)
    sink = JoinerSink(config, lake, recorder, name)
    stream = joiner_stream(spark, config, lake)
    return start_query(stream, name, config, sink, available_now=available_now)
