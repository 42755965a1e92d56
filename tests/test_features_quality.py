"""Validation to quarantine codes, deterministic deduplication, imputation values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from freshlake.config import FeatureSpec, QualityConfig
from freshlake.features.quality import (
    dedup_actions,
    dedup_impressions,
    impression_problem,
    imputation_values,
    quarantine_impressions,
)
from freshlake.features.schemas import QUARANTINE_SCHEMA, REASONS

T0 = datetime(2026, 1, 2, tzinfo=UTC)
COLUMNS = "impression_id string, user_id string, item_id string, served_at timestamp, position int, pred_ctr double"


@pytest.fixture
def impressions(spark):
    return spark.createDataFrame(
        [
            ("ok", "u", "a", T0, 1, 0.1),
            ("no_user", " ", "a", T0, 1, 0.1),
            ("no_time", "u", "a", None, 1, 0.1),
            ("bad_ctr", "u", "a", T0, 1, 1.2),
            ("bad_pos", "u", "a", T0, 0, 0.1),
            (None, "u", "a", T0, 1, 0.1),
        ],
        COLUMNS,
    )


def test_invalid_rows_get_stable_reason_codes(impressions):
    got = dict(
        impressions.select(
            "impression_id", impression_problem(impressions.columns).alias("r")
        ).collect()
    )
    assert got == {
        "ok": None,
        "no_user": "missing_field",
        "no_time": "missing_field",
        "bad_ctr": "out_of_range",
        "bad_pos": "out_of_range",
        None: "missing_field",
    }
    assert set(got.values()) - {None} <= set(REASONS)


def test_quarantine_rows_keep_the_payload_and_name_the_field(impressions):
    bad = impressions.where(impression_problem(impressions.columns).isNotNull())
    rows = quarantine_impressions(bad, "run-1", T0)
    assert (
        rows.schema == QUARANTINE_SCHEMA or [f.name for f in rows.schema] == QUARANTINE_SCHEMA.names
    )
    got = {r.detail: r for r in rows.collect()}
    assert set(got) == {
        "user_id is missing",
        "served_at is missing",
        "pred_ctr=1.2 out of range",
        "position=0 out of range",
        "impression_id is missing",
    }
    assert '"impression_id":"bad_ctr"' in got["pred_ctr=1.2 out of range"].raw
    assert all(r.run_id == "run-1" and r.source == "impressions" for r in got.values())


def test_dedup_keeps_the_earliest_copy_whatever_the_partitioning(spark):
    rows = [
        ("i1", "u", "late", T0 + timedelta(seconds=5), 1, 0.1),
        ("i1", "u", "early", T0, 2, 0.1),
        ("i1", "u", "early", T0, 3, 0.1),  # ties broken by the whole row, deterministically
        ("i2", "u", "x", T0, 1, 0.1),
    ]
    a = dedup_impressions(spark.createDataFrame(rows, COLUMNS))
    b = dedup_impressions(spark.createDataFrame(list(reversed(rows)), COLUMNS).repartition(3))
    first, second = sorted(a.collect()), sorted(b.collect())
    assert first == second
    assert [(r.impression_id, r.item_id) for r in first] == [("i1", "early"), ("i2", "x")]


def test_dedup_actions_counts_a_repeated_action_once(spark):
    actions = spark.createDataFrame(
        [
            ("i1", "click", T0),
            ("i1", "click", T0),
            ("i1", "click", T0 + timedelta(1)),
            ("i1", "like", T0),
        ],
        "impression_id string, action string, action_at timestamp",
    )
    assert dedup_actions(actions).count() == 3


def test_imputation_prefers_configured_values_then_the_median(spark):
    df = spark.createDataFrame(
        [(1, {"hour": "3"}), (None, {"hour": "5"}), (4, {"hour": "x"}), (2, {"hour": "9"})],
        "position int, features map<string,string>",
    )
    spec = [
        FeatureSpec(name="position", kind="numeric", default=1),
        FeatureSpec(name="hour", kind="numeric", source="features.hour"),
        FeatureSpec(name="device", kind="categorical", source="features.device"),
    ]
    assert imputation_values(df, spec, QualityConfig()) == {"position": 1.0, "hour": 5.0}
    by_median = QualityConfig(imputation={"position": "median", "hour": 7})
    assert imputation_values(df, spec, by_median) == {"position": 2.0, "hour": 7.0}
    assert df.where(F.col("position").isNull()).count() == 1  # the input is untouched
