"""Train/serving skew: population stability index (PSI) of each feature, `examples` vs the latest
day of `fresh_examples`.

Rows count with `1 / sample_prob` (the population they stand for), so different sampling rates
on the two paths do not look like skew. Numeric features are cut at the reference's quantiles,
categorical ones keep the reference's `psi_top_k` buckets plus one bucket for the rest; text
features are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from freshlake.config import FeatureSpec, MonitorConfig
from freshlake.features.transforms import feature_column
from freshlake.monitor.results import CheckResult, judged

OTHER = -1  # bin of categorical values outside the reference's top k
MISSING = -2  # bin of nulls
PSI_FLOOR = 1e-4  # share given to an empty bin, so the log stays finite


@dataclass(frozen=True)
class Compared:
    """A feature column and its kind, as compared by the skew check."""

    column: str
    kind: str  # numeric | categorical


def compared_features(spec: Sequence[FeatureSpec], columns: Sequence[str]) -> list[Compared]:
    """The numeric and categorical features of the spec whose `f_` column both tables have."""
    return [
        Compared(feature_column(f), f.kind)
        for f in spec
        if f.kind in ("numeric", "categorical") and feature_column(f) in columns
    ]


def psi(reference: Mapping[int, float], current: Mapping[int, float]) -> float:
    """Population stability index of two binned distributions (unnormalized weights per bin)."""
    ref_total, cur_total = sum(reference.values()), sum(current.values())
    if ref_total <= 0 or cur_total <= 0:
        return 0.0
    total = 0.0
    for b in set(reference) | set(current):
        r = max(reference.get(b, 0.0) / ref_total, PSI_FLOOR)
        c = max(current.get(b, 0.0) / cur_total, PSI_FLOOR)
        total += (c - r) * math.log(c / r)
    return total


def _population_weight() -> Column:
    return 1.0 / F.coalesce(F.col("sample_prob"), F.lit(1.0))


def _quantile_edges(reference: DataFrame, numeric: list[str], bins: int) -> dict[str, list[float]]:
    if not numeric:
        return {}
    probs = [i / bins for i in range(1, bins)]
    cuts = reference.approxQuantile(numeric, probs, 0.001)
    return {c: sorted(set(edges)) for c, edges in zip(numeric, cuts, strict=True)}


def _top_values(reference: DataFrame, categorical: list[str], k: int) -> dict[str, list[int]]:
    if not categorical:
        return {}
    melted = reference.select(
        _population_weight().alias("w"),
        F.explode(
            F.array(
                *[F.struct(F.lit(c).alias("feature"), F.col(c).alias("value")) for c in categorical]
            )
        ).alias("f"),
    ).select("f.feature", "f.value", "w")
    ranked = (
        melted.where(F.col("value").isNotNull())
        .groupBy("feature", "value")
        .agg(F.sum("w").alias("w"))
        .withColumn("rank", F.row_number().over(Window.partitionBy("feature").orderBy(F.desc("w"))))
        .where(F.col("rank") <= k)
        .collect()
    )
    top: dict[str, list[int]] = {c: [] for c in categorical}
    for row in ranked:
        top[row["feature"]].append(int(row["value"]))
    return top


def _bin(feature: Compared, edges: dict[str, list[float]], top: dict[str, list[int]]) -> Column:
    col = F.col(feature.column)
    if feature.kind == "numeric":
        index = sum(((col > e).cast("int") for e in edges[feature.column]), F.lit(0))
    else:
        known = top[feature.column]
        index = F.when(col.isin(known), col) if known else F.lit(None)
        index = F.coalesce(index, F.lit(OTHER))
    return F.when(col.isNull(), F.lit(MISSING)).otherwise(index).cast("long")


def _binned(df: DataFrame, side: str, features: list[Compared], edges, top) -> DataFrame:
    cells = [
        F.struct(F.lit(f.column).alias("feature"), _bin(f, edges, top).alias("bin"))
        for f in features
    ]
    return df.select(
        F.lit(side).alias("side"),
        _population_weight().alias("w"),
        F.explode(F.array(*cells)).alias("c"),
    ).select("side", "c.feature", "c.bin", "w")


def skew_checks(
    reference: DataFrame,
    current: DataFrame,
    spec: Sequence[FeatureSpec],
    cfg: MonitorConfig,
    detail_prefix: str = "",
) -> list[CheckResult]:
    """One result per compared feature: PSI of `current` against `reference`, alert above max_psi."""
    features = compared_features(spec, sorted(set(reference.columns) & set(current.columns)))
    if not features:
        return []
    edges = _quantile_edges(
        reference, [f.column for f in features if f.kind == "numeric"], cfg.psi_bins
    )
    top = _top_values(
        reference, [f.column for f in features if f.kind == "categorical"], cfg.psi_top_k
    )
    parts = _binned(reference, "reference", features, edges, top).unionByName(
        _binned(current, "current", features, edges, top)
    )
    mass: dict[tuple[str, str], dict[int, float]] = {}
    for row in parts.groupBy("side", "feature", "bin").agg(F.sum("w").alias("w")).collect():
        mass.setdefault((row["feature"], row["side"]), {})[int(row["bin"])] = float(row["w"])
    results = []
    for f in features:
        value = psi(mass.get((f.column, "reference"), {}), mass.get((f.column, "current"), {}))
        detail = f"{detail_prefix}{f.kind}, PSI {value:.3f}"
        results.append(judged("skew", f.column, value, cfg.max_psi, value > cfg.max_psi, detail))
    return results
