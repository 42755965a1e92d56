"""Labels within the attribution window with clock skew, repeated actions, maturity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from freshlake.config import LabelConfig
from freshlake.features.labeling import attach_labels, is_mature

LABELS = LabelConfig(
    actions=["click", "like"],
    positive_action="click",
    attribution_window_seconds=3600,
    clock_skew_seconds=60,
)
T0 = datetime(2026, 1, 2, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def labeled(spark):
    impressions = spark.createDataFrame(
        [(f"i{k}", T0) for k in range(8)], "impression_id string, served_at timestamp"
    )
    actions = spark.createDataFrame(
        [
            ("i0", "click", at(10)),  # plain click
            ("i1", "click", at(-60)),  # exactly the skew before: counts
            ("i2", "click", at(-61)),  # earlier than the skew allows: not attributed
            ("i3", "click", at(3600)),  # exactly the window end: counts
            ("i4", "click", at(3601)),  # after the window: not attributed
            ("i5", "click", at(300)),  # repeated clicks count once, first time kept
            ("i5", "click", at(100)),
            ("i5", "click", at(100)),
            ("i6", "like", at(50)),  # a like alone is not a click
            ("i6", "conversion", at(50)),  # not a configured action: ignored
            ("i9", "click", at(5)),  # no such impression
        ],
        "impression_id string, action string, action_at timestamp",
    )
    rows = attach_labels(impressions, actions, LABELS).orderBy("impression_id").collect()
    return {r.impression_id: r for r in rows}


def test_attribution_window_with_clock_skew(labeled):
    assert {k: r.label for k, r in labeled.items()} == {
        "i0": 1,
        "i1": 1,
        "i2": 0,
        "i3": 1,
        "i4": 0,
        "i5": 1,
        "i6": 0,
        "i7": 0,
    }
    assert all(r.label == r.label_click for r in labeled.values())


def test_repeated_actions_count_once_and_keep_the_first_time(labeled):
    assert labeled["i5"].label_click == 1
    assert labeled["i5"].first_action_at == at(100).replace(tzinfo=None)


def test_each_configured_action_gets_its_own_label(labeled):
    assert labeled["i6"].label_like == 1 and labeled["i6"].label_click == 0
    assert labeled["i6"].first_action_at is None  # first_action_at is of the positive action
    assert "label_conversion" not in next(iter(labeled.values())).asDict()
    assert len(labeled) == 8  # one row per impression, none invented for unknown ids


def test_maturity_needs_the_whole_window_in_the_action_log(spark):
    df = spark.createDataFrame([(T0,)], "served_at timestamp")
    mature = df.select(
        is_mature(F.col("served_at"), at(3599), LABELS).alias("early"),
        is_mature(F.col("served_at"), at(3600), LABELS).alias("exact"),
    ).first()
    assert mature.early is False and mature.exact is True


def test_maturity_against_a_known_end_matches_the_per_row_form(spark):
    """The driver-side bound for a known end agrees with the per-row timestamp arithmetic of
    the Column form, to the microsecond on both sides of the boundary."""
    until = at(3600)
    before_end = [timedelta(seconds=s) for s in (0, 3599.999999, 3600, 3600.000001, 2 * 86400)]
    rows = [(until - d, until) for d in before_end]
    df = spark.createDataFrame(rows, "served_at timestamp, until timestamp")
    got = df.select(
        is_mature(F.col("served_at"), until, LABELS).alias("known"),
        is_mature(F.col("served_at"), F.col("until"), LABELS).alias("column"),
    ).collect()
    expected = [d >= timedelta(seconds=3600) for d in before_end]
    assert [r.known for r in got] == expected
    assert [r.column for r in got] == expected
