"""The build's run report: counts per outcome, strata, the Horvitz–Thompson check, reconciliation.

`BuildCounts` gathers every count of a build during its one pass over the inputs, with Spark's
Observation API (`DataFrame.observe`): the input rows as read, the actions, and one set of
aggregates over the classified impressions (freshlake.batch.classify). `BuildCounts.report()`
returns a `BuildReport`; the builder fills in versions and timings, calls `reconcile()` (every
input row accounted for) and stores `counts()` / `details()` in `job_runs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from freshlake.batch.classify import ELIGIBLE, OUTCOMES
from freshlake.config import FeatureSpec, LabelConfig
from freshlake.features.labeling import label_column, labeled_actions, times_column
from freshlake.features.sampling import STRATA
from freshlake.features.schemas import REASONS
from freshlake.features.transforms import numeric_value


class ReconciliationError(AssertionError):
    """Counts that do not add up: some input rows are unaccounted for."""


@dataclass(frozen=True)
class Estimate:
    """A Horvitz–Thompson total from the kept rows beside the true total of the population."""

    true: int
    estimate: float
    std_error: float

    @property
    def z(self) -> float:
        """(estimate - true) / standard error; |z| above ~4 would mean biased weights."""
        if self.std_error == 0:
            return 0.0 if math.isclose(self.estimate, self.true) else math.inf
        return (self.estimate - self.true) / self.std_error

    def as_dict(self) -> dict[str, float]:
        return {
            "true": self.true,
            "estimate": self.estimate,
            "std_error": self.std_error,
            "z": self.z,
        }


@dataclass
class BuildReport:
    """Everything a build did, for the console and `job_runs`."""

    run_id: str
    window: str
    input_rows: int
    outcomes: dict[str, int]
    quarantined_by_reason: dict[str, int]
    written_by_stratum: dict[str, int]
    eligible_by_stratum: dict[str, int]
    horvitz_thompson: dict[str, Estimate]
    actions: dict[str, int] = field(default_factory=dict)
    written_rows: int | None = None
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    item_stats_version: int | None = None
    actions_until: str | None = None
    fill_values: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def reconcile(self) -> None:
        """Raise `ReconciliationError` unless written + every dropped outcome = input rows."""
        accounted = sum(self.outcomes.values())
        if accounted != self.input_rows:
            parts = " + ".join(f"{k} {v}" for k, v in self.outcomes.items())
            raise ReconciliationError(
                f"{parts} = {accounted}, but the input has {self.input_rows} rows"
            )
        if self.written_rows is not None and self.written_rows != self.outcomes["written"]:
            raise ReconciliationError(
                f"examples commit has {self.written_rows} rows, classification kept "
                f"{self.outcomes['written']}"
            )
        if sum(self.quarantined_by_reason.values()) != self.outcomes["quarantined"]:
            raise ReconciliationError("quarantine reasons do not add up to the quarantined count")

    @property
    def bad_share(self) -> float:
        """Quarantined rows as a share of the input."""
        return self.outcomes["quarantined"] / self.input_rows if self.input_rows else 0.0

    def counts(self) -> dict[str, int]:
        """Flat counts for `job_runs.counts`."""
        flat = {"input": self.input_rows, **self.outcomes, **self.actions}
        flat.update({f"quarantined_{r}": n for r, n in self.quarantined_by_reason.items()})
        flat.update({f"written_{s}": n for s, n in self.written_by_stratum.items()})
        flat.update({f"eligible_{s}": n for s, n in self.eligible_by_stratum.items()})
        return flat

    def details(self) -> dict[str, Any]:
        """Everything that is not a count, for `job_runs.details`."""
        return {
            "window": self.window,
            "horvitz_thompson": {k: e.as_dict() for k, e in self.horvitz_thompson.items()},
            "item_stats_version": self.item_stats_version,
            "actions_until": self.actions_until,
            "fill_values": self.fill_values,
        }

    def render(self) -> str:
        """A human-readable report."""
        lines = [f"build-training-set {self.run_id}  window {self.window}"]
        lines.append(f"  input impressions      {self.input_rows:>12,}")
        for outcome in OUTCOMES:
            lines.append(f"  {outcome:<22} {self.outcomes[outcome]:>12,}")
        for reason, n in sorted(self.quarantined_by_reason.items()):
            lines.append(f"    quarantined {reason:<17}{n:>12,}")
        for name, n in sorted(self.actions.items()):
            lines.append(f"  {name:<22} {n:>12,}")
        lines.append("  stratum                   eligible      written")
        for stratum in sorted(self.eligible_by_stratum):
            lines.append(
                f"    {stratum:<20} {self.eligible_by_stratum[stratum]:>12,} "
                f"{self.written_by_stratum.get(stratum, 0):>12,}"
            )
        lines.append("  Horvitz-Thompson           true     estimate   std.err      z")
        for name, e in self.horvitz_thompson.items():
            lines.append(
                f"    {name:<18} {e.true:>12,} {e.estimate:>12,.1f} {e.std_error:>9,.1f} {e.z:>6.2f}"
            )
        lines.append(
            f"  input versions  {self.input_versions}  item_stats v{self.item_stats_version}"
        )
        lines.append(
            f"  output versions {self.output_versions}  actions until {self.actions_until}"
        )
        if self.fill_values:
            lines.append(f"  imputation      {self.fill_values}")
        if self.timings:
            lines.append(
                "  timings (s)     " + ", ".join(f"{k} {v}" for k, v in self.timings.items())
            )
        return "\n".join(lines)


class BuildCounts:
    """The counts of one build, observed while its single pass runs (`DataFrame.observe`).

    Before the pass, wrap the actions with `actions` and `action_times`, have `classify`
    observe its screened rows with `screened`, add `metric_columns()` to the classified rows,
    then wrap them with `outcomes` and the rows the pass keeps with `kept`; after it,
    `report()` and `medians()` read the observed values. Plan and run the pass inside
    `observed_plans_kept`, so no observation is optimized away. The input rows are counted
    with the screened rows (screening only adds columns), before the join and deduplication
    and apart from the outcome counts, so `reconcile()` still checks that classification
    accounted for every row; an observation of the rows as read would copy every whole row
    out of Parquet's column batches once more.
    """

    def __init__(self, labels: LabelConfig, imputed: Sequence[FeatureSpec] = ()) -> None:
        self.labels, self.imputed = labels, list(imputed)
        self._actions, self._unique_actions = Observation(), Observation()
        self._screened, self._outcomes, self._kept = Observation(), Observation(), Observation()

    def actions(self, actions: DataFrame) -> DataFrame:
        """`actions` (those that can label the window), counting them."""
        return actions.observe(self._actions, F.count(F.lit(1)).alias("rows"))

    def action_times(self, times: DataFrame) -> DataFrame:
        """`freshlake.features.labeling.action_times` output, counting its distinct actions
        (as `count_distinct` would: an action without impression_id is no distinct action)."""
        sizes = [F.size(times_column(a)) for a in labeled_actions(self.labels)]
        unique = F.sum(F.when(F.col("impression_id").isNotNull(), sum(sizes[1:], sizes[0])))
        return times.observe(self._unique_actions, unique.alias("rows"))

    def screened(self, screened: DataFrame) -> DataFrame:
        """The screened rows before deduplication (`outcome` is the screening outcome, null
        when the row passed), observing `screened_rows_metrics`: the input rows and the
        medians. Each value is a column of the plan's generated code (`_value_<name>`), not an
        input the aggregate evaluates row by row, and is dropped after."""
        if not self.imputed:
            return screened.observe(self._screened, *screened_rows_metrics(()))
        passed = F.col("outcome").isNull()
        values = {_value_column(f): F.when(passed, numeric_value(f)) for f in self.imputed}
        observed = screened.withColumns(values).observe(
            self._screened, *screened_rows_metrics(self.imputed)
        )
        return observed.drop(*values)

    def metric_columns(self) -> dict[str, Column]:
        """What the metrics read of a classified row, computed by the plan: its outcome, reason
        and stratum as numbers (`_outcome`, `_reason`, `_stratum`, so the metrics compare
        integers)."""
        return {
            "_outcome": _position(OUTCOMES, "outcome"),
            "_reason": _position(tuple(REASONS), "reason"),
            "_stratum": _position(STRATA, "stratum"),
        }

    def outcomes(self, classified: DataFrame) -> DataFrame:
        """Every classified row (with `metric_columns`), counted (`all_rows_metrics`)."""
        return classified.observe(self._outcomes, *all_rows_metrics(self.labels))

    def kept(self, kept: DataFrame) -> DataFrame:
        """The written and quarantined rows (with `metric_columns`), counted
        (`kept_rows_metrics`)."""
        return kept.observe(self._kept, *kept_rows_metrics(self.labels))

    def medians(self) -> dict[str, float | None]:
        """Per `imputed` feature, the exact median of its values over the rows that passed
        screening (None when none has a value); blocks until the pass has run."""
        if not self.imputed:
            return {}
        return {f.name: self._screened.get[f"median_{f.name}"] for f in self.imputed}

    def report(self, run_id: str, window: str) -> BuildReport:
        """The report of the pass that ran (blocks until it has)."""
        actions, unique = self._actions.get["rows"], self._unique_actions.get["rows"] or 0
        values = {**self._outcomes.get, **self._kept.get}
        report = summarize(values, self.labels, run_id, window, self._screened.get["rows"])
        report.actions = {"actions_input": actions, "actions_duplicate": actions - unique}
        return report


def ht_targets(labels: LabelConfig) -> dict[str, Column]:
    """What the Horvitz–Thompson check totals: every impression, and each action's label."""
    return {"impressions": F.lit(1), **{a: F.col(label_column(a)) for a in labeled_actions(labels)}}


