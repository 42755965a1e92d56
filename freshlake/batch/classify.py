"""What happens to each input impression of a build: one `outcome` per row (lazy).

Outcomes, checked in this order (each input row gets exactly one, so counts reconcile):
`quarantined` (fails validation; `reason` holds the code), `outside_window` (served_at not in
the window), `blackout` (served on a blackout date), `duplicate` (a repeated impression_id
that lost deduplication), `immature` (its attribution window had not closed when the action log
ends), `not_sampled` (sampling dropped it), `written` (an example).

`classify` works on whole impression rows in one pass: the rows are shuffled once by
impression_id, where the action times of the impression (a small grouped frame) join them and
deduplication ranks them, so the rows an outcome keeps carry every column they need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.batch.inputs import in_window
from freshlake.batch.window import TimeWindow
from freshlake.config import Config, LabelConfig
from freshlake.features.labeling import (
    first_attributed_times,
    is_mature,
    label_column,
    label_columns,
    label_output_columns,
    labeled_actions,
)
from freshlake.features.quality import duplicate_rank, impression_problem, row_hash
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
# Outcomes of rows that passed the per-row checks (`screen`): the population imputation describes.
SCREENED_IN = ("duplicate", "immature", *ELIGIBLE)
# The fields that decide a row's outcome.
OUTCOME_FIELDS = ("impression_id", "user_id", "item_id", "served_at", "position", "pred_ctr")
# What every row keeps through deduplication: what orders its copies and decides and counts its
# outcome (with each action's label); the rest of a row, `sample_prob` and `first_action_at`
# included, travels only if an outcome can keep it.
_DECIDING = (
    "impression_id",
    "user_id",
    "item_id",
    "served_at",
    "reason",
    "outcome",
    "stratum",
)


@dataclass(frozen=True)
class BuildPlan:
    """Everything that fixes a build's outcome for a row, besides the row itself."""

    config: Config
    window: TimeWindow
    actions_until: datetime
    item_counts: DataFrame | None
    blackout: tuple[date, ...] = ()


def carried_columns(labels: LabelConfig) -> list[str]:
    """The columns `classify` adds that kept rows take into `examples`."""
    return [*label_output_columns(labels), "sample_prob", "stratum"]


def screen(impressions: DataFrame, window: TimeWindow, blackout: Sequence[date]) -> DataFrame:
    """Add `reason` (quarantine code or null) and `outcome` for the per-row checks:
    quarantined, outside_window, blackout; null for rows that pass."""
    served = F.col("served_at")
    outcome = (  # from the `reason` column: its checks are evaluated once per row
        F.when(F.col("reason").isNotNull(), F.lit("quarantined")).when(
            ~in_window(served, window), F.lit("outside_window")
        )
    )
    if blackout:  # without blackout dates, no row pays for its date
        outcome = outcome.when(F.to_date(served).isin(list(blackout)), F.lit("blackout"))
    screened = impressions.withColumn("reason", impression_problem(impressions.columns))
    return screened.withColumn("outcome", outcome)


def classify(
    impressions: DataFrame,
    action_times: DataFrame,
    plan: BuildPlan,
    observe_screened: Callable[[DataFrame], DataFrame] | None = None,
) -> DataFrame:
    """Every impression row with its columns, `reason`, `outcome` and the `carried_columns`.

    `action_times` is `freshlake.features.labeling.action_times` of the window's actions. Labels
    are relative to the row's own served_at; on the row that wins deduplication (the earliest
    served copy that passed screening) that is the impression's attribution window. The other
    rows' labels and sampling columns are not used.

    Only rows an outcome keeps (`written`, `quarantined`) carry their whole row through the
    shuffle that deduplicates: the others keep what decides and counts their outcome (ids,
    served_at, reason, each action's label, stratum), their other columns (`sample_prob` and
    `first_action_at` too) are null. A row that can
    still be written is known before deduplication (it passed screening, is mature and sampled:
    deduplication can only turn it into a duplicate), so the shuffle and its sort move about
    half the bytes. `observe_screened` wraps the screened rows before that, where `outcome`
    is the screening outcome (null: passed) and every column is still there: the report's
    aggregates over what deduplication does not change (the medians of the rows that passed)
    are observed there, so their inputs never travel through the shuffle.
    """
    config = plan.config
    screened = screen(impressions, plan.window, plan.blackout)
    if observe_screened is not None:
        screened = observe_screened(screened)
    # A hash join inside the dedup shuffle: a sort-merge join (Spark's choice once the action
    # times outgrow the broadcast threshold) sorted every whole row by impression_id, and the
    # window sorted them again.
    joined = first_attributed_times(
        screened.join(action_times.hint("shuffle_hash"), "impression_id", "left"), config.labels
    )
    df = sampling_columns(label_columns(joined, config.labels), config.sampling, plan.item_counts)
    columns = df.columns
    mature = is_mature(F.col("served_at"), plan.actions_until, config.labels)
    passed = F.col("outcome").isNull()
    keepable = (F.col("outcome") == "quarantined") | (passed & mature & is_sampled(config.sampling))
    fields, whole = _copy_order(df, impressions.columns, config.labels)
    # The whole-row hash only orders copies that tie on everything else, and tied copies are
    # either all keepable or none (keepable is decided by the fields they tie on): among rows
    # nothing keeps, which copy wins changes no count, so only keepable rows hash their row.
    keep = F.col("_keepable")
    order = {"_copy_fields": fields, "_copy_row": F.when(keep, whole)}
    # `label` is the positive action's label: it is set again after the shuffle.
    derived = {contract.LABEL: F.col(label_column(config.labels.positive_action))}
    labels = [label_column(a) for a in labeled_actions(config.labels)]
    kept_always = [c for c in df.columns if c in _DECIDING or c in labels]
    payload = [c for c in df.columns if c not in kept_always and c not in derived]
    packed = (
        df.withColumn("_keepable", keepable)
        .withColumns(order)
        .select(*kept_always, *order, F.when(keep, F.struct(*payload)).alias("_payload"))
    )
    rank = duplicate_rank(
        packed, priority=[F.col("outcome").isNotNull()], tie_breakers=[F.col(c) for c in order]
    )
    packed = packed.withColumn("_rank", rank)
    outcome = F.coalesce(
        F.col("outcome"),
        F.when(F.col("_rank") > 1, F.lit("duplicate")),
        F.when(~mature, F.lit("immature")),
        # A passed, mature row without its payload was not keepable: sampling dropped it.
        F.when(F.col("_payload").isNull(), F.lit("not_sampled")),
        F.lit("written"),
    )
    unpacked = {**{c: F.col(f"_payload.{c}") for c in payload}, **derived}
    return packed.withColumn("outcome", outcome).select(
        *[unpacked.get(c, F.col(c)).alias(c) for c in columns]
    )


def _copy_order(
    df: DataFrame, impression_columns: Sequence[str], labels: LabelConfig
) -> list[Column]:
    """Which of an impression's copies tied on served_at, item_id and user_id wins: the smallest
    hash of the outcome fields with the screening result, then of the whole row with its labels
    and sampling columns (so among exact copies too the winner never depends on input order)."""
    fields = row_hash(df.select(*OUTCOME_FIELDS, "reason", "outcome"))
    whole = row_hash(df.select(*impression_columns, *carried_columns(labels)))
    return [fields, whole]


def is_outcome(*outcomes: str) -> Column:
    """True for rows whose outcome is one of `outcomes`."""
    return F.col("outcome").isin(list(outcomes))
