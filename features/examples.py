"""The column layout of `examples` / `fresh_examples` (contract 3), shared by batch and stream.

`to_examples(df, labels, spec, source, run_id)` selects the contract's columns in a fixed order
from a frame that already has impression columns, `f_*` features, labels, `sample_prob`,
`stratum`, `recency_weight`, `weight` and `split`; it adds `source`, `run_id` and `dt`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import FeatureSpec, LabelConfig
from freshlake.features.labeling import label_output_columns
from freshlake.features.transforms import feature_output_columns

IMPRESSION_COLUMNS = (
    "impression_id",
    "request_id",
    "user_id",
    "item_id",
    "served_at",
    "position",
    "surface",
    "region",
    "model_version",
    "pred_ctr",
    "features",
)
SAMPLING_COLUMNS = (
    contract.SAMPLE_PROB,
    contract.RECENCY_WEIGHT,
    contract.WEIGHT,
    contract.STRATUM,
    contract.SPLIT,
)


def example_columns(labels: LabelConfig, spec: Sequence[FeatureSpec]) -> list[str]:
    """Every column of the examples table, in order (`dt`, the partition, last)."""
    return [
        *IMPRESSION_COLUMNS,
        *feature_output_columns(spec),
        *label_output_columns(labels),
        *SAMPLING_COLUMNS,
        contract.SOURCE,
        contract.RUN_ID,
        contract.DT,
    ]


def to_examples(
    df: DataFrame,
    labels: LabelConfig,
    spec: Sequence[FeatureSpec],
    source: str,
    run_id: str,
) -> DataFrame:
    """`df` as examples rows: adds source, run_id, dt (UTC date of served_at); fixed column order."""
    df = df.withColumns(
        {
            contract.SOURCE: F.lit(source),
            contract.RUN_ID: F.lit(run_id),
            contract.DT: F.to_date(F.col("served_at")),
        }
    )
    return df.select(*example_columns(labels, spec))
