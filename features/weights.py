"""Recency emphasis and the bias-correction weight (docs/design.md section 3.4).

`recency_weight = 0.5 ** (age_days / half_life_days)` with age measured from a reference time
(the batch window's end; the stream's processing time), 1 when `half_life_days` is unset.
`weight = recency_weight / sample_prob` (Horvitz–Thompson correction times the emphasis).
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake.config import RecencyConfig

SECONDS_PER_DAY = 86_400.0


def recency_weight(
    served_at: Column, reference: datetime | Column, recency: RecencyConfig
) -> Column:
    """`0.5 ** (age_days / half_life)`, age = reference - served_at (>= 0); 1.0 when disabled."""
    if recency.half_life_days is None:
        return F.lit(1.0)
    ref = reference if isinstance(reference, Column) else F.lit(reference)
    age_days = (ref.cast("double") - served_at.cast("double")) / SECONDS_PER_DAY
    return F.pow(F.lit(0.5), F.greatest(age_days, F.lit(0.0)) / recency.half_life_days)


def weight_columns(
    df: DataFrame, recency: RecencyConfig, reference: datetime | Column
) -> DataFrame:
    """Add `recency_weight` and `weight = recency_weight / sample_prob` (needs served_at, sample_prob)."""
    return df.withColumn(
        "recency_weight", recency_weight(F.col("served_at"), reference, recency)
    ).withColumn("weight", F.col("recency_weight") / F.col("sample_prob"))
