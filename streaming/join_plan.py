"""The joiner's streaming plan: impressions x positive actions -> example rows, inside Spark.

- A stream-stream LEFT OUTER join of impressions with the positive action (`labels.
  positive_action`, e.g. click) on `impression_id`, with event-time watermarks on `served_at` and
  `action_at` and the attribution window as the time-range condition
  (`served_at - clock_skew <= action_at <= served_at + window`). An impression's row comes out
  in the micro-batch where an attributed click arrives, and as a negative when the watermark
  passes the end of its window without one (Spark emits the null-padded row then).
- Impressions are screened like the batch builder (`freshlake.features.quality.impression_problem`);
  records failing validation are dropped here (the bronze ingest quarantines them). Events later
  than the watermark are dropped by Spark.
- Labels, sampling, weights and feature transforms are `features/` functions, the very ones the
  batch builder calls, applied after the join (`stream_examples`), so the negatives that sampling
  drops never reach the driver; rarity comes from the latest `item_stats` snapshot (a static
  table, `latest_item_counts`). `recency_weight` is measured from the micro-batch's timestamp; in
  `split.mode=time` every fresh row is `train` (the eval days are a property of a batch window),
  `user_hash` splits as in batch.
- Other configured actions (like, conversion) pass through as `secondary` rows for the sink.
- Watermarks: Spark's `min` policy over its two watermark inputs, the impressions and the
  actions. The actions' watermark is set in the join's branch only, over every labeled action
  type (its positive filter names the event time, so the optimizer keeps it above the
  watermark): any action advances it. The secondary actions pass through without a watermark
  of their own, so in every session kind (Spark Connect analyses each use of a DataFrame
  apart) a sparse secondary action cannot hold the query's watermark back. Negatives are
  emitted as the slower of the two advances, so a long pause of all actions delays negatives
  (never drops data).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from freshlake.config import Config
from freshlake.features.examples import to_examples
from freshlake.features.labeling import (
    action_time_columns,
    attribution_condition,
    label_columns,
    labeled_actions,
)
from freshlake.features.quality import configured_fill_values, impression_problem
from freshlake.features.sampling import is_sampled, sampling_columns
from freshlake.features.schemas import IMPRESSION_SCHEMA
from freshlake.features.splits import split_column
from freshlake.features.transforms import apply_feature_spec
from freshlake.features.validation import CONTRACTS, validate
from freshlake.features.weights import weight_columns
from freshlake.lake import Lake
from freshlake.runs import latest_run_details
from freshlake.streaming.bronze import raw_records
from freshlake.streaming.source import read_kafka_stream

JOINER_QUERY = "joiner"
# The plan's rows: finished examples, and secondary actions the sink attributes itself.
DECISION, SECONDARY = "decision", "secondary"
IMPRESSION_FIELDS = [
    f.name for f in IMPRESSION_SCHEMA if f.name not in ("source_file", "ingest_run_id", "dt")
]


def _validated(spark: SparkSession, config: Config, kind: str) -> DataFrame:
    raw = raw_records(read_kafka_stream(spark, config, config.kafka.topics[kind]))
    valid, _rejected = validate(raw, CONTRACTS[kind], config, run_id=JOINER_QUERY)
    return valid


def impression_stream(spark: SparkSession, config: Config) -> DataFrame:
    """Valid, trainable impressions with a watermark (re-sends are dropped by the sink)."""
    impressions = _validated(spark, config, "impressions")
    impressions = impressions.where(impression_problem(impressions.columns).isNull())
    return impressions.select(*IMPRESSION_FIELDS).withWatermark(
        "served_at", f"{config.streaming.watermark_delay_seconds} seconds"
    )


def action_stream(spark: SparkSession, config: Config) -> DataFrame:
    """Valid actions of the configured types (`joined_stream` sets their watermark)."""
    actions = _validated(spark, config, "actions")
    return actions.where(F.col("action").isin(labeled_actions(config.labels))).select(
        "impression_id", "action", "action_at"
    )


def joined_stream(
    impressions: DataFrame,
    actions: DataFrame,
    config: Config,
    item_counts: DataFrame | None = None,
    fill_values: Mapping[str, float] | None = None,
) -> DataFrame:
    """Finished example rows (`kind` = decision) and secondary actions (`kind` = secondary).

    Decision rows are impression LEFT OUTER JOIN its positive actions (a negative is emitted
    once the watermark passes its window), turned into `fresh_examples` rows inside the plan
    (`stream_examples`), so negatives the sampling drops never leave Spark. One schema: the
    example columns, `kind`, `action`, `action_at`; secondary rows fill only kind,
    impression_id, action and action_at.
    """
    labels = config.labels
    watermarked = actions.withWatermark(
        "action_at", f"{config.streaming.watermark_delay_seconds} seconds"
    )
    # A filter that does not name the event time is pushed below the watermark by the
    # optimizer, which would then see positives only: this one names it (action_at is required).
    is_positive = F.when(F.col("action_at").isNotNull(), F.col("action") == labels.positive_action)
    positive = watermarked.where(is_positive).select(
        F.col("impression_id").alias("_a_impression_id"), F.col("action_at").alias("_a_action_at")
    )
    condition = (F.col("impression_id") == F.col("_a_impression_id")) & attribution_condition(
        F.col("served_at"), F.col("_a_action_at"), labels
    )
    pairs = impressions.join(positive, condition, "leftOuter").select(
        *IMPRESSION_FIELDS,
        F.when(F.col("_a_action_at").isNotNull(), F.lit(labels.positive_action)).alias("action"),
        F.col("_a_action_at").alias("action_at"),
    )
    decisions = stream_examples(pairs, config, item_counts, fill_values)
    secondary = actions.where(F.col("action") != labels.positive_action).select(  # no watermark
        F.lit(SECONDARY).alias("kind"), "impression_id", "action", "action_at"
    )
    return decisions.withColumn("kind", F.lit(DECISION)).unionByName(
        secondary, allowMissingColumns=True
    )


def stream_examples(
    pairs: DataFrame,
    config: Config,
    item_counts: DataFrame | None,
    fill_values: Mapping[str, float] | None,
) -> DataFrame:
    """Impression x positive-action rows as `fresh_examples` rows, by the batch builder's functions.

    Labels come from the row's own positive action; secondary labels are set by the sink, which
    knows the actions of earlier batches. Recency is measured from the micro-batch's timestamp
    (`current_timestamp()` is fixed per batch and replayed with it). `run_id` is the query's
    name until the sink adds the batch id.
    """
    labels, spec = config.labels, config.features.spec
    labeled = label_columns(action_time_columns(pairs, labels), labels)
    sampled = sampling_columns(labeled, config.sampling, item_counts)
    kept = sampled.where(is_sampled(config.sampling))
    featured = apply_feature_spec(kept, spec, fill_values)
    batch_time = F.current_timestamp()
    weighted = weight_columns(featured, config.recency, batch_time)
    if config.split.mode == "user_hash":
        split = split_column(weighted, config.split, batch_time)
    else:  # a time split's eval days belong to a batch window: every fresh row trains
        split = weighted.withColumn("split", F.lit("train"))
    return to_examples(split, labels, spec, source="stream", run_id=JOINER_QUERY)


# -- static inputs of the plan ---------------------------------------------------------------------


def latest_item_counts(lake: Lake) -> DataFrame | None:
    """item_id, impressions of the newest `item_stats` snapshot (None without item_stats)."""
    if not lake.exists("item_stats"):
        return None
    stats = lake.read("item_stats")
    newest = stats.agg(F.max("window_end")).first()[0]
    if newest is None:
        return None
    counts = stats.where(F.col("window_end") == F.lit(newest)).select("item_id", "impressions")
    return F.broadcast(counts.localCheckpoint())


def stream_fill_values(lake: Lake, config: Config) -> dict[str, float]:
    """Imputation values: configured ones, else those of the latest batch build (job_runs)."""
    values = dict(configured_fill_values(config.features.spec, config.quality))
    numeric = [f.name for f in config.features.spec if f.kind == "numeric"]
    if all(n in values for n in numeric):
        return values
    built = (latest_run_details(lake, "build-training-set") or {}).get("fill_values", {})
    values = {**{k: float(v) for k, v in built.items()}, **values}
    return values
