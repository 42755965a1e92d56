"""Feature transforms from the feature spec: hashed categoricals, numeric imputation, text n-grams."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from freshlake.config import FeatureSpec
from freshlake.features.hashing import hash_bucket, hash_unit
from freshlake.features.transforms import apply_feature_spec, feature_output_columns, text_words

SPEC = [
    FeatureSpec(name="item_id", kind="categorical", buckets=97),
    FeatureSpec(name="device", kind="categorical", source="features.device", buckets=11),
    FeatureSpec(name="position", kind="numeric", default=1),
    FeatureSpec(name="hour", kind="numeric", source="features.hour"),
    FeatureSpec(name="query", kind="text", source="features.query", buckets=1009, ngrams=[1, 2]),
]


@pytest.fixture
def rows(spark):
    data = [
        ("a", 3, {"device": "ios", "hour": "7", "query": "Red  Shoes, cheap!"}),
        ("b", None, {"device": None, "hour": "not a number", "query": ""}),
        ("a", 1, None),
    ]
    return spark.createDataFrame(data, "item_id string, position int, features map<string,string>")


def test_columns_and_types_follow_the_contract(rows):
    out = apply_feature_spec(rows, SPEC, {"hour": 12.0})
    types = dict(out.dtypes)
    assert feature_output_columns(SPEC) == [
        "f_item_id",
        "f_device",
        "f_position",
        "f_position_missing",
        "f_hour",
        "f_hour_missing",
        "f_query",
    ]
    assert types["f_item_id"] == "bigint" and types["f_device"] == "bigint"
    assert types["f_position"] == "double" and types["f_position_missing"] == "int"
    assert types["f_query"] == "array<bigint>"


def test_numeric_imputation_and_missing_flags(rows):
    got = apply_feature_spec(rows, SPEC, {"hour": 12.0}).collect()
    assert [(r.f_position, r.f_position_missing) for r in got] == [(3.0, 0), (1.0, 1), (1.0, 0)]
    # Unparsable and absent values are imputed and flagged, parsed ones kept.
    assert [(r.f_hour, r.f_hour_missing) for r in got] == [(7.0, 0), (12.0, 1), (12.0, 1)]


def test_numeric_without_any_fill_value_is_a_clear_error(rows):
    with pytest.raises(ValueError, match="hour"):
        apply_feature_spec(rows, SPEC)


def test_categorical_buckets_are_stable_in_range_and_salted(rows):
    got = apply_feature_spec(rows, SPEC, {"hour": 0.0}).collect()
    assert got[0].f_item_id == got[2].f_item_id  # same value, same bucket
    assert all(0 <= r.f_item_id < 97 and 0 <= r.f_device < 11 for r in got)
    # A missing device still gets a valid (shared) bucket.
    assert got[1].f_device is not None


def test_text_ngrams_are_word_unigrams_and_bigrams(spark, rows):
    got = apply_feature_spec(rows, SPEC, {"hour": 0.0}).collect()
    grams = ["red", "shoes", "cheap", "red shoes", "shoes cheap"]
    expected = list(
        spark.range(1).select(*[hash_bucket("query", F.lit(g), 1009) for g in grams]).first()
    )
    assert got[0].f_query == expected  # lower-cased, punctuation and extra spaces split away
    assert got[1].f_query == [] and got[2].f_query == []


def test_text_words_are_maximal_runs_of_unicode_letters_and_digits(spark):
    texts = {
        "  Red  Shoes, cheap!  ": ["red", "shoes", "cheap"],
        "naïve café-au-lait": ["naïve", "café", "au", "lait"],
        "ß123_x": ["ß123", "x"],  # "_" is punctuation
        "東京 2024年": ["東京", "2024年"],
        "😀ok😀": ["ok"],
        "...": [],
        "": [],
        None: [],
    }
    spec = FeatureSpec(name="query", kind="text", source="q")
    rows = spark.createDataFrame([(t,) for t in texts], "q string")
    got = [r.w for r in rows.select(text_words(spec).alias("w")).collect()]
    assert got == list(texts.values())


def test_hash_buckets_spread_evenly(spark):
    buckets = 10
    counts = (
        spark.range(50_000)
        .select(hash_bucket("x", F.col("id").cast("string"), buckets).alias("b"))
        .groupBy("b")
        .count()
        .collect()
    )
    sizes = sorted(r["count"] for r in counts)
    assert len(sizes) == buckets
    # 5000 expected per bucket; binomial sd ~ 67, so 4.5 sd is ~300.
    assert sizes[0] > 4700 and sizes[-1] < 5300


def test_hash_unit_is_uniform_on_the_unit_interval(spark):
    n = 100_000
    u = spark.range(n).select(hash_unit(42, F.col("id").cast("string")).alias("u"))
    stats = u.agg(
        F.min("u"), F.max("u"), F.avg("u"), F.avg((F.col("u") < 0.05).cast("int"))
    ).first()
    assert stats[0] >= 0.0 and stats[1] < 1.0
    assert abs(stats[2] - 0.5) < 4.5 * (1 / 12 / n) ** 0.5
    assert abs(stats[3] - 0.05) < 4.5 * (0.05 * 0.95 / n) ** 0.5
