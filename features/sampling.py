"""Deterministic click (negative-down) and rare-item upsampling (docs/design.md section 3.3).

`sample_prob = min(1, rate(label) * boost(item))`: positives at `positive_rate`, negatives at
`negative_rate`, times `rare_item.boost` for items with fewer than `rare_item.min_impressions`
impressions in `item_stats` (an item absent from the stats counts as rare). A row is kept iff
`u < sample_prob` with `u = hash_unit(seed, impression_id)`, so reruns keep the same rows.

Usage (lazy, works on streaming DataFrames too; `item_counts` is a static DataFrame):

    df = sampling_columns(df, config.sampling, item_counts)   # adds sample_prob, stratum
    kept = df.where(is_sampled(config.sampling))
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake.config import SamplingConfig
from freshlake.features.hashing import hash_unit

STRATA = ("positive", "negative", "positive_rare", "negative_rare")

_ITEM_IMPRESSIONS = "_item_impressions"


def _rare_item(sampling: SamplingConfig) -> Column:
    """The row's item is rare: fewer than `min_impressions` in the joined counts, or absent."""
    known = F.col(_ITEM_IMPRESSIONS)
    return known.isNull() | (known < sampling.rare_item.min_impressions)


def sampling_columns(
    df: DataFrame, sampling: SamplingConfig, item_counts: DataFrame | None = None
) -> DataFrame:
    """Add `sample_prob` (double in (0, 1]) and `stratum` to labeled rows (needs label, item_id).

    `item_counts` has `item_id` and `impressions` (the `item_stats` table); None disables the
    rare-item boost. Strata: positive, negative, positive_rare, negative_rare.
    """
    if item_counts is not None:
        counts = item_counts.select(
            "item_id", F.col("impressions").cast("long").alias(_ITEM_IMPRESSIONS)
        )
        df = df.join(F.broadcast(counts), "item_id", "left")
    rare = _rare_item(sampling) if item_counts is not None else F.lit(False)
    positive = F.col("label") == 1
    rate = F.when(positive, F.lit(sampling.positive_rate)).otherwise(F.lit(sampling.negative_rate))
    boost = F.when(rare, F.lit(sampling.rare_item.boost)).otherwise(F.lit(1.0))
    stratum = F.concat(
        F.when(positive, F.lit("positive")).otherwise(F.lit("negative")),
        F.when(rare, F.lit("_rare")).otherwise(F.lit("")),
    )
    df = df.withColumn("sample_prob", F.least(F.lit(1.0), rate * boost)).withColumn(
        "stratum", stratum
    )
    return df.drop(_ITEM_IMPRESSIONS) if item_counts is not None else df


def sample_draw(sampling: SamplingConfig) -> Column:
    """The row's uniform draw u in [0, 1), a pure function of (seed, impression_id)."""
    return hash_unit(sampling.seed, F.col("impression_id"))


def is_sampled(sampling: SamplingConfig) -> Column:
    """True iff the row is kept: `u < sample_prob` (needs impression_id and sample_prob)."""
    return sample_draw(sampling) < F.col("sample_prob")
