"""Validated raw records into the `impressions` / `actions` tables and `quarantine`, idempotently.

One source (a file) is written with one app transaction per target table, `app_id` derived from
the file's identity: a re-run skips every table that already holds that source, so re-ingesting
a file is a no-op and a crash between the two commits is repaired by running again. Counts
reconcile exactly: records read = valid + quarantined (by reason), checked against what each
commit wrote. Nothing is deduplicated here; the batch builder deduplicates and counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from freshlake import contract
from freshlake.config import Config
from freshlake.features.validation import (
    REASON,
    RecordContract,
    check_records,
    quarantine_rows,
    run_clock,
    valid_rows,
)
from freshlake.lake import Lake

QUARANTINE_TABLE = contract.QUARANTINE


class ReconciliationError(RuntimeError):
    """A commit wrote a different number of rows than validation counted."""


@dataclass
class SourceOutcome:
    """What ingesting one source did."""

    source_file: str
    kind: str  # impressions | actions
    app_id: str
    tables: tuple[str, ...] = ()  # the tables this source is written to
    records: int = 0
    valid: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    # Tables already holding this source before the run (their commit was skipped).
    skipped_tables: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """True when every table already held the source: nothing was read or written."""
        return set(self.skipped_tables) == set(self.tables)


@dataclass
class IngestSummary:
    """Totals of one ingest run, per kind, reconciled (records = valid + quarantined)."""

    run_id: str
    outcomes: list[SourceOutcome] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)

    def records(self, kind: str) -> int:
        return sum(o.records for o in self.outcomes if o.kind == kind)

    def valid(self, kind: str) -> int:
        return sum(o.valid for o in self.outcomes if o.kind == kind)

    def quarantined(self, kind: str) -> Counter[str]:
        total: Counter[str] = Counter()
        for outcome in self.outcomes:
            if outcome.kind == kind:
                total.update(outcome.quarantined)
        return total

    def kinds(self) -> list[str]:
        return sorted({o.kind for o in self.outcomes})

    def counts(self) -> dict[str, int]:
        """Flat counts for `job_runs`: `<kind>.records|valid|quarantined[.<reason>]`, files."""
        counts = {
            "sources.ingested": sum(not o.skipped for o in self.outcomes),
            "sources.skipped": sum(o.skipped for o in self.outcomes),
        }
        for kind in self.kinds():
            by_reason = self.quarantined(kind)
            counts[f"{kind}.records"] = self.records(kind)
            counts[f"{kind}.valid"] = self.valid(kind)
            counts[f"{kind}.quarantined"] = sum(by_reason.values())
            counts |= {f"{kind}.quarantined.{r}": n for r, n in sorted(by_reason.items())}
        return counts

    def lines(self) -> list[str]:
        """A short human-readable report."""
        out = [f"ingest run {self.run_id}"]
        for kind in self.kinds():
            by_reason = self.quarantined(kind)
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(by_reason.items())) or "none"
            out.append(
                f"  {kind:<12} read {self.records(kind):>12,}  valid {self.valid(kind):>12,}  "
                f"quarantined {sum(by_reason.values()):>9,} ({reasons})"
            )
        skipped = [o.source_file for o in self.outcomes if o.skipped]
        out.append(
            f"  sources: {len(self.outcomes) - len(skipped)} ingested, "
            f"{len(skipped)} already ingested (skipped)"
        )
        out += [f"  {t} version {v}" for t, v in sorted(self.versions.items())]
        return out


def ingest_source(
    lake: Lake,
    config: Config,
    contract: RecordContract,
    raw: DataFrame,
    *,
    source_file: str,
    app_id: str,
    run_id: str,
    now: datetime,
    clock: datetime | None = None,
) -> SourceOutcome:
    """Validate one source's raw records and commit them to its table and the quarantine.

    Each table is checked for `app_id` first and skipped if it already holds this source.
    `clock` is what future event times are judged against (default `now`, the time recorded
    as `quarantined_at`); file ingest passes the file's modification time, so a re-run after
    a crash classifies every record exactly as the first attempt did.
    """
    tables = (contract.source, QUARANTINE_TABLE)
    outcome = SourceOutcome(source_file, contract.source, app_id, tables)
    outcome.skipped_tables = [t for t in tables if lake.transaction_version(t, app_id) is not None]
    if outcome.skipped:
        return outcome

    # Parsed once, read by the count and both writes; on disk, as a file can outgrow memory.
    checked = check_records(raw, contract, config, run_clock(clock or now))
    checked = checked.persist(StorageLevel.DISK_ONLY)
    try:
        by_reason = {row[REASON]: row["count"] for row in checked.groupBy(REASON).count().collect()}
        outcome.valid = by_reason.pop(None, 0)
        outcome.quarantined = dict(sorted(by_reason.items()))
        outcome.records = outcome.valid + sum(by_reason.values())
        outputs = {
            contract.source: (valid_rows(checked, contract, run_id), outcome.valid),
            QUARANTINE_TABLE: (
                quarantine_rows(checked, contract, run_id, run_clock(now)),
                sum(by_reason.values()),
            ),
        }
        for table, (rows, expected) in outputs.items():
            if table in outcome.skipped_tables:
                continue
            # Committed even when empty: the app transaction records that the table has it.
            result = lake.write(
                table,
                rows,
                partition_by=["dt"],
                app_id=app_id,
                app_version=1,
                metadata={"source_file": source_file, "run_id": run_id},
            )
            if result.skipped:  # a concurrent run committed this source meanwhile
                outcome.skipped_tables.append(table)
            elif result.rows != expected:
                raise ReconciliationError(
                    f"{source_file}: wrote {result.rows} rows to {table}, validation counted "
                    f"{expected}"
                )
            outcome.versions[table] = result.version
    finally:
        checked.unpersist()
    return outcome
