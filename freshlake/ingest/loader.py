"""Validated raw records into the `impressions` / `actions` tables and `quarantine`, idempotently.

A run writes all its sources (files) in one commit per table. Each commit records one app
transaction per source it holds, `app_id` derived from the source's identity: a re-run leaves
out of each table the sources it already holds, so re-ingesting a file is a no-op and a crash
between two tables' commits is repaired by running again. Counts reconcile exactly, per source:
records read = valid + quarantined (by reason), checked against what each commit wrote. Nothing
is deduplicated here; the batch builder deduplicates and counts.

Each kind's records are read twice and checked about once: the write of the valid rows checks
every record, and the quarantine pass checks again only those that the first one rejected
(freshlake.ingest.rejects), so no checked intermediate is stored; a third, light read counts
the records of each source. Sources that share a scan (`SharedScan`: every JSON Lines file of
a run, say) are read in one, so a run of thousands of small files plans, compiles and
schedules like a run of one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial, reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import Config
from freshlake.features.validation import (
    COORDINATES,
    DETAIL,
    FAILED_CHECK,
    REASON,
    RecordContract,
    check_records,
    quarantine_rows,
    run_clock,
    valid_rows,
)
from freshlake.ingest.rejects import ValidPassCounts, candidates
from freshlake.lake import Lake, WriteResult
from freshlake.spark_compat import observed_plans_kept

QUARANTINE_TABLE = contract.QUARANTINE
# Which source of a run a checked record came from (its index in the run's list).
SOURCE_INDEX = "_source_index"
# The clock a checked record's event times are judged against: its source's.
SOURCE_CLOCK = "_source_clock"
# The column a shared scan names each record's source in (`SharedScan.key`).
SCAN_KEY = "_scan_key"


class ReconciliationError(RuntimeError):
    """A commit wrote a different number of rows than validation counted."""


@dataclass(frozen=True)
class SharedScan:
    """How a source is read together with others: the sources of one kind whose scans have the
    same `name` are read by one call of `read` (any of theirs) with all their names."""

    name: str
    # The named sources' raw records (`value`, `parse_error`), each with `SCAN_KEY`.
    read: Callable[[Sequence[str]], DataFrame]
    key: str  # this source's records' SCAN_KEY


@dataclass(frozen=True)
class Source:
    """One input of a run: what its records are, what identifies it, and how to read it."""

    contract: RecordContract  # impressions or actions
    name: str  # reported as the outcome's source_file: a file, or a dataset's folder
    app_id: str  # the app transaction marking it as ingested into a table
    clock: datetime  # future event times are judged against it (a file's modification time)
    read: Callable[[], DataFrame]  # its raw records (`value`, `source_file`, `parse_error`)
    scan: SharedScan | None = None  # read in one with other sources instead of by `read`


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
    """Write each kind's valid rows, find and count its rejected records, then the quarantine."""
    members: dict[str, list[int]] = {}
    for index, (source, _) in enumerate(group):
        members.setdefault(source.contract.source, []).append(index)
    rejected: dict[str, DataFrame] = {}
    try:
        # Every observation gets its counts, an empty source's zeros included.
        with observed_plans_kept(lake.spark):
            for kind, indexes in members.items():
                rejected[kind] = _ingest_kind(lake, config, group, indexes, run_id)
        _commit_quarantine(lake, group, members, rejected, run_id, now)
    finally:
        for frame in rejected.values():
            frame.unpersist()


