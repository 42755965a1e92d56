"""Daily aggregates of the raw logs (small pandas frames), shared by the monitors and the report."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import LabelConfig
from freshlake.features.labeling import attribution_condition
from freshlake.lake import Lake

IMPRESSIONS, ACTIONS = contract.IMPRESSIONS, contract.ACTIONS


def unique_impressions(lake: Lake) -> DataFrame:
    """`impressions` with one row per impression_id (re-sent copies count once)."""
    return lake.read(IMPRESSIONS).dropDuplicates(["impression_id"])


def clicked_impressions(impressions: DataFrame, lake: Lake, labels: LabelConfig) -> DataFrame:
    """The impressions with a positive action inside their attribution window."""
    if not lake.exists(ACTIONS):
        return impressions.limit(0)
    actions = lake.read(ACTIONS).where(F.col("action") == labels.positive_action)
    imp, act = impressions.alias("i"), actions.alias("a")
    condition = (F.col("i.impression_id") == F.col("a.impression_id")) & attribution_condition(
        F.col("i.served_at"), F.col("a.action_at"), labels
    )
    return imp.join(act, condition, "left_semi")


def daily_source_counts(lake: Lake, source_column: str) -> pd.DataFrame:
    """Impressions per day and source: columns dt, source, impressions (missing source: `(none)`)."""
    source = F.coalesce(F.col(source_column).cast("string"), F.lit("(none)"))
    rows = (
        unique_impressions(lake)
        .groupBy("dt", source.alias("source"))
        .agg(F.count(F.lit(1)).alias("impressions"))
        .toPandas()
    )
    return rows.sort_values(["dt", "source"]).reset_index(drop=True)


def daily_ctr(lake: Lake, labels: LabelConfig) -> pd.DataFrame:
    """Impressions, clicked impressions and CTR per day: columns dt, impressions, clicks, ctr."""
    impressions = unique_impressions(lake).select("impression_id", "served_at", "dt")
    shown = impressions.groupBy("dt").agg(F.count(F.lit(1)).alias("impressions"))
    clicked = (
        clicked_impressions(impressions, lake, labels)
        .groupBy("dt")
        .agg(F.count(F.lit(1)).alias("clicks"))
    )
    rows = shown.join(clicked, "dt", "left").fillna(0, ["clicks"]).toPandas()
    rows["ctr"] = rows["clicks"] / rows["impressions"]
    return rows.sort_values("dt").reset_index(drop=True)
