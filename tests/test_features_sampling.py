"""Deterministic sampling, strata, rare-item boost, recency weights and the train/eval split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyspark.sql import functions as F

from freshlake.config import RareItemConfig, RecencyConfig, SamplingConfig, SplitConfig
from freshlake.features.sampling import is_sampled, sample_draw, sampling_columns
from freshlake.features.splits import split_column
from freshlake.features.weights import weight_columns

SAMPLING = SamplingConfig(
    seed=7,
    positive_rate=1.0,
    negative_rate=0.1,
    rare_item=RareItemConfig(min_impressions=100, boost=4.0),
)
END = datetime(2026, 1, 8, tzinfo=UTC)


def _impressions(spark, n: int):
    """n impressions: item `hot` (popular) or `cold` (rare) or `new` (not in stats), 10% clicked."""
    return spark.range(n).select(
        F.concat(F.lit("imp"), F.col("id").cast("string")).alias("impression_id"),
        F.element_at(
            F.array(F.lit("hot"), F.lit("cold"), F.lit("new")), (F.col("id") % 3 + 1).cast("int")
        ).alias("item_id"),
        (F.col("id") % 10 == 0).cast("int").alias("label"),
    )


def _item_counts(spark):
    return spark.createDataFrame([("hot", 5000), ("cold", 99)], "item_id string, impressions long")


def test_sample_prob_and_strata(spark):
    df = sampling_columns(_impressions(spark, 300), SAMPLING, _item_counts(spark))
    got = {
        (r.item_id, r.label): (r.sample_prob, r.stratum)
        for r in df.select("item_id", "label", "sample_prob", "stratum").distinct().collect()
    }
    assert got == {
        ("hot", 0): (0.1, "negative"),
        ("hot", 1): (1.0, "positive"),
        ("cold", 0): (0.4, "negative_rare"),
        ("cold", 1): (1.0, "positive_rare"),  # min(1, 1.0 * 4)
        ("new", 0): (0.4, "negative_rare"),  # unseen items are rare
        ("new", 1): (1.0, "positive_rare"),
    }


def test_without_item_counts_nothing_is_rare(spark):
    df = sampling_columns(_impressions(spark, 30), SAMPLING, None)
    assert {r.stratum for r in df.select("stratum").distinct().collect()} == {
        "positive",
        "negative",
    }


def test_kept_share_per_stratum_matches_its_rate(spark):
    n = 120_000
    df = sampling_columns(_impressions(spark, n), SAMPLING, _item_counts(spark))
    rows = df.groupBy("stratum", "sample_prob").agg(
        F.count(F.lit(1)).alias("n"), F.sum(is_sampled(SAMPLING).cast("int")).alias("kept")
    )
    for r in rows.collect():
        p = r.sample_prob
        sd = (p * (1 - p) / r.n) ** 0.5
        assert abs(r.kept / r.n - p) <= 4.5 * sd + 1e-12, r


def test_sampling_is_a_pure_function_of_seed_and_id(spark):
    a = _impressions(spark, 2000).select("impression_id", sample_draw(SAMPLING).alias("u"))
    b = (
        _impressions(spark, 2000)
        .repartition(7)
        .orderBy(F.rand(3))
        .select("impression_id", sample_draw(SAMPLING).alias("u"))
    )
    assert sorted(a.collect()) == sorted(b.collect())
    other_seed = SAMPLING.model_copy(update={"seed": 8})
    c = _impressions(spark, 2000).select("impression_id", sample_draw(other_seed).alias("u"))
    assert sorted(a.collect()) != sorted(c.collect())


def test_weight_is_recency_over_sample_prob(spark):
    df = spark.createDataFrame(
        [(END - timedelta(days=2), 0.25), (END, 0.5)], "served_at timestamp, sample_prob double"
    )
    halved = weight_columns(df, RecencyConfig(half_life_days=2.0), END).collect()
    assert [(r.recency_weight, r.weight) for r in halved] == [(0.5, 2.0), (1.0, 2.0)]
    flat = weight_columns(df, RecencyConfig(half_life_days=None), END).collect()
    assert [(r.recency_weight, r.weight) for r in flat] == [(1.0, 4.0), (1.0, 2.0)]


def test_split_by_time_puts_the_last_days_in_eval(spark):
    df = spark.createDataFrame(
        [(END - timedelta(days=1, seconds=1), "u1"), (END - timedelta(days=1), "u1")],
        "served_at timestamp, user_id string",
    )
    got = split_column(df, SplitConfig(mode="time", eval_days=1), END).collect()
    assert [r.split for r in got] == ["train", "eval"]


def test_split_by_user_hash_keeps_each_user_on_one_side(spark):
    df = spark.range(20_000).select(
        (F.col("id") % 2000).cast("string").alias("user_id"), F.lit(END).alias("served_at")
    )
    out = split_column(df, SplitConfig(mode="user_hash", eval_share=0.2), END)
    per_user = out.groupBy("user_id").agg(F.count_distinct("split").alias("sides"))
    assert per_user.where("sides > 1").count() == 0
    share = out.agg(F.avg((F.col("split") == "eval").cast("int"))).first()[0]
    assert abs(share - 0.2) < 4.5 * (0.2 * 0.8 / 2000) ** 0.5
