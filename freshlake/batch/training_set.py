"""The batch training-set builder: impressions + actions of a time window -> `examples`.

One pass over the inputs classifies every impression row (freshlake.batch.classify) with its
whole row, while Spark's Observation API gathers every count of the report, the
Horvitz–Thompson sums and the imputation medians (freshlake.batch.report.BuildCounts); the rows
it keeps (written and quarantined) stay on local disk for the two writes. Re-running a window
replaces exactly its `dt` partitions in one atomic commit and writes identical rows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from freshlake import contract
from freshlake.batch.classify import BuildPlan, carried_columns, classify, is_outcome
from freshlake.batch.inputs import (
    ACTIONS,
    IMPRESSIONS,
    action_log_end,
    pinned_version,
    read_actions,
    read_impressions,
    window_rows,
)
from freshlake.batch.item_stats import ITEM_STATS, read_item_counts, write_item_stats
from freshlake.batch.report import BuildCounts, BuildReport
from freshlake.batch.window import TimeWindow
from freshlake.config import Config
from freshlake.features.examples import to_examples
from freshlake.features.hashing import hash_unit
from freshlake.features.labeling import action_times
from freshlake.features.quality import fill_values_with, median_imputed, quarantine_impressions
from freshlake.features.splits import split_column
from freshlake.features.transforms import apply_feature_spec
from freshlake.features.weights import weight_columns
from freshlake.lake import Lake, WriteResult
from freshlake.runs import JobRun
from freshlake.spark_compat import observed_plans_kept, session_conf

log = logging.getLogger(__name__)

EXAMPLES = contract.EXAMPLES
QUARANTINE = contract.QUARANTINE
# Seeds the hash that orders the rows inside every examples file (not the sampling seed).
ROW_ORDER_SEED = "examples-row-order"
# Input rows per task of the dedup shuffle: a sorted row is ~200 bytes (ids, labels, hashes;
# whole rows only where an outcome keeps them), so a task sorts ~200 MB, inside the execution
# memory of a 2 GB local driver running two tasks. At 10M rows and 2 tasks the sort spilled.
ROWS_PER_DEDUP_TASK = 1_000_000
# The examples write runs without whole-stage code generation: fused, its scan of the kept rows,
# every feature expression and the sort by `dt` are one generated loop (~200 KB of machine code)
# that the JIT compiles again on every deoptimization, costing more CPU than it saves on the ~9%
# of the input rows that are written. Apart, each operator's generated code stays small.
EXAMPLES_WRITE_CONF = {"spark.sql.codegen.wholeStage": "false"}


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
    with observed_plans_kept(lake.spark):
        return _build(lake, config, window, run, actions_until)


def _build(
    lake: Lake, config: Config, window: TimeWindow, run: JobRun, actions_until: datetime | None
) -> BuildReport:
    spec = config.features.spec
    with run.timed("plan"):
        versions = {t: pinned_version(lake, t) for t in (IMPRESSIONS, ACTIONS)}
        impressions = read_impressions(lake, window, versions[IMPRESSIONS])
        actions = read_actions(lake, window, config.labels, versions[ACTIONS])
        until = actions_until or action_log_end(lake, versions[ACTIONS], window.start)
        until = until or window.start_at  # no actions at all: nothing is mature yet
        item_counts, item_stats_version = rare_item_counts(lake, config, window, run.run_id)
    blackout = tuple(d for d in config.window.blackout_dates if window.start <= d < window.end)
    plan = BuildPlan(config, window, until, item_counts, blackout)

    counts = BuildCounts(config.labels, median_imputed(spec, config.quality))
    times = counts.action_times(action_times(counts.actions(actions), config.labels))
    classified = classify(impressions, times, plan, counts.screened)
    carried = carried_columns(config.labels)
    counted = counts.outcomes(classified.withColumns(counts.metric_columns()))
    write_partitions = int(lake.spark.conf.get("spark.sql.shuffle.partitions", "200"))
    settings = pass_settings(write_partitions, window_rows(lake, window, versions[IMPRESSIONS]))
    # The rows the pass keeps, with every column, for the quarantine and examples writes.
    with session_conf(lake.spark, settings):
        kept = (
            counts.kept(counted.where(is_outcome("written", "quarantined")))
            .select(*impressions.columns, "outcome", *carried)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
    try:
        with run.timed("classify"), session_conf(lake.spark, settings):
            kept.count()  # the one pass over the inputs; it fills every observation
        # The writes read the kept rows in as many tasks as the session's shuffles have.
        kept_rows = kept.coalesce(write_partitions)
        report = counts.report(run.run_id, str(window))
        report.input_versions = dict(versions)
        report.item_stats_version = item_stats_version
        report.actions_until = until.isoformat()
        report.fill_values = fill_values_with(spec, config.quality, counts.medians())
        if report.outcomes["quarantined"]:
            with run.timed("quarantine"):
                rejected = kept_rows.where(is_outcome("quarantined")).select(*impressions.columns)
                report.output_versions[QUARANTINE] = _write_quarantine(lake, rejected, run.run_id)
        _record(run, report)
        _check_quality(report, config)

        with run.timed("write"), session_conf(lake.spark, EXAMPLES_WRITE_CONF):
            written = kept_rows.where(is_outcome("written")).select(*impressions.columns, *carried)
            examples = example_rows(written, config, window, report.fill_values, run.run_id)
            result = write_examples(lake, examples, window, run.run_id)
        report.written_rows = result.rows
        report.output_versions[EXAMPLES] = result.version
    finally:
        kept.unpersist()
    report.reconcile()
    report.timings = dict(run.timings)
    _record(run, report)
    return report


def pass_settings(shuffle_partitions: int, input_rows: int | None) -> dict[str, str]:
    """Session settings for the build's one pass over `input_rows` impressions.

    The dedup shuffle gets at least one partition per `ROWS_PER_DEDUP_TASK` rows (the
    session's `shuffle_partitions` otherwise), so each task's sort of its rows fits in its
    execution memory instead of spilling to disk; and the kept rows are cached without the
    in-memory columnar compression, whose per-value dictionary statistics cost more CPU than
    the two scans of the cache save.
    """
    partitions = max(shuffle_partitions, -(-(input_rows or 0) // ROWS_PER_DEDUP_TASK))
    return {
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
    }


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
    """Replace the window's `dt` partitions of `examples` in one commit (empty days included).

    Inside each file the rows are in the order of a hash of their impression id, so any run of
    consecutive rows is a uniform sample of the file, whatever the ids look like (the dedup
    left them sorted by id: in serving order where ids count up). The loader's `blocks`
    shuffle reads batches as such runs. The sort is local to each task; Spark's partitioned
    write sorts by `dt` anyway, which this ordering already satisfies.
    """
    in_hash_order = examples.sortWithinPartitions(
        contract.DT, hash_unit(ROW_ORDER_SEED, "impression_id")
    )
    return lake.write(
        EXAMPLES,
        in_hash_order,
        mode="overwrite",
        partition_by=["dt"],
        replace_partitions={"dt": [d.isoformat() for d in window.days]},
        metadata={"run_id": run_id, "window": str(window)},
    )


def _write_quarantine(lake: Lake, rejected: DataFrame, run_id: str) -> int | None:
    rows = quarantine_impressions(rejected, run_id, datetime.now(UTC))
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
