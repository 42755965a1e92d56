"""Small lakes for the monitor and report tests: logs with several regions, examples built with
the project's own labeling, sampling and feature code, and trouble injected on purpose.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake.batch.training_set import example_rows
from freshlake.batch.window import TimeWindow
from freshlake.config import Config
from freshlake.features.labeling import attach_labels
from freshlake.features.sampling import is_sampled, sampling_columns
from freshlake.lake import Lake
from tests.batch_logs import generate, write_logs

START = date(2026, 1, 1)
DAYS = 6
LAST_DAY = START + timedelta(days=DAYS - 1)
REGIONS = ("eu", "us", "apac")
REGION_SHARES = (0.25, 0.25, 0.5)


def write_traffic(spark, lake: Lake, *, stop_region: str | None = None, lose_clicks: bool = False):
    """Six days of impressions over three regions, and their actions.

    `stop_region`: that region has no impressions on the last day (its pipeline stopped).
    `lose_clicks`: no click actions from the last day on (a broken action logger).
    """
    logs = generate(6_000, START, DAYS, items=100, seed=3, late_share=0.0)
    rng = np.random.default_rng(5)
    regions = rng.choice(REGIONS, size=logs.impressions.num_rows, p=REGION_SHARES)
    impressions = logs.impressions.set_column(
        logs.impressions.schema.get_field_index("region"), "region", pa.array(regions, pa.string())
    )
    actions = logs.actions
    if stop_region:
        stopped = pc.and_(
            pc.equal(impressions["region"], stop_region), pc.equal(impressions["dt"], LAST_DAY)
        )
        impressions = impressions.filter(pc.invert(stopped))
    if lose_clicks:
        lost = pc.and_(
            pc.equal(actions["action"], "click"), pc.greater_equal(actions["dt"], LAST_DAY)
        )
        actions = actions.filter(pc.invert(lost))
    write_logs(spark, lake, dataclasses.replace(logs, impressions=impressions, actions=actions))


def build_examples(lake: Lake, config: Config, impressions: DataFrame | None = None) -> DataFrame:
    """Examples rows of the lake's logs (or of `impressions`), built like the batch builder does."""
    impressions = impressions if impressions is not None else lake.read("impressions")
    labeled = attach_labels(
        impressions.dropDuplicates(["impression_id"]), lake.read("actions"), config.labels
    )
    sampled = sampling_columns(labeled, config.sampling).where(is_sampled(config.sampling))
    window = TimeWindow(START, START + timedelta(days=DAYS))
    return example_rows(sampled, config, window, {"hour": 12.0}, run_id="test-build")


def write_examples(lake: Lake, config: Config) -> None:
    lake.write("examples", build_examples(lake, config), partition_by=["dt"])


def write_fresh_examples(
    lake: Lake, config: Config, day: date, *, skewed: bool = False, lost_label_share: float = 0.0
) -> None:
    """One day of `fresh_examples` (source=stream) from the logs.

    `skewed`: serving sent position 5 and device `web` for every impression (train/serving skew).
    `lost_label_share`: that share of the positives lost their click in the join.
    """
    impressions = lake.read("impressions").where(F.col("dt") == F.lit(day))
    if skewed:
        impressions = impressions.withColumn("position", F.lit(5)).withColumn(
            "features",
            F.transform_values("features", lambda k, v: F.when(k == "device", "web").otherwise(v)),
        )
    rows = build_examples(lake, config, impressions).withColumn("source", F.lit("stream"))
    if lost_label_share:
        lost = F.abs(F.hash("impression_id")) % 1000 < int(lost_label_share * 1000)
        rows = rows.withColumn("label", F.when(lost, F.lit(0)).otherwise(F.col("label")))
    lake.write("fresh_examples", rows, partition_by=["dt"])
