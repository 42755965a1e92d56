"""Validated raw records into the `impressions` / `actions` tables and `quarantine`, idempotently.

A run writes all its sources (files) in one commit per table. Each commit records one app
transaction per source it holds, `app_id` derived from the source's identity: a re-run leaves
out of each table the sources it already holds, so re-ingesting a file is a no-op and a crash
between two tables' commits is repaired by running again. Counts reconcile exactly, per source:
records read = valid + quarantined (by reason), checked against what each commit wrote. Nothing
is deduplicated here; the batch builder deduplicates and counts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial, reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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
# Which source of a run a checked record came from (its index in the run's list).
SOURCE_INDEX = "_source_index"
# The clock a checked record's event times are judged against: its source's.
SOURCE_CLOCK = "_source_clock"


class ReconciliationError(RuntimeError):
    """A commit wrote a different number of rows than validation counted."""


@dataclass(frozen=True)
class Source:
    """One input of a run: what its records are, what identifies it, and how to read it."""

    contract: RecordContract  # impressions or actions
    name: str  # reported as the outcome's source_file: a file, or a dataset's folder
    app_id: str  # the app transaction marking it as ingested into a table
    clock: datetime  # future event times are judged against it (a file's modification time)
    read: Callable[[], DataFrame]  # its raw records (`value`, `source_file`, `parse_error`)


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

    def pending(self, table: str) -> bool:
        """True when this run writes the source to `table`."""
        return table in self.tables and table not in self.skipped_tables


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


def ingest_sources(
    lake: Lake,
    config: Config,
    sources: Sequence[Source],
    *,
    run_id: str,
    now: datetime,
) -> list[SourceOutcome]:
    """Validate the sources' records and commit them, one commit per table; an outcome per source.

    A source is left out of every table that already holds it (its app transaction is there),
    and not read at all when all of its tables do. `now` is recorded as `quarantined_at`. On an
    engine that records fewer app transactions per commit than there are sources
    (`max_app_transactions`), the sources are committed in groups of that size.
    """
    outcomes = [
        SourceOutcome(s.name, s.contract.source, s.app_id, (s.contract.source, QUARANTINE_TABLE))
        for s in sources
    ]
    for table in dict.fromkeys(t for o in outcomes for t in o.tables):
        held = lake.transaction_versions(table, [o.app_id for o in outcomes if table in o.tables])
        for outcome in outcomes:
            if table in outcome.tables and outcome.app_id in held:
                outcome.skipped_tables.append(table)
    pending = [(s, o) for s, o in zip(sources, outcomes, strict=True) if not o.skipped]
    size = lake.engine.max_app_transactions or max(len(pending), 1)
    for start in range(0, len(pending), size):
        _ingest_group(lake, config, pending[start : start + size], run_id, now)
    return outcomes


def _ingest_group(
    lake: Lake,
    config: Config,
    group: Sequence[tuple[Source, SourceOutcome]],
    run_id: str,
    now: datetime,
) -> None:
    """Check the group's records once per kind (kept on disk), count them, write each table once."""
    outcomes = [outcome for _, outcome in group]
    contracts: dict[str, RecordContract] = {}
    members: dict[str, list[int]] = {}
    for index, (source, _) in enumerate(group):
        contracts[source.contract.source] = source.contract
        members.setdefault(source.contract.source, []).append(index)
    # Parsed once, read by the count and every write; on disk, as a run can outgrow memory.
    checked = {
        kind: _checked_records(config, group, indexes).persist(StorageLevel.DISK_ONLY)
        for kind, indexes in members.items()
    }
    try:
        for frame in checked.values():
            _count(frame, outcomes)
        for table in dict.fromkeys(t for o in outcomes for t in o.tables):
            parts, writers = [], []
            for kind, frame in checked.items():
                pending = [i for i in members[kind] if outcomes[i].pending(table)]
                if not pending:
                    continue
                if len(pending) < len(members[kind]):
                    frame = frame.where(F.col(SOURCE_INDEX).isin(pending))
                contract = contracts[kind]
                parts.append(
                    valid_rows(frame, contract, run_id)
                    if table == kind
                    else quarantine_rows(frame, contract, run_id, run_clock(now))
                )
                writers += [outcomes[i] for i in pending]
            if parts:
                _commit_table(lake, table, reduce(DataFrame.unionByName, parts), writers, run_id)
    finally:
        for frame in checked.values():
            frame.unpersist()


def _checked_records(
    config: Config, group: Sequence[tuple[Source, SourceOutcome]], indexes: Sequence[int]
) -> DataFrame:
    """The records of the group's sources at `indexes` (one kind), checked, tagged by source.

    The sources' records are checked as one union, each against its own source's clock: one
    plan whose checks Spark generates and compiles once, whatever the number of sources.
    """
    frames = [
        source.read().select(
            "*", F.lit(index).alias(SOURCE_INDEX), run_clock(source.clock).alias(SOURCE_CLOCK)
        )
        for index, (source, _) in ((i, group[i]) for i in indexes)
    ]
    contract = group[indexes[0]][0].contract
    records = reduce(partial(DataFrame.unionByName, allowMissingColumns=True), frames)
    clock = F.col(SOURCE_CLOCK)
    checked = check_records(records, contract, config, clock, keep=[SOURCE_INDEX, SOURCE_CLOCK])
    return checked.drop(SOURCE_CLOCK)


def _count(checked: DataFrame, outcomes: Sequence[SourceOutcome]) -> None:
    """Fill in records, valid and quarantined (by reason) of the sources in `checked`."""
    for row in checked.groupBy(SOURCE_INDEX, REASON).count().collect():
        outcome = outcomes[row[SOURCE_INDEX]]
        if row[REASON] is None:
            outcome.valid = row["count"]
        else:
            outcome.quarantined[row[REASON]] = row["count"]
    for outcome in outcomes:
        outcome.quarantined = dict(sorted(outcome.quarantined.items()))
        outcome.records = outcome.valid + sum(outcome.quarantined.values())


def _commit_table(
    lake: Lake, table: str, rows: DataFrame, writers: Sequence[SourceOutcome], run_id: str
) -> None:
    """Commit `rows` to `table` with one app transaction per source; reconcile the row count."""
    expected = sum(o.valid if table == o.kind else sum(o.quarantined.values()) for o in writers)
    # Committed even when empty: the app transactions record that the table has these sources.
    result = lake.write(
        table,
        rows,
        partition_by=["dt"],
        app_transactions={o.app_id: 1 for o in writers},
        metadata={"run_id": run_id, "source_files": json.dumps([o.source_file for o in writers])},
    )
    if result.skipped:  # a concurrent run committed these sources meanwhile
        for outcome in writers:
            outcome.skipped_tables.append(table)
        return
    if result.rows != expected:
        raise ReconciliationError(
            f"wrote {result.rows} rows to {table} from {len(writers)} sources, validation "
            f"counted {expected}"
        )
    for outcome in writers:
        outcome.versions[table] = result.version
