"""Labels within the attribution window, and label maturity (docs/design.md section 3).

An impression is positive for action A iff an A action with the same `impression_id` has
`served_at - skew <= action_at <= served_at + attribution_window`; repeated actions count once.

The functions are lazy Column / DataFrame transforms, shared by the batch builder and the
streaming joiner:

- `attribution_condition(served_at, action_at, labels)`: the time-range condition of the join
  (`is_attributed` is the same test on Python values).
- `action_time_columns(joined, labels)`: on impression x action rows (action columns nullable, as
  after a left outer join), one `attributed_<action>_at` column per configured action.
- `first_action_times(actions, impressions, labels)`: the batch path's per-impression minimum of
  those columns (one row per impression that has any attributed action).
- `action_times(actions, labels)` and `first_attributed_times(df, labels)`: the same minimum
  without a join back: every impression_id's action times as arrays, joined to impression rows,
  each row picking the first time inside its own attribution window (the one-pass builder).
- `label_columns(df, labels)`: `label_<action>` (int 0/1), `label` and `first_action_at` from the
  `attributed_<action>_at` columns, which it drops.
- `is_mature(served_at, actions_until, labels)`: the attribution window has closed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import LabelConfig


def attributed_column(action: str) -> str:
    """Name of the helper column holding the first attributed time of `action`."""
    return f"attributed_{action}_at"


def label_column(action: str) -> str:
    """Name of the 0/1 label column of `action` in `examples`."""
    return contract.label_column(action)


def labeled_actions(labels: LabelConfig) -> list[str]:
    """The configured actions, with the positive action included even if not listed."""
    actions = list(dict.fromkeys(labels.actions))
    return actions if labels.positive_action in actions else [labels.positive_action, *actions]


def label_output_columns(labels: LabelConfig) -> list[str]:
    """The columns `label_columns` adds: label, label_<action>..., first_action_at."""
    actions = (label_column(a) for a in labeled_actions(labels))
    return [contract.LABEL, *actions, contract.FIRST_ACTION_AT]


def attribution_condition(served_at: Column, action_at: Column, labels: LabelConfig) -> Column:
    """True iff `action_at` is inside the impression's attribution window (with clock skew)."""
    lower = served_at - F.expr(f"INTERVAL {labels.clock_skew_seconds} SECONDS")
    upper = served_at + F.expr(f"INTERVAL {labels.attribution_window_seconds} SECONDS")
    return (action_at >= lower) & (action_at <= upper)


def is_attributed(served_at: datetime, action_at: datetime, labels: LabelConfig) -> bool:
    """`attribution_condition` for driver-side values (the joiner's rows between batches)."""
    lower = served_at - timedelta(seconds=labels.clock_skew_seconds)
    return lower <= action_at <= served_at + timedelta(seconds=labels.attribution_window_seconds)


def action_time_columns(joined: DataFrame, labels: LabelConfig) -> DataFrame:
    """Add `attributed_<action>_at` to impression x action rows (needs served_at, action, action_at).

    The column is the row's `action_at` when the row's action is that type and inside the
    attribution window, else null; rows without an action (left outer join) get nulls.
    """
    inside = attribution_condition(F.col("served_at"), F.col("action_at"), labels)
    for action in labeled_actions(labels):
        joined = joined.withColumn(
            attributed_column(action),
            F.when((F.col("action") == action) & inside, F.col("action_at")),
        )
    return joined


def first_action_times(
    actions: DataFrame, impressions: DataFrame, labels: LabelConfig
) -> DataFrame:
    """Per impression_id, the first attributed time of each configured action (batch path).

    `actions` needs impression_id, action, action_at; `impressions` impression_id and served_at
    (one row per impression_id). Returns impression_id plus `attributed_<action>_at` columns,
    only for impressions with at least one attributed action; repeated actions count once.
    """
    pairs = actions.select("impression_id", "action", "action_at").join(
        impressions.select("impression_id", "served_at"), "impression_id"
    )
    timed = action_time_columns(pairs, labels)
    firsts = [
        F.min(attributed_column(a)).alias(attributed_column(a)) for a in labeled_actions(labels)
    ]
    attributed = F.lit(False)
    for action in labeled_actions(labels):
        attributed = attributed | F.col(attributed_column(action)).isNotNull()
    return timed.where(attributed).groupBy("impression_id").agg(*firsts)


def times_column(action: str) -> str:
    """Name of the helper column holding every distinct time of `action` for an impression."""
    return f"{action}_times"


def action_times(actions: DataFrame, labels: LabelConfig) -> DataFrame:
    """Per impression_id, the distinct times of each configured action (batch path).

    `actions` needs impression_id, action, action_at. Returns impression_id plus one
    `<action>_times` array per configured action (empty when the impression has none of it);
    a repeated action (same impression, type and time) appears once.
    """
    times = [
        F.collect_set(F.when(F.col("action") == a, F.col("action_at"))).alias(times_column(a))
        for a in labeled_actions(labels)
    ]
    return actions.groupBy("impression_id").agg(*times)


def first_attributed_times(df: DataFrame, labels: LabelConfig) -> DataFrame:
    """Replace `<action>_times` arrays (from `action_times`, null when none) by
    `attributed_<action>_at`: the earliest time inside the row's own attribution window.

    Gives `label_columns` the same input as `first_action_times` for rows that are their
    impression's only or earliest-served copy.
    """
    served = F.col("served_at")
    for action in labeled_actions(labels):
        inside = F.filter(
            F.col(times_column(action)), lambda t: attribution_condition(served, t, labels)
        )
        df = df.withColumn(attributed_column(action), F.array_min(inside))
    return df.drop(*(times_column(a) for a in labeled_actions(labels)))


def label_columns(df: DataFrame, labels: LabelConfig) -> DataFrame:
    """Replace `attributed_<action>_at` columns by `label_<action>`, `label`, `first_action_at`.

    Missing helper columns (an impression without any action) mean label 0. `label` is the
    label of `labels.positive_action`; `first_action_at` is when that action first happened.
    """
    for action in labeled_actions(labels):
        if attributed_column(action) not in df.columns:
            df = df.withColumn(attributed_column(action), F.lit(None).cast("timestamp"))
    positive = attributed_column(labels.positive_action)
    df = df.withColumn("first_action_at", F.col(positive))
    for action in labeled_actions(labels):
        df = df.withColumn(
            label_column(action), F.col(attributed_column(action)).isNotNull().cast("int")
        )
    df = df.withColumn("label", F.col(label_column(labels.positive_action)))
    return df.drop(*(attributed_column(a) for a in labeled_actions(labels)))


def attach_labels(impressions: DataFrame, actions: DataFrame, labels: LabelConfig) -> DataFrame:
    """Batch labeling: `impressions` (one row per impression_id) with label columns added."""
    firsts = first_action_times(actions, impressions, labels)
    return label_columns(impressions.join(firsts, "impression_id", "left"), labels)


def is_mature(served_at: Column, actions_until: datetime | Column, labels: LabelConfig) -> Column:
    """True iff the attribution window closed by `actions_until` (end of the known action log).

    With a known `actions_until` the window's length is taken from it once, on the driver: a
    timestamp plus an interval, per row, goes through a zoned date-time in Spark.
    """
    window = timedelta(seconds=labels.attribution_window_seconds)
    if not isinstance(actions_until, Column):
        return served_at <= F.lit(actions_until - window)
    closes = served_at + F.expr(f"INTERVAL {labels.attribution_window_seconds} SECONDS")
    return closes <= actions_until
