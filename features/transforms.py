"""Feature transforms from the config's feature spec (`features.spec`, contract 3).

For each `FeatureSpec` (value read from `source`, default the column named like the feature;
`features.device` reads key `device` of the `features` map):

- categorical -> `f_<name>` bigint: hash bucket in [0, buckets), salted by the feature name;
- numeric     -> `f_<name>` double, missing/unparsable values imputed, and `f_<name>_missing` 0/1;
- text        -> `f_<name>` array<bigint>: hash buckets of the word n-grams (`ngrams`, e.g. [1, 2])
  of the lower-cased text split on non-alphanumerics; an empty array for missing text.

`apply_feature_spec(df, spec, fill_values)` is lazy (no actions) so the streaming joiner calls it
too. Imputation values come from `fill_values` (name -> value, e.g. medians the batch builder
computed), else the spec's `default`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import FeatureSpec
from freshlake.features.hashing import hash_bucket

# A word: a maximal run of letters and digits (Unicode); everything else separates words.
_WORD = r"[\p{L}\p{N}]+"


def feature_column(spec: FeatureSpec) -> str:
    """The output column of a feature: `f_<name>`."""
    return contract.feature_column(spec.name)


def missing_column(spec: FeatureSpec) -> str:
    """The missing-indicator column of a numeric feature: `f_<name>_missing`."""
    return contract.missing_column(spec.name)


def source_value(spec: FeatureSpec) -> Column:
    """The raw value of a feature: a column, or `map_column.key` for a key of a map column."""
    source = spec.source or spec.name
    column, dot, key = source.partition(".")
    if not dot:
        return F.col(column)
    return F.try_element_at(F.col(column), F.lit(key))


def numeric_value(spec: FeatureSpec) -> Column:
    """The raw value as double; null when missing, unparsable or NaN."""
    raw = source_value(spec).try_cast("double")
    return F.when(~F.isnan(raw), raw)


def categorical_bucket(spec: FeatureSpec) -> Column:
    """Hash bucket of the value as text (so 3 and "3" agree), in [0, buckets)."""
    return hash_bucket(spec.name, source_value(spec).cast("string"), spec.buckets)


def text_words(spec: FeatureSpec) -> Column:
    """The lower-cased words of the text, in order: maximal runs of Unicode letters and digits
    ([] when the text is missing or empty)."""
    text = F.coalesce(F.lower(source_value(spec).cast("string")), F.lit(""))
    return F.regexp_extract_all(text, F.lit(_WORD), 0)


def text_ngram_buckets(spec: FeatureSpec, words: Column) -> Column:
    """Hash buckets of the word n-grams of a text, from its `text_words` (a column, so that
    they are computed once per row); [] when the text is missing or empty."""
    grams = [_ngrams(words, n) for n in spec.ngrams]
    joined = grams[0] if len(grams) == 1 else F.concat(*grams)
    return F.transform(joined, lambda gram: hash_bucket(spec.name, gram, spec.buckets))


def _ngrams(tokens: Column, n: int) -> Column:
    """The n-grams of a token array as space-joined strings (empty if fewer than n tokens)."""
    count = F.size(tokens) - n + 1
    starts = F.sequence(F.lit(1), F.greatest(count, F.lit(1)))
    grams = F.transform(starts, lambda i: F.concat_ws(" ", F.slice(tokens, i, n)))
    return F.when(count >= 1, grams).otherwise(F.array().cast("array<string>"))


def fill_value(spec: FeatureSpec, fill_values: Mapping[str, float] | None) -> float:
    """The imputation value of a numeric feature: `fill_values[name]`, else the spec default."""
    if fill_values and fill_values.get(spec.name) is not None:
        return float(fill_values[spec.name])
    if spec.default is not None:
        return float(spec.default)
    raise ValueError(
        f"numeric feature {spec.name!r} has no imputation value: set its `default` in "
        "features.spec or quality.imputation, or pass a computed median"
    )


def apply_feature_spec(
    df: DataFrame,
    spec: Sequence[FeatureSpec],
    fill_values: Mapping[str, float] | None = None,
) -> DataFrame:
    """Add the `f_*` columns of every feature in `spec` to `df` (lazy)."""
    words = {f.name: f"_words_{f.name}" for f in spec if f.kind == "text"}
    if words:  # each text's words once per row: its n-grams refer to them several times
        df = df.withColumns({words[f.name]: text_words(f) for f in spec if f.name in words})
    columns: dict[str, Column] = {}
    for feature in spec:
        if feature.kind == "categorical":
            columns[feature_column(feature)] = categorical_bucket(feature)
        elif feature.kind == "numeric":
            raw = numeric_value(feature)
            columns[feature_column(feature)] = F.coalesce(
                raw, F.lit(fill_value(feature, fill_values))
            )
            columns[missing_column(feature)] = raw.isNull().cast("int")
        else:
            columns[feature_column(feature)] = text_ngram_buckets(
                feature, F.col(words[feature.name])
            )
    return df.withColumns(columns).drop(*words.values())


def feature_output_columns(spec: Sequence[FeatureSpec]) -> list[str]:
    """The `f_*` columns `apply_feature_spec` adds, in order."""
    return contract.feature_columns(spec)