def _ingest_kind(
    lake: Lake,
    config: Config,
    group: Sequence[tuple[Source, SourceOutcome]],
    indexes: Sequence[int],
    run_id: str,
) -> DataFrame:
    """Commit the valid rows of the sources at `indexes` (one kind) to their table; then fill in
    their outcomes and return their rejected records (kept on disk for the quarantine commit).

    Two passes, no intermediate: the valid pass checks every record and writes the valid ones,
    observing how many were rejected and their hashes; the quarantine pass reads the records
    again, counts them per source, and checks only the candidates the hashes point to
    (freshlake.ingest.rejects), or every record when the valid pass did not read every source
    (some were in the table already).
    """
    outcomes = [outcome for _, outcome in group]
    contract = group[indexes[0]][0].contract
    writers = [i for i in indexes if outcomes[i].pending(contract.source)]
    valid_pass, result = None, None
    if writers:
        valid_pass = ValidPassCounts()
        checked = _checked(_raw_records(group, writers), contract, config)
        rows = valid_rows(valid_pass.observe(checked, SOURCE_INDEX), contract, run_id)
        result = _commit_table(lake, contract.source, rows, [outcomes[i] for i in writers], run_id)
    if result is None or (valid_pass is not None and not valid_pass.arrived()):
        # Nothing written (or a concurrent run committed it), or the writer reported no
        # metrics: the quarantine pass checks every record.
        valid_pass = None
    raw = _raw_records(group, indexes)
    if valid_pass is not None and len(writers) == len(indexes):
        raw = candidates(raw, valid_pass.remembered(), SOURCE_INDEX)
    checked = _checked(raw, contract, config)
    rejected = (
        checked.where(F.col(FAILED_CHECK).isNotNull())
        .select(SOURCE_INDEX, FAILED_CHECK, REASON, DETAIL, "value", *COORDINATES)
        .persist(StorageLevel.DISK_ONLY)
    )
    try:
        _count(rejected, _records_per_source(group, indexes), outcomes)
        if valid_pass is not None:
            _reconcile_valid_pass(valid_pass, [outcomes[i] for i in writers], contract.source)
        if result is not None:
            expected = sum(outcomes[i].valid for i in writers)
            _reconcile(contract.source, result, expected, len(writers))
    except BaseException:
        rejected.unpersist()
        raise
    return rejected


def _raw_records(
    group: Sequence[tuple[Source, SourceOutcome]], indexes: Sequence[int]
) -> DataFrame:
    """The raw records of the group's sources at `indexes`, as one union, each tagged with its
    source (`SOURCE_INDEX`) and that source's clock; sources sharing a scan are read in one."""
    frames, shared = [], {}
    for index in indexes:
        source = group[index][0]
        if source.scan is not None:
            shared.setdefault(source.scan.name, []).append(index)
            continue
        frames.append(
            source.read().select(
                "*", F.lit(index).alias(SOURCE_INDEX), run_clock(source.clock).alias(SOURCE_CLOCK)
            )
        )
    frames += [_shared_scan(group, members) for members in shared.values()]
    return reduce(partial(DataFrame.unionByName, allowMissingColumns=True), frames)


def _shared_scan(
    group: Sequence[tuple[Source, SourceOutcome]], indexes: Sequence[int]
) -> DataFrame:
    """The raw records of the sources at `indexes`, which share a scan, read in one and tagged
    by a broadcast join on their scan key; a record of no listed source (a file changed since
    it was listed, say) fails the job."""
    sources = [group[i][0] for i in indexes]
    scan = sources[0].scan
    assert scan is not None
    raw = scan.read([s.name for s in sources])
    tags = raw.sparkSession.createDataFrame(
        [
            (s.scan.key, i, s.name, s.clock if s.clock.tzinfo else s.clock.replace(tzinfo=UTC))
            for i, s in zip(indexes, sources, strict=True)
            if s.scan is not None
        ],
        f"{SCAN_KEY} string, {SOURCE_INDEX} int, source_file string, {SOURCE_CLOCK} timestamp",
    )
    unlisted = F.raise_error(
        F.concat(
            F.lit("a record of no listed source, or of one changed since it was listed: "),
            F.col(SCAN_KEY),
        )
    )
    return raw.join(F.broadcast(tags), SCAN_KEY, "left").select(
        "value",
        "source_file",
        "parse_error",
        F.coalesce(F.col(SOURCE_INDEX), unlisted).alias(SOURCE_INDEX),
        SOURCE_CLOCK,
    )


