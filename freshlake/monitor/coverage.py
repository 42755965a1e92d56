"""Label coverage: clicks joined into an examples table against clicks logged in `actions`.

For one day of `examples` or `fresh_examples`, the joined clicks are the Horvitz-Thompson count
`sum(label / sample_prob)`; the logged clicks are that day's impressions with a positive action in
their attribution window. Only impressions served at least one attribution window before the
table's newest row count, so clicks that may still arrive do not look missing.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import functions as F

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.monitor.daily import ACTIONS, IMPRESSIONS, clicked_impressions, unique_impressions
from freshlake.monitor.results import CheckResult, judged, skipped

NAME = "label_coverage"


def latest_day(lake: Lake, table: str) -> date | None:
    """The newest `dt` of a table, or None when it is missing or empty."""
    if not lake.exists(table):
        return None
    return lake.read(table).agg(F.max("dt")).first()[0]


def label_coverage_check(
    lake: Lake, table: str, config: Config, day: date | None = None
) -> CheckResult:
    """Coverage of `table`'s labels on `day` (default: its newest day); alert below the minimum."""
    missing = [t for t in (table, IMPRESSIONS, ACTIONS) if not lake.exists(t)]
    if missing:
        return skipped(NAME, table, f"no table {', '.join(missing)}", day)
    day = day or latest_day(lake, table)
    rows = lake.read(table).where(F.col("dt") == F.lit(day))
    first, last = rows.agg(F.min("served_at"), F.max("served_at")).first()
    if first is None:
        return skipped(NAME, table, f"no rows on {day}", day)
    until = last - timedelta(seconds=config.labels.attribution_window_seconds)
    if until < first:
        return skipped(NAME, table, "the day's rows span less than one attribution window", day)

    def served_between(df):
        return df.where((F.col("served_at") >= F.lit(first)) & (F.col("served_at") <= F.lit(until)))

    joined = (
        served_between(rows)
        .agg(F.sum(F.col("label") / F.coalesce(F.col("sample_prob"), F.lit(1.0))))
        .first()[0]
    )
    joined = float(joined or 0.0)
    impressions = served_between(unique_impressions(lake).where(F.col("dt") == F.lit(day)))
    logged = clicked_impressions(impressions, lake, config.labels).count()
    threshold = config.monitor.min_label_coverage
    if logged == 0:
        return skipped(NAME, table, f"no clicks logged for {first} .. {until}", day)
    coverage = joined / logged
    detail = (
        f"{joined:.1f} clicks joined (weighted) / {logged} logged, "
        f"served {first:%Y-%m-%d %H:%M:%S} .. {until:%H:%M:%S}"
    )
    return judged(NAME, table, coverage, threshold, coverage < threshold, detail, day)
