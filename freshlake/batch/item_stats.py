"""The `item_stats` table: impressions and clicks per item over a trailing window.

One snapshot per window end (partition `window_end`); rerunning a window end replaces its
partition. The training-set builder reads it for rare-item upsampling and records the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.batch.inputs import (
    ACTIONS,
    IMPRESSIONS,
    in_window,
    pinned_version,
    read_actions,
    read_impressions,
)
from freshlake.batch.window import TimeWindow
from freshlake.config import Config, LabelConfig
from freshlake.features.labeling import attach_labels
from freshlake.features.quality import dedup_actions, dedup_impressions, impression_problem
from freshlake.lake import Lake

ITEM_STATS = contract.ITEM_STATS


@dataclass(frozen=True)
class ItemStatsResult:
    """What one item_stats run wrote."""

    window: TimeWindow
    version: int | None
    items: int
    impressions: int
    clicks: int
    input_versions: dict[str, int]


def item_counts(impressions: DataFrame, actions: DataFrame, labels: LabelConfig) -> DataFrame:
    """Per item_id: `impressions` (distinct valid impressions) and `clicks` (labelled positive).

    Lazy; `impressions` should already be restricted to the window.
    """
    valid = impressions.where(impression_problem(impressions.columns).isNull())
    unique = dedup_impressions(valid.select("impression_id", "item_id", "user_id", "served_at"))
    labeled = attach_labels(unique, dedup_actions(actions), labels)
    return labeled.groupBy("item_id").agg(
        F.count(F.lit(1)).alias("impressions"), F.sum("label").cast("long").alias("clicks")
    )


def compute_item_stats(
    lake: Lake, config: Config, window: TimeWindow, run_id: str
) -> tuple[DataFrame, dict[str, int]]:
    """The item_stats rows of `window` (lazy) and the input versions they are read at."""
    versions = {
        IMPRESSIONS: pinned_version(lake, IMPRESSIONS),
        ACTIONS: pinned_version(lake, ACTIONS),
    }
    impressions = read_impressions(lake, window, versions[IMPRESSIONS]).where(
        in_window(F.col("served_at"), window)
    )
    actions = read_actions(lake, window, config.labels, versions[ACTIONS])
    stats = item_counts(impressions, actions, config.labels).withColumns(
        {
            "window_start": F.lit(window.start),
            "window_end": F.lit(window.end),
            "run_id": F.lit(run_id),
            "computed_at": F.lit(datetime.now(UTC)),
        }
    )
    return stats, versions


def write_item_stats(
    lake: Lake, config: Config, window: TimeWindow, run_id: str
) -> ItemStatsResult:
    """Compute and write the item_stats snapshot of `window`, replacing that window end's."""
    stats, versions = compute_item_stats(lake, config, window, run_id)
    stats = stats.sort("item_id")
    result = lake.write(
        ITEM_STATS,
        stats,
        mode="overwrite",
        partition_by=["window_end"],
        replace_partitions={"window_end": [window.end.isoformat()]},
        metadata={"run_id": run_id, "window": str(window)},
    )
    totals = (
        lake.read(ITEM_STATS, result.version)
        .where(F.col("window_end") == F.lit(window.end))
        .agg(F.count(F.lit(1)), F.sum("impressions"), F.sum("clicks"))
        .first()
    )
    return ItemStatsResult(
        window, result.version, totals[0], totals[1] or 0, totals[2] or 0, versions
    )


def read_item_counts(lake: Lake, window: TimeWindow) -> tuple[DataFrame, int] | None:
    """The snapshot of `window` (item_id, impressions, clicks) and the table version, if any."""
    version = lake.version(ITEM_STATS)
    if version is None:
        return None
    snapshot = lake.read(ITEM_STATS, version).where(
        (F.col("window_end") == F.lit(window.end)) & (F.col("window_start") == F.lit(window.start))
    )
    if snapshot.limit(1).count() == 0:
        return None
    return snapshot.select("item_id", "impressions", "clicks"), version