def _records_per_source(
    group: Sequence[tuple[Source, SourceOutcome]], indexes: Sequence[int]
) -> dict[int, int]:
    """How many raw records each source at `indexes` holds."""
    counts = _raw_records(group, indexes).groupBy(SOURCE_INDEX).count().collect()
    return dict.fromkeys(indexes, 0) | {row[SOURCE_INDEX]: row["count"] for row in counts}


def _checked(raw: DataFrame, contract: RecordContract, config: Config) -> DataFrame:
    """`raw` checked, each record against its own source's clock.

    The sources' records are checked as one union: one plan whose checks Spark generates and
    compiles once, whatever the number of sources.
    """
    clock = F.col(SOURCE_CLOCK)
    checked = check_records(raw, contract, config, clock, keep=[SOURCE_INDEX, SOURCE_CLOCK])
    return checked.drop(SOURCE_CLOCK)


def _count(
    rejected: DataFrame, records: Mapping[int, int], outcomes: Sequence[SourceOutcome]
) -> None:
    """Fill in records, quarantined (by reason) and valid of the sources in `records`."""
    for row in rejected.groupBy(SOURCE_INDEX, REASON).count().collect():
        outcomes[row[SOURCE_INDEX]].quarantined[row[REASON]] = row["count"]
    for index, count in records.items():
        outcome = outcomes[index]
        outcome.quarantined = dict(sorted(outcome.quarantined.items()))
        outcome.records = count
        outcome.valid = outcome.records - sum(outcome.quarantined.values())


def _reconcile_valid_pass(
    valid_pass: ValidPassCounts, writers: Sequence[SourceOutcome], table: str
) -> None:
    """The valid pass checked the records the quarantine pass read and rejected as many."""
    records = sum(o.records for o in writers)
    rejected = sum(sum(o.quarantined.values()) for o in writers)
    if (valid_pass.records, valid_pass.rejected) != (records, rejected):
        raise ReconciliationError(
            f"the write of {table} checked {valid_pass.records} records and rejected "
            f"{valid_pass.rejected}; the quarantine pass read {records} and rejected {rejected}"
        )


def _commit_quarantine(
    lake: Lake,
    group: Sequence[tuple[Source, SourceOutcome]],
    members: Mapping[str, Sequence[int]],
    rejected: Mapping[str, DataFrame],
    run_id: str,
    now: datetime,
) -> None:
    """Commit the rejected records of every kind that the quarantine does not hold yet."""
    outcomes = [outcome for _, outcome in group]
    parts, writers = [], []
    for kind, indexes in members.items():
        pending = [i for i in indexes if outcomes[i].pending(QUARANTINE_TABLE)]
        if not pending:
            continue
        frame = rejected[kind]
        if len(pending) < len(indexes):
            frame = frame.where(F.col(SOURCE_INDEX).isin(pending))
        contract = group[indexes[0]][0].contract
        parts.append(quarantine_rows(frame, contract, run_id, run_clock(now)))
        writers += [outcomes[i] for i in pending]
    if not parts:
        return
    rows = reduce(DataFrame.unionByName, parts)
    result = _commit_table(lake, QUARANTINE_TABLE, rows, writers, run_id)
    if result is not None:
        expected = sum(sum(o.quarantined.values()) for o in writers)
        _reconcile(QUARANTINE_TABLE, result, expected, len(writers))


def _commit_table(
    lake: Lake, table: str, rows: DataFrame, writers: Sequence[SourceOutcome], run_id: str
) -> WriteResult | None:
    """Commit `rows` to `table` with one app transaction per source; None when skipped."""
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
        return None
    for outcome in writers:
        outcome.versions[table] = result.version
    return result


def _reconcile(table: str, result: WriteResult, expected: int, sources: int) -> None:
    """The commit wrote as many rows as validation counted."""
    if result.rows != expected:
        raise ReconciliationError(
            f"wrote {result.rows} rows to {table} from {sources} sources, validation "
            f"counted {expected}"
        )
