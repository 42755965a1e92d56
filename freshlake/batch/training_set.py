"""The batch training-set builder: impressions + actions of a time window -> `examples`.

Every input row is classified once (freshlake.batch.classify) on a narrow projection of the
fields that decide its outcome, kept on local disk: one pass counts every outcome and computes
the Horvitz–Thompson check, then the kept rows' full rows are picked with a broadcast join,
given their features and written. Re-running a window replaces exactly its `dt`
partitions in one atomic commit and writes identical rows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake.batch.classify import BuildPlan, classify, first_actions, is_outcome, screen
from freshlake.batch.inputs import (
    ACTIONS,
    IMPRESSIONS,
    action_log_end,
    pinned_version,
    read_actions,
    read_impressions,
)
from freshlake.batch.item_stats import ITEM_STATS, read_item_counts, write_item_stats
from freshlake.batch.report import BuildReport, summarize
from freshlake.batch.window import TimeWindow
from freshlake.config import Config
from freshlake.features.examples import to_examples
from freshlake.features.labeling import label_output_columns
from freshlake.features.quality import dedup_impressions, imputation_values, quarantine_impressions
from freshlake.features.splits import split_column
from freshlake.features.transforms import apply_feature_spec
from freshlake.features.weights import weight_columns
from freshlake.lake import Lake, WriteResult
from freshlake.runs import JobRun

log = logging.getLogger(__name__)

EXAMPLES = "examples"
QUARANTINE = "quarantine"

# The fields that decide a row's outcome: classification runs on these alone.
OUTCOME_COLUMNS = ("impression_id", "user_id", "item_id", "served_at", "position", "pred_ctr")
# Up to this many kept rows, their keys are broadcast to pick the full rows without a shuffle.
BROADCAST_KEPT_ROWS = 2_000_000


class QualityError(RuntimeError):
    """Too many input rows failed validation (more than `quality.max_bad_share`)."""


def rare_item_counts(
    lake: Lake, config: Config, window: TimeWindow, run_id: str
) -> tuple[DataFrame | None, int | None]:
    """Item impression counts for rare-item detection, and the item_stats version they come from.

    Uses the item_stats snapshot over `rare_item.window_days` ending at the window's end,
    computing and writing it first when there is none. (None, None) when the boost is off.
    """
    rare = config.sampling.rare_item
    if rare.boost == 1.0:
        return None, None
    stats_window = TimeWindow.ending(window.end, rare.window_days)
    found = read_item_counts(lake, stats_window)
    if found is None:
        log.info("no item_stats for %s: computing them", stats_window)
        write_item_stats(lake, config, stats_window, run_id)
        found = read_item_counts(lake, stats_window)
    if found is None:  # an empty window: no item has impressions, every item is rare
        return lake.spark.createDataFrame([], "item_id string, impressions long"), None
    return found


def action_counts(actions: DataFrame) -> dict[str, int]:
    """Actions that can label the window, and how many of them repeat an earlier one."""
    row = actions.agg(
        F.count(F.lit(1)).alias("n"),
        F.count_distinct("impression_id", "action", "action_at").alias("unique"),
    ).first()
    return {"actions_input": row["n"], "actions_duplicate": row["n"] - row["unique"]}


def build_training_set(
    lake: Lake,
    config: Config,
    window: TimeWindow,
    run: JobRun,
    actions_until: datetime | None = None,
) -> BuildReport:
    """Build `examples` for `window`; returns the report (also recorded in `run`).

    `actions_until`: how far the action log is complete (default: its latest action_at);
    impressions whose attribution window ends later are left out as immature.
    """
    spec = config.features.spec
    with run.timed("plan"):
        versions = {t: pinned_version(lake, t) for t in (IMPRESSIONS, ACTIONS)}
        impressions = read_impressions(lake, window, versions[IMPRESSIONS])
        actions = read_actions(lake, window, config.labels, versions[ACTIONS])
        until = actions_until or action_log_end(lake, versions[ACTIONS], window.start)
        until = until or window.start_at  # no actions at all: nothing is mature yet
        item_counts, item_stats_version = rare_item_counts(lake, config, window, run.run_id)
    plan = BuildPlan(config, window, until, item_counts)
    blackout = [d for d in config.window.blackout_dates if window.start <= d < window.end]

    narrow = screen(impressions.select(*OUTCOME_COLUMNS), window, blackout)
    firsts = first_actions(narrow, actions, plan).persist()
    # Classified once, kept on local disk: the count and the write pass read the same rows.
    carried = [*label_output_columns(config.labels), "sample_prob", "stratum"]
    classified = (
        classify(narrow, firsts, plan)
        .select(*OUTCOME_COLUMNS, "outcome", "reason", *carried)
        .persist(StorageLevel.DISK_ONLY)
    )
    try:
        with run.timed("count"):
            report = summarize(
                classified,
                config.labels,
                run.run_id,
                str(window),
                input_rows=impressions.count(),
            )
            report.actions = action_counts(actions)
        report.input_versions = dict(versions)
        report.item_stats_version = item_stats_version
        report.actions_until = until.isoformat()

        screened = screen(impressions, window, blackout)
        if report.outcomes["quarantined"]:
            with run.timed("quarantine"):
                report.output_versions[QUARANTINE] = _write_quarantine(lake, screened, run.run_id)
        _record(run, report)
        _check_quality(report, config)

        with run.timed("impute"):
            report.fill_values = imputation_values(
                screened.where(F.col("outcome").isNull()), spec, config.quality
            )
        with run.timed("write"):
            kept = classified.where(is_outcome("written")).select(*OUTCOME_COLUMNS, *carried)
            rows = kept_rows(impressions, kept, carried, report.outcomes["written"])
            examples = example_rows(rows, config, window, report.fill_values, run.run_id)
            result = write_examples(lake, examples, window, run.run_id)
        report.written_rows = result.rows
        report.output_versions[EXAMPLES] = result.version
    finally:
        classified.unpersist()
        firsts.unpersist()
    report.reconcile()
    report.timings = dict(run.timings)
    _record(run, report)
    return report


def kept_rows(impressions: DataFrame, kept: DataFrame, carried: list[str], count: int) -> DataFrame:
    """The full impression rows of the kept rows (outcome columns + `carried` label columns).

    A kept row is found by its outcome columns; copies that agree on all of them (exact
    re-sends, usually) are reduced to one by `dedup_impressions`, so each kept impression
    appears once and the same copy wins on every run. The kept side is broadcast when small.
    """
    if count <= BROADCAST_KEPT_ROWS:
        kept = F.broadcast(kept)
    full, keys = impressions.alias("i"), kept.alias("k")
    matches = [F.col(f"i.{c}").eqNullSafe(F.col(f"k.{c}")) for c in OUTCOME_COLUMNS]
    joined = full.join(keys, matches).select("i.*", *(F.col(f"k.{c}") for c in carried))
    return dedup_impressions(joined)


def example_rows(
    rows: DataFrame, config: Config, window: TimeWindow, fill_values: dict[str, float], run_id: str
) -> DataFrame:
    """Kept, labeled rows as `examples` rows: features, weights, split, contract columns."""
    spec = config.features.spec
    features = apply_feature_spec(rows, spec, fill_values)
    weighted = weight_columns(features, config.recency, window.end_at)
    split = split_column(weighted, config.split, window.end_at)
    return to_examples(split, config.labels, spec, source="batch", run_id=run_id)


def write_examples(lake: Lake, examples: DataFrame, window: TimeWindow, run_id: str) -> WriteResult:
    """Replace the window's `dt` partitions of `examples` in one commit (empty days included)."""
    return lake.write(
        EXAMPLES,
        examples,
        mode="overwrite",
        partition_by=["dt"],
        replace_partitions={"dt": [d.isoformat() for d in window.days]},
        metadata={"run_id": run_id, "window": str(window)},
    )


def _write_quarantine(lake: Lake, screened: DataFrame, run_id: str) -> int | None:
    rejected = screened.where(is_outcome("quarantined"))
    rows = quarantine_impressions(rejected.drop("reason", "outcome"), run_id, datetime.now(UTC))
    return lake.write(QUARANTINE, rows, partition_by=["dt"]).version


def _check_quality(report: BuildReport, config: Config) -> None:
    limit = config.quality.max_bad_share
    if report.bad_share > limit:
        raise QualityError(
            f"{report.outcomes['quarantined']:,} of {report.input_rows:,} input impressions "
            f"({report.bad_share:.2%}) failed validation, above quality.max_bad_share={limit:.2%} "
            f"(by reason: {report.quarantined_by_reason}); they are in the quarantine table "
            f"under run_id {report.run_id}"
        )


def _record(run: JobRun, report: BuildReport) -> None:
    run.count(**report.counts())
    run.input_versions.update(report.input_versions)
    if report.item_stats_version is not None:
        run.input_versions[ITEM_STATS] = report.item_stats_version
    run.output_versions.update({k: v for k, v in report.output_versions.items() if v is not None})
    run.details.update(report.details())
