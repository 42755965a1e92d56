"""The data contract's names: the lake's tables and the columns of the examples tables.

Defined once, here, for every layer: entry points, the batch and streaming code that writes the
tables, the lake, and the trainer, whose processes have no Spark. Plain Python with no imports
of its own, so any module may import it without pulling in pyspark or pyarrow. Table names are
logical: `lake.tables` in the config maps one to a physical name (`LakeConfig.table_name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# Tables of the lake.
IMPRESSIONS = "impressions"  # valid impressions (ingest, streaming bronze)
ACTIONS = "actions"  # valid actions: clicks, likes, conversions
QUARANTINE = "quarantine"  # every rejected record, with its reason and raw payload
ITEM_STATS = "item_stats"  # per-item impression and click counts over a window
EXAMPLES = "examples"  # the batch training set
FRESH_EXAMPLES = "fresh_examples"  # the online joiner's training rows
FRESH_ACTIONS = "fresh_actions"  # the joiner's record of secondary actions already applied
JOB_RUNS = "job_runs"  # one row per batch job run: counts, versions, timings
STREAM_METRICS = "stream_metrics"  # one row per streaming micro-batch
EXAMPLE_TABLES = (EXAMPLES, FRESH_EXAMPLES)  # tables with the examples columns below

# Columns of the examples tables besides the impression's own.
LABEL = "label"  # 0/1 for the positive action
WEIGHT = "weight"  # recency_weight / sample_prob
SAMPLE_PROB = "sample_prob"
RECENCY_WEIGHT = "recency_weight"
STRATUM = "stratum"  # positive, negative, positive_rare, negative_rare
SPLIT = "split"  # train | eval
SOURCE = "source"  # batch | stream
RUN_ID = "run_id"
DT = "dt"  # the partition column: UTC date of served_at
FIRST_ACTION_AT = "first_action_at"


class Feature(Protocol):
    """What the contract needs of a feature spec entry (`freshlake.config.FeatureSpec`)."""

    name: str
    kind: str  # categorical | numeric | text


def feature_column(name: str) -> str:
    """The column of feature `name`: `f_<name>` (hash bucket, value or n-gram hash ids)."""
    return f"f_{name}"


def missing_column(name: str) -> str:
    """The 0/1 missing flag of numeric feature `name`: `f_<name>_missing`."""
    return f"{feature_column(name)}_missing"


def label_column(action: str) -> str:
    """The 0/1 label of one action type: `label_<action>`."""
    return f"label_{action}"


def feature_columns(spec: Iterable[Feature]) -> list[str]:
    """Every feature column of `spec`, in order: `f_<name>`, then `f_<name>_missing` if numeric."""
    names: list[str] = []
    for feature in spec:
        names.append(feature_column(feature.name))
        if feature.kind == "numeric":
            names.append(missing_column(feature.name))
    return names
