"""The small frames the report plots, read from the lake's tables."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.lake import Lake

EXAMPLE_TABLES = contract.EXAMPLE_TABLES
STREAM_METRICS = contract.STREAM_METRICS  # written by streaming/metrics.py


def stratum_composition(lake: Lake) -> pd.DataFrame:
    """Kept rows per table and stratum, with the impressions they stand for (sum 1/sample_prob).

    Columns: table, stratum, rows, represented.
    """
    frames = []
    for table in EXAMPLE_TABLES:
        if not lake.exists(table):
            continue
        counts = (
            lake.read(table)
            .groupBy("stratum")
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum(1.0 / F.col("sample_prob")).alias("represented"),
            )
            .toPandas()
        )
        frames.append(counts.assign(table=table))
    if not frames:
        return pd.DataFrame(columns=["table", "stratum", "rows", "represented"])
    return pd.concat(frames, ignore_index=True).sort_values(["table", "stratum"])


def stream_latencies(lake: Lake) -> pd.DataFrame | None:
    """Per micro-batch action -> commit latencies of the streaming queries (None: no table).

    Columns: query, batch_id, positives, latency_p50_s, latency_p99_s, latency_max_s.
    """
    if not lake.exists(STREAM_METRICS):
        return None
    columns = ["query", "batch_id", "positives", "latency_p50_s", "latency_p99_s", "latency_max_s"]
    return (
        lake.read(STREAM_METRICS)
        .where(F.col("latency_p50_s").isNotNull())
        .select(*columns)
        .toPandas()
    )
