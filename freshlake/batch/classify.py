"""What happens to each input impression of a build: one `outcome` per row (lazy).

Outcomes, checked in this order (each input row gets exactly one, so counts reconcile):
`quarantined` (fails validation; `reason` holds the code), `outside_window` (served_at not in
the window), `blackout` (served on a blackout date), `duplicate` (a repeated impression_id
that lost deduplication), `immature` (its attribution window had not closed when the action log
ends), `not_sampled` (sampling dropped it), `written` (an example).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake.batch.inputs import in_window
from freshlake.batch.window import TimeWindow
from freshlake.config import Config
from freshlake.features.labeling import first_action_times, is_mature, label_columns
from freshlake.features.quality import dedup_actions, duplicate_rank, impression_problem
from freshlake.features.sampling import is_sampled, sampling_columns

OUTCOMES = (
    "quarantined",
    "outside_window",
    "blackout",
    "duplicate",
    "immature",
    "not_sampled",
    "written",
)
# Rows that are real, unique, mature impressions of the window: the population sampling draws from.
ELIGIBLE = ("not_sampled", "written")


@dataclass(frozen=True)
class BuildPlan:
    """Everything that fixes a build's outcome for a row, besides the row itself."""

    config: Config
    window: TimeWindow
    actions_until: datetime
    item_counts: DataFrame | None


def screen(impressions: DataFrame, window: TimeWindow, blackout: Sequence[date]) -> DataFrame:
    """Add `reason` (quarantine code or null) and `outcome` for the per-row checks:
    quarantined, outside_window, blackout; null for rows that pass."""
    reason = impression_problem(impressions.columns)
    served = F.col("served_at")
    outcome = (
        F.when(reason.isNotNull(), F.lit("quarantined"))
        .when(~in_window(served, window), F.lit("outside_window"))
        .when(F.to_date(served).isin(list(blackout)), F.lit("blackout"))
    )
    return impressions.withColumns({"reason": reason, "outcome": outcome})


def first_actions(screened: DataFrame, actions: DataFrame, plan: BuildPlan) -> DataFrame:
    """Per impression that passed screening, the first attributed time of each action type.

    Attribution is relative to the impression's earliest served_at, i.e. the deduplication
    winner's (see freshlake.features.quality.duplicate_rank).
    """
    served = (
        screened.where(F.col("outcome").isNull())
        .groupBy("impression_id")
        .agg(F.min("served_at").alias("served_at"))
    )
    return first_action_times(dedup_actions(actions), served, plan.config.labels)


def classify(screened: DataFrame, firsts: DataFrame, plan: BuildPlan) -> DataFrame:
    """Screened impressions with labels, `sample_prob`, `stratum` and the final `outcome`."""
    config = plan.config
    rank = duplicate_rank(screened, priority=[F.col("outcome").isNotNull()])
    df = screened.withColumn("_rank", rank)
    df = label_columns(df.join(firsts, "impression_id", "left"), config.labels)
    df = sampling_columns(df, config.sampling, plan.item_counts)
    mature = is_mature(F.col("served_at"), plan.actions_until, config.labels)
    outcome = F.coalesce(
        F.col("outcome"),
        F.when(F.col("_rank") > 1, F.lit("duplicate")),
        F.when(~mature, F.lit("immature")),
        F.when(~is_sampled(config.sampling), F.lit("not_sampled")),
        F.lit("written"),
    )
    return df.withColumn("outcome", outcome).drop("_rank")


def is_outcome(*outcomes: str) -> Column:
    """True for rows whose outcome is one of `outcomes`."""
    return F.col("outcome").isin(list(outcomes))
