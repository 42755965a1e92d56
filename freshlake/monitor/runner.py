"""Run every monitor over the lake and record the results (`freshlake monitor`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.monitor.coverage import label_coverage_check, latest_day
from freshlake.monitor.daily import IMPRESSIONS, daily_ctr, daily_source_counts
from freshlake.monitor.freshness import FRESH_EXAMPLES, fresh_examples_age, model_age
from freshlake.monitor.results import CheckResult, skipped
from freshlake.monitor.skew import skew_checks
from freshlake.monitor.traffic import source_share_checks, volume_ctr_checks

EXAMPLES = contract.EXAMPLES


def traffic_checks(lake: Lake, config: Config, day: date | None) -> list[CheckResult]:
    """Source shares, volume and CTR of `day` (default: the newest day of impressions)."""
    if not lake.exists(IMPRESSIONS):
        return [skipped(n, IMPRESSIONS, "no impressions table") for n in ("source_share", "volume")]
    day = day or latest_day(lake, IMPRESSIONS)
    cfg = config.monitor
    counts = daily_source_counts(lake, cfg.source_column)
    daily = daily_ctr(lake, config.labels)
    return [
        *source_share_checks(counts, day, cfg),
        *volume_ctr_checks(daily, day, cfg, config.labels.positive_action),
    ]


def train_serving_skew(lake: Lake, config: Config) -> list[CheckResult]:
    """PSI per feature of `examples` against the newest day of `fresh_examples`."""
    missing = [t for t in (EXAMPLES, FRESH_EXAMPLES) if not lake.exists(t)]
    if missing:
        return [skipped("skew", "features", f"no table {', '.join(missing)}")]
    day = latest_day(lake, FRESH_EXAMPLES)
    current = lake.read(FRESH_EXAMPLES).where(F.col("dt") == F.lit(day))
    prefix = f"{EXAMPLES} v{lake.version(EXAMPLES)} vs {FRESH_EXAMPLES} {day}: "
    results = skew_checks(
        lake.read(EXAMPLES), current, config.features.spec, config.monitor, prefix
    )
    return results or [skipped("skew", "features", "no numeric or categorical feature to compare")]


def run_monitors(
    lake: Lake,
    config: Config,
    day: date | None = None,
    model_dir: str | Path | None = None,
    now: datetime | None = None,
) -> list[CheckResult]:
    """Every check: traffic (source shares, volume, CTR), skew, label coverage, freshness."""
    now = now or datetime.now(UTC)
    return [
        *traffic_checks(lake, config, day),
        *train_serving_skew(lake, config),
        label_coverage_check(lake, EXAMPLES, config, day),
        label_coverage_check(lake, FRESH_EXAMPLES, config),  # its newest day
        fresh_examples_age(lake, config.monitor, now),
        model_age(model_dir, config.monitor, now),
    ]