def _position(values: tuple[str, ...], column: str) -> Column:
    """1-based position of the column's value in `values` (0: not there, null: null)."""
    return F.array_position(F.array(*(F.lit(v) for v in values)), F.col(column))


def _rows(condition: Column) -> Column:
    """How many rows meet `condition` (null over no rows): a sum, which an observation
    evaluates faster than `count_if`."""
    return F.sum(condition.cast("long"))


def _is(outcomes: tuple[str, ...]) -> Column:
    """The row's outcome (`_outcome`, numbered as in `OUTCOMES` from 1) is one of `outcomes`."""
    return F.col("_outcome").isin([OUTCOMES.index(o) + 1 for o in outcomes])


def _value_column(feature: FeatureSpec) -> str:
    return f"_value_{feature.name}"


def screened_rows_metrics(imputed: Sequence[FeatureSpec]) -> list[Column]:
    """Over the screened rows (before deduplication) with each `imputed` feature's value if
    the row passed screening (`_value_<name>`, null otherwise: the outcomes of `SCREENED_IN`
    pass): how many rows there are (the input rows) and the exact median of each."""
    medians = [F.median(_value_column(f)).alias(f"median_{f.name}") for f in imputed]
    return [F.count(F.lit(1)).alias("rows"), *medians]


def all_rows_metrics(labels: LabelConfig) -> list[Column]:
    """Over every classified row: rows per outcome and per eligible stratum, and each action's
    true total (its label summed over the eligible rows)."""
    eligible, stratum = _is(ELIGIBLE), F.col("_stratum")
    metrics = [_rows(_is((o,))).alias(f"outcome_{o}") for o in OUTCOMES]
    metrics += [
        _rows(eligible & (stratum == i + 1)).alias(f"eligible_{s}") for i, s in enumerate(STRATA)
    ]
    metrics += [
        F.sum(F.when(eligible, value)).alias(f"true_{name}")
        for name, value in ht_targets(labels).items()
        if name != "impressions"  # the eligible rows' count
    ]
    return metrics


