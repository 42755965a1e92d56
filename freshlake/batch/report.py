"""The build's run report: counts per outcome, strata, the Horvitz–Thompson check, reconciliation.

`summarize(classified, labels)` runs one aggregation over the classified impressions
(freshlake.batch.classify) and returns a `BuildReport`; the builder fills in versions and timings,
calls `reconcile()` (every input row accounted for) and stores `counts()` / `details()` in
`job_runs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake.batch.classify import ELIGIBLE, OUTCOMES
from freshlake.config import LabelConfig
from freshlake.features.labeling import label_column, labeled_actions


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


def summarize(
    classified: DataFrame, labels: LabelConfig, run_id: str, window: str, input_rows: int
) -> BuildReport:
    """One aggregation over classified impressions -> the report's counts and HT estimates.

    `input_rows` is counted independently (a plain count of the input), so `reconcile()` checks
    that classification accounted for every row.
    """
    written = F.col("outcome") == "written"
    inverse = F.when(written, 1.0 / F.col("sample_prob")).otherwise(0.0)
    variance = F.when(written, (1.0 - F.col("sample_prob")) / F.col("sample_prob") ** 2)
    targets = {
        "impressions": F.lit(1),
        **{a: F.col(label_column(a)) for a in labeled_actions(labels)},
    }
    aggs = [F.count(F.lit(1)).alias("rows")]
    for name, value in targets.items():
        aggs += [
            F.sum(value).alias(f"true_{name}"),
            F.sum(value * inverse).alias(f"est_{name}"),
            F.sum(value * F.coalesce(variance, F.lit(0.0))).alias(f"var_{name}"),
        ]
    stratum = F.when(F.col("outcome").isin(list(ELIGIBLE)), F.col("stratum"))
    rows = classified.groupBy("outcome", "reason", stratum.alias("stratum")).agg(*aggs).collect()

    outcomes = dict.fromkeys(OUTCOMES, 0)
    reasons: dict[str, int] = {}
    written_by: dict[str, int] = {}
    eligible_by: dict[str, int] = {}
    totals = {f"{kind}_{name}": 0.0 for kind in ("true", "est", "var") for name in targets}
    for row in rows:
        outcomes[row["outcome"]] += row["rows"]
        if row["outcome"] == "quarantined":
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["rows"]
        if row["outcome"] in ELIGIBLE:
            eligible_by[row["stratum"]] = eligible_by.get(row["stratum"], 0) + row["rows"]
            for key in totals:
                totals[key] += row[key] or 0
        if row["outcome"] == "written":
            written_by[row["stratum"]] = written_by.get(row["stratum"], 0) + row["rows"]
    estimates = {
        name: Estimate(
            int(totals[f"true_{name}"]), totals[f"est_{name}"], math.sqrt(totals[f"var_{name}"])
        )
        for name in targets
    }
    return BuildReport(
        run_id=run_id,
        window=window,
        input_rows=input_rows,
        outcomes=outcomes,
        quarantined_by_reason=reasons,
        written_by_stratum=written_by,
        eligible_by_stratum=eligible_by,
        horvitz_thompson=estimates,
    )
