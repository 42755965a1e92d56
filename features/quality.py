"""Data quality for training data: validation to quarantine, deduplication, imputation values.

Lazy transforms (usable on streaming DataFrames) except `imputation_values`, which computes
medians with a Spark action and is for the batch builder only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from freshlake.config import FeatureSpec, QualityConfig
from freshlake.features.schemas import QUARANTINE_SCHEMA
from freshlake.features.transforms import numeric_value

REQUIRED_IMPRESSION_FIELDS = ("impression_id", "user_id", "item_id", "served_at")

# Tie-breakers after the earliest served_at, so the same duplicate wins on every run.
_DEDUP_ORDER = ("served_at", "item_id", "user_id")


def _impression_checks(columns: Sequence[str]) -> list[tuple[Column, str, Column]]:
    """(failed, reason code, detail) per check, in priority order."""
    checks = []
    for name in REQUIRED_IMPRESSION_FIELDS:
        value = F.col(name)
        empty = value.isNull() if name == "served_at" else value.isNull() | (F.trim(value) == "")
        checks.append((empty, "missing_field", F.lit(f"{name} is missing")))
    ranges = {"pred_ctr": ~F.col("pred_ctr").between(0.0, 1.0), "position": F.col("position") < 1}
    for name, outside in ranges.items():
        if name in columns:
            detail = F.concat(F.lit(f"{name}="), F.col(name).cast("string"), F.lit(" out of range"))
            checks.append((outside, "out_of_range", detail))
    return checks


def _first_failing(columns: Sequence[str], pick: int) -> Column:
    result = F.lit(None).cast("string")
    for check in reversed(_impression_checks(columns)):
        value = check[pick] if isinstance(check[pick], Column) else F.lit(check[pick])
        result = F.when(F.coalesce(check[0], F.lit(False)), value).otherwise(result)
    return result


def impression_problem(columns: Sequence[str]) -> Column:
    """The reason code (features.schemas.REASONS) of an impression unfit for training, else null.

    Required fields null or empty -> `missing_field`; `pred_ctr` outside [0, 1] or
    `position` < 1 (when those columns exist) -> `out_of_range`. `columns`: the frame's columns.
    """
    return _first_failing(columns, 1)


def problem_detail(columns: Sequence[str]) -> Column:
    """A human-readable detail for `impression_problem` (names the offending field)."""
    return _first_failing(columns, 2)


def quarantine_impressions(rejected: DataFrame, run_id: str, at: datetime) -> DataFrame:
    """Impressions that fail `impression_problem` as `quarantine` rows (QUARANTINE_SCHEMA):
    the row as JSON in `raw`, the reason code and a detail naming the field."""
    payload = F.to_json(F.struct(*[F.col(c) for c in rejected.columns]))
    columns = {
        "source": F.lit("impressions"),
        "reason": impression_problem(rejected.columns),
        "detail": problem_detail(rejected.columns),
        "raw": payload,
        "source_file": F.col("source_file") if "source_file" in rejected.columns else F.lit(None),
        "topic": F.lit(None),
        "partition": F.lit(None),
        "offset": F.lit(None),
        "run_id": F.lit(run_id),
        "quarantined_at": F.lit(at),
        "dt": F.lit(at.date()),
    }
    return rejected.select(
        *[columns[f.name].cast(f.dataType).alias(f.name) for f in QUARANTINE_SCHEMA.fields]
    )


def row_hash(df: DataFrame) -> Column:
    """A 64-bit hash of the whole row (map columns by their entries), for deterministic ties."""
    parts = [
        F.map_entries(F.col(f.name)) if isinstance(f.dataType, MapType) else F.col(f.name)
        for f in df.schema.fields
    ]
    return F.xxhash64(*parts)


def duplicate_rank(
    df: DataFrame, priority: Sequence[Column] = (), tie_breakers: Sequence[Column] | None = None
) -> Column:
    """1 for the impression row that wins deduplication, 2.. for its duplicates.

    Per impression_id, ordered by `priority` (ascending, e.g. "is ineligible" to rank eligible
    rows first), then the earliest served_at, the smallest item_id and user_id, then
    `tie_breakers` (default: a hash of the whole row), so the choice never depends on
    partitioning or input order.
    """
    order = [
        *priority,
        *(F.col(c).asc_nulls_last() for c in _DEDUP_ORDER),
        *(tie_breakers if tie_breakers is not None else [row_hash(df)]),
    ]
    return F.row_number().over(Window.partitionBy("impression_id").orderBy(*order))


def dedup_impressions(df: DataFrame) -> DataFrame:
    """One row per impression_id (see `duplicate_rank` for which one)."""
    return df.withColumn("_rank", duplicate_rank(df)).where("_rank = 1").drop("_rank")


ACTION_KEY = ("impression_id", "action", "action_at")


def dedup_actions(actions: DataFrame) -> DataFrame:
    """Distinct (impression_id, action, action_at): a repeated action counts once."""
    return actions.select(*ACTION_KEY).dropDuplicates(list(ACTION_KEY))


def median_imputed(spec: Sequence[FeatureSpec], quality: QualityConfig) -> list[FeatureSpec]:
    """The numeric features filled with the data's median: configured as "median" in
    `quality.imputation`, or with neither a configured value nor a spec default."""
    return [
        f
        for f in spec
        if f.kind == "numeric" and quality.imputation.get(f.name, f.default) in (None, "median")
    ]


def fill_values_with(
    spec: Sequence[FeatureSpec], quality: QualityConfig, medians: Mapping[str, float | None]
) -> dict[str, float]:
    """Fill values of the numeric features: the configured number or spec default, else the
    computed `medians[name]` of a `median_imputed` feature (0.0 when the data had no value)."""
    imputed = [f.name for f in median_imputed(spec, quality)]
    values = {
        f.name: float(quality.imputation.get(f.name, f.default))
        for f in spec
        if f.kind == "numeric" and f.name not in imputed
    }
    for name in imputed:
        median = medians.get(name)
        values[name] = float(median) if median is not None else 0.0
    return values


def imputation_values(
    df: DataFrame, spec: Sequence[FeatureSpec], quality: QualityConfig
) -> dict[str, float]:
    """Fill values of the numeric features: `quality.imputation[name]` if a number, the spec
    default, else (or when configured as "median") the exact median over `df` (a Spark action).

    A feature with no value at all in `df` falls back to 0.0 only if it has nothing else.
    """
    features = median_imputed(spec, quality)
    medians: dict[str, float | None] = {}
    if features:
        row = df.agg(*[F.median(numeric_value(f)).alias(f.name) for f in features]).first()
        medians = row.asDict() if row is not None else {}
    return fill_values_with(spec, quality, medians)


def configured_fill_values(
    spec: Sequence[FeatureSpec], quality: QualityConfig
) -> Mapping[str, float]:
    """Fill values known without looking at data (for the streaming path): numbers only."""
    values: dict[str, float] = {}
    for feature in (f for f in spec if f.kind == "numeric"):
        configured = quality.imputation.get(feature.name, feature.default)
        if isinstance(configured, int | float):
            values[feature.name] = float(configured)
    return values