def kept_rows_metrics(labels: LabelConfig) -> list[Column]:
    """Over the written and quarantined rows: quarantined rows per reason, written rows per
    stratum, and per `ht_targets` entry the Horvitz–Thompson estimate from the written rows
    (sum of value / sample_prob) and its variance (sum of value * (1 - p) / p^2)."""
    written, prob = _is(("written",)), F.col("sample_prob")
    quarantined, stratum = _is(("quarantined",)), F.col("_stratum")
    metrics = [
        _rows(quarantined & (F.col("_reason") == i + 1)).alias(f"reason_{r}")
        for i, r in enumerate(REASONS)
    ]
    metrics += [
        _rows(written & (stratum == i + 1)).alias(f"written_{s}") for i, s in enumerate(STRATA)
    ]
    for name, value in ht_targets(labels).items():
        metrics += [
            F.sum(F.when(written, value / prob)).alias(f"est_{name}"),
            F.sum(F.when(written, value * (1.0 - prob) / prob**2)).alias(f"var_{name}"),
        ]
    return metrics


def summarize(
    values: Mapping[str, Any], labels: LabelConfig, run_id: str, window: str, input_rows: int
) -> BuildReport:
    """The report of `all_rows_metrics` and `kept_rows_metrics` values (name -> value), beside
    `input_rows` counted apart.

    Reasons and strata without rows are left out, as they never occurred.
    """

    def present(prefix: str, keys: tuple[str, ...]) -> dict[str, int]:
        return {k: values[f"{prefix}_{k}"] for k in keys if values[f"{prefix}_{k}"]}

    outcomes = {o: values[f"outcome_{o}"] or 0 for o in OUTCOMES}
    eligible = outcomes["not_sampled"] + outcomes["written"]
    values = {"true_impressions": eligible, **values}
    estimates = {
        name: Estimate(
            int(values[f"true_{name}"] or 0),
            float(values[f"est_{name}"] or 0.0),
            math.sqrt(values[f"var_{name}"] or 0.0),
        )
        for name in ht_targets(labels)
    }
    return BuildReport(
        run_id=run_id,
        window=window,
        input_rows=input_rows,
        outcomes=outcomes,
        quarantined_by_reason=present("reason", tuple(REASONS)),
        written_by_stratum=present("written", STRATA),
        eligible_by_stratum=present("eligible", STRATA),
        horvitz_thompson=estimates,
    )
